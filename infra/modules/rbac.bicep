// Least privilege for the bot's identity. Deployed at subscription scope because custom role
// definitions live there. What the bot may do comes from the ARM calls it makes
// (shared/cloud/arm.py ARM_ACTIONS and LINKED_RESOURCE_ACTIONS); tests/infra/test_templates.py fails
// when a call is added there without its action here, or an action here has no call.
//
// - a custom role on each target gateway: write it, backend health (cached and on demand);
// - a custom role on each target gateway's resource group with only the async-operation reads a
//   long-running PUT/POST polls: the status URLs (/subscriptions/{s}/providers/Microsoft.Network/
//   locations/{loc}/operations|operationResults/{id}) are not under the gateway, and "if you only
//   have permission at the resource level, you can start the operation but you can't track its
//   status" (https://learn.microsoft.com/azure/azure-resource-manager/management/async-operations);
// - one custom role per linked-resource kind with what a whole-gateway PUT needs on it (ARM
//   re-checks every resource the gateway links to): read and join/action on existing subnets,
//   public IPs and WAF policies, assign/action on user-assigned identities
//   (https://learn.microsoft.com/azure/application-gateway/configuration-infrastructure#permissions),
//   deploy/action on a Key Vault a gateway certificate references; each granted on that
//   resource only;
// - a custom role on each subscription holding a target gateway with what the sweep reads there:
//   the gateway list (one paged list_all per subscription, for ids and regions) and metrics
//   (Microsoft.Insights/Metrics/Read: the metrics:getBatch call is authorized at the
//   subscription; read on each gateway is not enough, docs/operations.md "Sweep"). Read only:
//   no write, no backend health, no other resource type;
// - certificates/read (a data action, not secrets) on the trusted-source Key Vault, when given;
// - Storage Blob Data Owner, Queue and Table Data Contributor on the bot's own account only.
// No Contributor, Owner, Network Contributor or User Access Administrator anywhere.
targetScope = 'subscription'

@description('Principal (object) id of the bot identity.')
param principalId string

@description('Resource group holding the bot storage account.')
param resourceGroupName string

@description('The bot storage account.')
param storageAccountName string

@description('Application Gateway resource ids the bot acts on.')
param gatewayIds array

@description('Resource ids the target gateways link to: subnets, public IPs, WAF policies and user-assigned identities.')
param linkedResourceIds array = []

@description('Resource id of the Key Vault holding trusted-source certificates; empty for none.')
param keyVaultId string = ''

@description('Scopes the custom roles may be assigned at: every subscription holding a gateway, a linked resource or the Key Vault.')
param roleAssignableScopes array = [
  subscription().id
]

@description('Distinguishes the role names of two deployments in one tenant (role names are tenant-wide).')
param roleNameSuffix string

// Read comes with the sweep role on the gateway's subscription (sweepActions), which covers the
// gateway: granting it here too would be a second place to forget when removing it.
var gatewayActions = [
  'Microsoft.Network/applicationGateways/write'
  'Microsoft.Network/applicationGateways/backendhealth/action'
  'Microsoft.Network/applicationGateways/getBackendHealthOnDemand/action'
]

// Tracking a PUT (Azure-AsyncOperation) and backend health (Location): granted on the group.
var operationActions = [
  'Microsoft.Network/locations/operations/read'
  'Microsoft.Network/locations/operationResults/read'
]

// What the sweep reads at the subscription (shared/service/sweep.py, shared/cloud/monitor.py).
var sweepActions = [
  'Microsoft.Network/applicationGateways/read'
  'Microsoft.Insights/Metrics/Read'
]

// Each target gateway's subscription once ('/subscriptions/<s>').
var gatewaySubscriptions = [for id in gatewayIds: toLower('/subscriptions/${split(id, '/')[2]}')]
var gatewaySubscriptionIds = union(gatewaySubscriptions, [])

// Each target gateway's resource group once ('/subscriptions/<s>/resourcegroups/<g>').
var gatewayGroups = [for id in gatewayIds: toLower('/subscriptions/${split(id, '/')[2]}/resourceGroups/${split(id, '/')[4]}')]
var gatewayGroupIds = union(gatewayGroups, [])

// Kind names are the keys of shared/cloud/arm.py LINKED_RESOURCE_ACTIONS.
var subnetIds = filter(linkedResourceIds, id => contains(toLower(id), '/subnets/'))
var publicIpIds = filter(linkedResourceIds, id => contains(toLower(id), '/publicipaddresses/'))
var wafPolicyIds = filter(linkedResourceIds, id => contains(toLower(id), '/applicationgatewaywebapplicationfirewallpolicies/'))
var identityIds = filter(linkedResourceIds, id => contains(toLower(id), '/userassignedidentities/'))
var keyVaultIds = filter(linkedResourceIds, id => contains(toLower(id), '/microsoft.keyvault/vaults/'))

