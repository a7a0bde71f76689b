// Deploys the appgw-cert-bot: a Flex Consumption Function App with its identity, storage,
// monitoring, VNet integration, least-privilege RBAC and App Service Authentication.
// The alert wiring needs the function key, which exists only after the code is deployed:
// it is the second step, alerts.bicep (azd runs it as the postdeploy hook; see docs/deploy.md).
//
// Subscription scope: custom role definitions live at the subscription, and azd creates the
// resource group here. Deploy with `azd up` or
//   az deployment sub create --location <region> --template-file infra/main.bicep --parameters ...
targetScope = 'subscription'

@description('Name of the environment (azd); part of every resource name.')
@minLength(1)
@maxLength(40)
param environmentName string

@description('Azure region of the bot resources.')
param location string

@description('Resource group to create the bot in; default rg-<environmentName>.')
param resourceGroupName string = ''

@description('Comma-separated Application Gateway resource ids the bot may act on (ALLOWED_SCOPES); each gets the gateway role and a metric alert.')
param targetGatewayIds string

@description('Comma-separated resource ids the target gateways link to (their subnets, public IPs, WAF policies, user-assigned identities); each gets only its join/assign action.')
param linkedResourceIds string = ''

@description('Resource id of the Key Vault holding trusted-source certificates (RBAC permission model); empty for none.')
param keyVaultId string = ''

@description('Global remediation mode. Gateway tags and requests can only lower it.')
@allowed([
  'diagnose'
  'propose'
  'apply'
])
param remediationMode string = 'propose'

// A string, not a bool: every value in main.parameters.json is a JSON string (azd parses the raw
// file before it substitutes environment variables), and the app setting is a string anyway.
@description('\'true\' turns every gateway write off (REMEDIATION_KILL_SWITCH).')
@allowed([
  'true'
  'false'
])
param killSwitch string = 'false'

@description('Comma-separated Key Vault certificate names that are trusted sources (TRUSTED_CERT_NAMES).')
param trustedCertNames string = ''

@description('Regular expression a certificate subject or SAN must match to be applied automatically (TRUSTED_SUBJECT_PATTERN).')
param trustedSubjectPattern string = ''

// Required: azd prompts for it when APPROVERS is not set (a parameter with no value and no default),
// so no deployment ends up with nobody able to approve. Pass '' explicitly for none.
@description('Comma-separated Entra object ids of the approvers (APPROVERS): the only callers who may approve, reject or roll back, and the only principals App Service Authentication admits. Your own: az ad signed-in-user show --query id -o tsv.')
param approvers string

@description('Webhook for proposals and outcomes (NOTIFY_WEBHOOK_URL); empty for none.')
@secure()
param notifyWebhookUrl string = ''

@description('Key of the review page\'s anti-CSRF tokens (REVIEW_TOKEN_SECRET). Default: a new random value per deployment, which only makes open review pages reload.')
@secure()
param reviewTokenSecret string = newGuid() //checkov:skip=CKV_AZURE_131: the default is newGuid(), a fresh random value each deployment, not a value written here.

@description('Format of the webhook messages (NOTIFY_WEBHOOK_FORMAT).')
@allowed([
  'teams'
  'slack'
  'json'
])
param notifyWebhookFormat string = 'json'

@description('Application (client) id of the Entra app registration that protects the approval endpoints.')
param authClientId string

@description('Resource id of an existing integration subnet (delegated to Microsoft.App/environments, Microsoft.Storage service endpoint); empty to create a VNet.')
param existingSubnetId string = ''

@description('Address space of the VNet created when existingSubnetId is empty.')
param vnetAddressPrefix string = '10.90.0.0/24'

@description('Integration subnet prefix inside vnetAddressPrefix.')
param subnetAddressPrefix string = '10.90.0.0/26'

@description('Comma-separated address prefixes of the backends the bot probes (the ASE ILB addresses), for the NSG of the created subnet.')
param backendAddressPrefixes string = ''

@description('Comma-separated TCP ports the backends listen on.')
param backendPorts string = '443'

@description('Deny admits only the integration subnet to the storage account; Allow admits any network (still identity-only).')
@allowed([
  'Deny'
  'Allow'
])
param storageNetworkDefaultAction string = 'Deny'

