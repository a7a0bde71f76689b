// Grants one linked-resource role on one resource a target gateway links to (deployed into that
// resource's group). A whole-gateway PUT re-sends every link, and ARM checks the caller's
// read and join/action (assign/action for an identity, deploy/action for a Key Vault) on each
// linked resource (https://learn.microsoft.com/azure/application-gateway/configuration-infrastructure#permissions);
// granting it on that resource alone keeps the bot from joining anything else to it.

@description('Kind of linked resource (a key of shared/cloud/arm.py LINKED_RESOURCE_ACTIONS).')
@allowed([
  'subnet'
  'public_ip'
  'waf_policy'
  'user_assigned_identity'
  'key_vault'
])
param kind string

@description('Resource id of the linked resource.')
param resourceId string

@description('Name (GUID) of the custom role holding the actions of this kind.')
param roleDefinitionName string

@description('Principal (object) id of the bot identity.')
param principalId string

// /subscriptions/<s>/resourceGroups/<g>/providers/<namespace>/<type>/<name>[/subnets/<subnet>]
var segments = split(resourceId, '/')
var roleDefinitionId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionName)

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' existing = if (kind == 'subnet') {
  name: segments[8]
}

resource subnet 'Microsoft.Network/virtualNetworks/subnets@2024-05-01' existing = if (kind == 'subnet') {
  parent: vnet
  name: last(segments)
}

resource publicIp 'Microsoft.Network/publicIPAddresses@2024-05-01' existing = if (kind == 'public_ip') {
  name: segments[8]
}

resource wafPolicy 'Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies@2024-05-01' existing = if (kind == 'waf_policy') {
  name: segments[8]
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = if (kind == 'user_assigned_identity') {
  name: segments[8]
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = if (kind == 'key_vault') {
  name: segments[8]
}

resource subnetGrant 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (kind == 'subnet') {
  scope: subnet
  name: guid(resourceId, principalId, roleDefinitionName)
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource publicIpGrant 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (kind == 'public_ip') {
  scope: publicIp
  name: guid(resourceId, principalId, roleDefinitionName)
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource wafPolicyGrant 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (kind == 'waf_policy') {
  scope: wafPolicy
  name: guid(resourceId, principalId, roleDefinitionName)
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource identityGrant 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (kind == 'user_assigned_identity') {
  scope: identity
  name: guid(resourceId, principalId, roleDefinitionName)
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource vaultGrant 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (kind == 'key_vault') {
  scope: vault
  name: guid(resourceId, principalId, roleDefinitionName)
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