resource gatewayRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, roleNameSuffix, 'appgw-cert-bot-gateway')
  properties: {
    roleName: 'App Gateway Cert Bot - gateway (${roleNameSuffix})'
    description: 'Read and write Application Gateways, read backend health.'
    type: 'customRole'
    permissions: [
      {
        actions: gatewayActions
        notActions: []
      }
    ]
    assignableScopes: roleAssignableScopes
  }
}

resource operationsRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, roleNameSuffix, 'appgw-cert-bot-operations')
  properties: {
    roleName: 'App Gateway Cert Bot - track operations (${roleNameSuffix})'
    description: 'Read the status of Microsoft.Network asynchronous operations (gateway updates, backend health).'
    type: 'customRole'
    permissions: [
      {
        actions: operationActions
        notActions: []
      }
    ]
    assignableScopes: roleAssignableScopes
  }
}

resource sweepRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, roleNameSuffix, 'appgw-cert-bot-sweep')
  properties: {
    roleName: 'App Gateway Cert Bot - sweep (${roleNameSuffix})'
    description: 'List Application Gateways and read their metrics (the sweep pre-filter).'
    type: 'customRole'
    permissions: [
      {
        actions: sweepActions
        notActions: []
      }
    ]
    assignableScopes: roleAssignableScopes
  }
}

resource subnetJoinRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, roleNameSuffix, 'appgw-cert-bot-subnet')
  properties: {
    roleName: 'App Gateway Cert Bot - join subnet (${roleNameSuffix})'
    description: 'Lets a gateway PUT keep its gateway subnet.'
    type: 'customRole'
    permissions: [
      {
        actions: [
          'Microsoft.Network/virtualNetworks/subnets/read'
          'Microsoft.Network/virtualNetworks/subnets/join/action'
        ]
        notActions: []
      }
    ]
    assignableScopes: roleAssignableScopes
  }
}

resource publicIpJoinRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, roleNameSuffix, 'appgw-cert-bot-public-ip')
  properties: {
    roleName: 'App Gateway Cert Bot - join public IP (${roleNameSuffix})'
    description: 'Lets a gateway PUT keep its frontend public IP.'
    type: 'customRole'
    permissions: [
      {
        actions: [
          'Microsoft.Network/publicIPAddresses/read'
          'Microsoft.Network/publicIPAddresses/join/action'
        ]
        notActions: []
      }
    ]
    assignableScopes: roleAssignableScopes
  }
}

resource wafPolicyJoinRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, roleNameSuffix, 'appgw-cert-bot-waf-policy')
  properties: {
    roleName: 'App Gateway Cert Bot - join WAF policy (${roleNameSuffix})'
    description: 'Lets a gateway PUT keep its WAF policy.'
    type: 'customRole'
    permissions: [
      {
        actions: [
          'Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/read'
          'Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/join/action'
        ]
        notActions: []
      }
    ]
    assignableScopes: roleAssignableScopes
  }
}

resource identityAssignRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, roleNameSuffix, 'appgw-cert-bot-identity')
  properties: {
    roleName: 'App Gateway Cert Bot - assign identity (${roleNameSuffix})'
    description: 'Lets a gateway PUT keep its user-assigned identity (used for Key Vault certificates).'
    type: 'customRole'
    permissions: [
      {
        actions: [
          'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action'
        ]
        notActions: []
      }
    ]
    assignableScopes: roleAssignableScopes
  }
}

// A gateway certificate that references a Key Vault secret (keyVaultSecretId): "Enables access to
// secrets in a key vault when deploying Azure resources"; it does not let the bot read a secret.
// https://learn.microsoft.com/azure/role-based-access-control/permissions/security#microsoftkeyvault
resource keyVaultDeployRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, roleNameSuffix, 'appgw-cert-bot-key-vault-reference')
  properties: {
    roleName: 'App Gateway Cert Bot - reference Key Vault secrets (${roleNameSuffix})'
    description: 'Lets a gateway PUT keep its Key Vault certificate references.'
    type: 'customRole'
    permissions: [
      {
        actions: [
          'Microsoft.KeyVault/vaults/deploy/action'
        ]
        notActions: []
      }
    ]
    assignableScopes: roleAssignableScopes
  }
}

// Data action only: the public certificate (CER) of a Key Vault certificate. The built-in
// "Key Vault Certificate User" role would also let the bot read the certificate's secret,
// i.e. its private key, which the bot never needs.
resource keyVaultCertificateReaderRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (!empty(keyVaultId)) {
  name: guid(subscription().id, roleNameSuffix, 'appgw-cert-bot-key-vault')
  properties: {
    roleName: 'App Gateway Cert Bot - read certificates (${roleNameSuffix})'
    description: 'Read Key Vault certificates (public part only), not secrets or keys.'
    type: 'customRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          'Microsoft.KeyVault/vaults/certificates/read'
        ]
        notDataActions: []
      }
    ]
    assignableScopes: roleAssignableScopes
  }
}