@description('Comma-separated public IPs or CIDR ranges admitted to the bot\'s storage account besides the integration subnet (storageNetworkDefaultAction Deny): where operators run the CLI against the app\'s ledger (docs/deploy.md, "Operators: reaching the ledger").')
param operatorIpRanges string = ''

@description('Comma-separated scopes (/subscriptions/<id>) the custom roles may be assigned at; empty means this subscription. Add every subscription holding a gateway, a linked resource or the Key Vault.')
param roleAssignableScopes string = ''

@description('Tags for every resource.')
param tags object = {}

var token = toLower(uniqueString(subscription().id, environmentName, location))
var groupName = empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
var allTags = union(tags, {
  'azd-env-name': environmentName
  application: 'appgw-cert-bot'
})
// Ids trimmed: `a, b` (a space after the comma) must not become ' b'.
var gatewayIds = [for id in filter(split(targetGatewayIds, ','), x => !empty(trim(x))): trim(id)]
var linkedIds = [for id in filter(split(linkedResourceIds, ','), x => !empty(trim(x))): trim(id)]
var backendPrefixList = [for p in filter(split(backendAddressPrefixes, ','), x => !empty(trim(x))): trim(p)]
var backendPortList = [for p in filter(split(backendPorts, ','), x => !empty(trim(x))): trim(p)]
// APPROVERS entries are `<object id>[=<label>]`: the app shows the label, Easy Auth admits the id.
var approverEntries = [for entry in filter(split(approvers, ','), x => !empty(trim(x))): trim(entry)]
var approverIds = [for entry in approverEntries: trim(first(split(entry, '=')))]
var operatorIps = [for ip in filter(split(operatorIpRanges, ','), x => !empty(trim(x))): trim(ip)]
var scopeList = [for s in filter(split(roleAssignableScopes, ','), x => !empty(trim(x))): trim(s)]
var deploymentContainerName = 'deployment-package'
var keyVaultName = last(split(keyVaultId, '/'))
var keyVaultUrl = empty(keyVaultId) ? '' : 'https://${keyVaultName}${environment().suffixes.keyvaultDns}'
var assignableScopes = empty(scopeList) ? [subscription().id] : scopeList

// Every setting shared/common/settings.py reads with consumer "bot" (tests/infra enforces it). Values
// are the registry defaults except where Azure decides them; platform settings (storage
// identity, AZURE_CLIENT_ID, App Insights, the webhook secret) are added in functionapp.bicep.
var botSettings = {
  ARM_ENDPOINT: environment().resourceManager
  // The sweep's pre-filter (metrics:getBatch); Azure China / US Government use their own host.
  METRICS_ENDPOINT: 'https://{region}.metrics.monitor.azure.com'
  AZURE_SUBSCRIPTION_ID: subscription().subscriptionId
  KEY_VAULT_URL: keyVaultUrl
  KEY_VAULT_VERIFY_CHALLENGE_RESOURCE: 'true'
  REMEDIATION_MODE: remediationMode
  REMEDIATION_KILL_SWITCH: killSwitch
  ALLOWED_SCOPES: join(gatewayIds, ',')
  MODE_TAG: 'appgw-cert-bot-mode'
  OWNERSHIP_TAGS: 'managed-by-k8s-ingress,managed-by=terraform'
  TRUSTED_CERT_NAMES: trustedCertNames
  TRUSTED_SUBJECT_PATTERN: trustedSubjectPattern
  COOLDOWN_MINUTES: '30'
  DAILY_CERT_CAP: '3'
  MAX_TARGETS_PER_ALERT: '50'
  // Entra object ids with their labels, trimmed; App Service Authentication admits the same ids.
  APPROVERS: join(approverEntries, ',')
  EXPIRY_WARNING_DAYS: '30'
  ROLLBACK_BY_APPLIER: 'false'
  // The function app probes from its VNet integration; auto detects it (WEBSITE_SITE_NAME).
  PROBE_VANTAGE: 'auto'
  // Empty: the Mozilla roots that certifi ships stand in for the gateway's well-known CA store.
  WELL_KNOWN_CA_BUNDLE: ''
  PROBE_TIMEOUT_SECONDS: '5'
  LRO_TIMEOUT_SECONDS: '1200'
  VERIFY_DEADLINE_SECONDS: '600'
  WRITE_ATTEMPTS: '5'
  WRITE_BACKOFF_SECONDS: '2'
  BUSY_WAIT_SECONDS: '1200'
  VERIFY_POLL_MIN_SECONDS: '1'
  ARM_POLLING_INTERVAL: '10'
  NOTIFY_WEBHOOK_FORMAT: notifyWebhookFormat
  // The app's files are read-only in Azure; the CLI's local stores go to a temporary directory.
  STATE_DIR: '/tmp/appgw-cert-bot'
  JOBS_QUEUE: 'remediation-jobs'
  LEDGER_TABLE: 'ledger'
  EVIDENCE_CONTAINER: 'evidence'
  LOCK_CONTAINER: 'locks'
  // Read by the Functions host (timer trigger %SWEEP_SCHEDULE%), not the bot, but must exist.
  SWEEP_SCHEDULE: '0 */15 * * * *'
}

resource group 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: groupName
  location: location
  tags: allTags
}

module identity 'modules/identity.bicep' = {
  name: 'bot-identity'
  scope: group
  params: {
    location: location
    name: 'id-appgw-cert-bot-${token}'
    tags: allTags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'bot-monitoring'
  scope: group
  params: {
    location: location
    workspaceName: 'log-appgw-cert-bot-${token}'
    appInsightsName: 'appi-appgw-cert-bot-${token}'
    principalId: identity.outputs.principalId
    tags: allTags
  }
}

module network 'modules/network.bicep' = {
  name: 'bot-network'
  scope: group
  params: {
    location: location
    existingSubnetId: existingSubnetId
    vnetName: 'vnet-appgw-cert-bot-${token}'
    vnetAddressPrefix: vnetAddressPrefix
    subnetAddressPrefix: subnetAddressPrefix
    backendAddressPrefixes: backendPrefixList
    backendPorts: backendPortList
    tags: allTags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'bot-storage'
  scope: group
  params: {
    location: location
    name: 'stbot${token}'
    subnetId: network.outputs.subnetId
    networkDefaultAction: storageNetworkDefaultAction
    operatorIpRanges: operatorIps
    deploymentContainerName: deploymentContainerName
    tags: allTags
  }
}

// Grants before the app: the host reaches its storage with the identity from its first start.
module rbac 'modules/rbac.bicep' = {
  name: 'bot-rbac'
  params: {
    principalId: identity.outputs.principalId
    resourceGroupName: group.name
    storageAccountName: storage.outputs.name
    gatewayIds: gatewayIds
    linkedResourceIds: linkedIds
    keyVaultId: keyVaultId
    roleAssignableScopes: assignableScopes
    roleNameSuffix: '${environmentName}-${token}'
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'bot-functionapp'
  scope: group
  dependsOn: [
    rbac
  ]
  params: {
    location: location
    name: 'func-appgw-cert-bot-${token}'
    planName: 'plan-appgw-cert-bot-${token}'
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    appInsightsName: monitoring.outputs.appInsightsName
    subnetId: network.outputs.subnetId
    botSettings: botSettings
    notifyWebhookUrl: notifyWebhookUrl
    reviewTokenSecret: reviewTokenSecret
    tags: allTags
  }
}

module auth 'modules/auth.bicep' = {
  name: 'bot-auth'
  scope: group
  params: {
    functionAppName: functionApp.outputs.name
    clientId: authClientId
    allowedPrincipalIds: approverIds
  }
}

// azd stores these in the environment; the postdeploy hook passes them to alerts.bicep.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = group.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_HOST string = functionApp.outputs.defaultHostName
output AZURE_BOT_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output ALERT_GATEWAY_IDS string = join(gatewayIds, ',')
// The postprovision hook sets the app registration's redirect URI (azure.yaml); azd keeps outputs
// in the environment even when authClientId was answered at a prompt.
output AUTH_CLIENT_ID string = authClientId
// The MCP tools' endpoint (docs/agents.md); its key is the host's mcp_extension system key,
// read with `az functionapp keys list` (never an output).
output MCP_ENDPOINT string = 'https://${functionApp.outputs.defaultHostName}/runtime/webhooks/mcp'