module gatewayGrants 'rbac-gateway.bicep' = [
  for (gatewayId, i) in gatewayIds: {
    name: 'bot-rbac-gateway-${i}'
    scope: resourceGroup(split(gatewayId, '/')[2], split(gatewayId, '/')[4])
    params: {
      gatewayName: last(split(gatewayId, '/'))
      roleDefinitionName: gatewayRole.name
      principalId: principalId
    }
  }
]

module operationGrants 'rbac-operations.bicep' = [
  for (groupId, i) in gatewayGroupIds: {
    name: 'bot-rbac-operations-${i}'
    scope: resourceGroup(split(groupId, '/')[2], split(groupId, '/')[4])
    params: {
      roleDefinitionName: operationsRole.name
      principalId: principalId
    }
  }
]

module sweepGrants 'rbac-subscription.bicep' = [
  for (subscriptionId, i) in gatewaySubscriptionIds: {
    name: 'bot-rbac-sweep-${i}'
    scope: subscription(split(subscriptionId, '/')[2])
    params: {
      roleDefinitionName: sweepRole.name
      principalId: principalId
    }
  }
]

module subnetGrants 'rbac-linked.bicep' = [
  for (resourceId, i) in subnetIds: {
    name: 'bot-rbac-subnet-${i}'
    scope: resourceGroup(split(resourceId, '/')[2], split(resourceId, '/')[4])
    params: {
      kind: 'subnet'
      resourceId: resourceId
      roleDefinitionName: subnetJoinRole.name
      principalId: principalId
    }
  }
]

module publicIpGrants 'rbac-linked.bicep' = [
  for (resourceId, i) in publicIpIds: {
    name: 'bot-rbac-public-ip-${i}'
    scope: resourceGroup(split(resourceId, '/')[2], split(resourceId, '/')[4])
    params: {
      kind: 'public_ip'
      resourceId: resourceId
      roleDefinitionName: publicIpJoinRole.name
      principalId: principalId
    }
  }
]

module wafPolicyGrants 'rbac-linked.bicep' = [
  for (resourceId, i) in wafPolicyIds: {
    name: 'bot-rbac-waf-policy-${i}'
    scope: resourceGroup(split(resourceId, '/')[2], split(resourceId, '/')[4])
    params: {
      kind: 'waf_policy'
      resourceId: resourceId
      roleDefinitionName: wafPolicyJoinRole.name
      principalId: principalId
    }
  }
]

module identityGrants 'rbac-linked.bicep' = [
  for (resourceId, i) in identityIds: {
    name: 'bot-rbac-identity-${i}'
    scope: resourceGroup(split(resourceId, '/')[2], split(resourceId, '/')[4])
    params: {
      kind: 'user_assigned_identity'
      resourceId: resourceId
      roleDefinitionName: identityAssignRole.name
      principalId: principalId
    }
  }
]

module keyVaultReferenceGrants 'rbac-linked.bicep' = [
  for (resourceId, i) in keyVaultIds: {
    name: 'bot-rbac-key-vault-reference-${i}'
    scope: resourceGroup(split(resourceId, '/')[2], split(resourceId, '/')[4])
    params: {
      kind: 'key_vault'
      resourceId: resourceId
      roleDefinitionName: keyVaultDeployRole.name
      principalId: principalId
    }
  }
]

// ARM evaluates a module's scope even when its condition is false, and split('', '/') has no
// index 2 (Azure/bicep #2371, #11463): without a Key Vault the scope falls back to the bot's group.
// The condition sits inside the arguments of one resourceGroup() call: a ternary choosing between
// two scope calls is a compile error (Bicep diagnostic BCP420; docs/sources.md#bicep).
module keyVaultGrant 'rbac-keyvault.bicep' = if (!empty(keyVaultId)) {
  name: 'bot-rbac-key-vault'
  scope: resourceGroup(empty(keyVaultId) ? subscription().subscriptionId : split(keyVaultId, '/')[2], empty(keyVaultId) ? resourceGroupName : split(keyVaultId, '/')[4])
  params: {
    keyVaultName: last(split(keyVaultId, '/'))
    roleDefinitionName: keyVaultCertificateReaderRole.name
    principalId: principalId
  }
}

module storageGrants 'rbac-storage.bicep' = {
  name: 'bot-rbac-storage'
  scope: resourceGroup(resourceGroupName)
  params: {
    storageAccountName: storageAccountName
    principalId: principalId
  }
}

output gatewayRoleId string = gatewayRole.id
output operationsRoleId string = operationsRole.id
