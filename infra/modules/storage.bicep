// The function app's own storage account: host state, Flex deployment packages and the bot's
// queue, table and containers. Identity only: shared-key access is off, so every client
// (host, bot, deployment) authenticates with the user-assigned identity (see rbac.bicep).

@description('Azure region.')
param location string

@description('Storage account name (3-24 lower-case letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Subnet the function app integrates with; the only network allowed in when the default action is Deny.')
param subnetId string

@description('Deny: only the integration subnet (and trusted Azure services) reach the account. Allow: any network, still identity-only.')
@allowed([
  'Deny'
  'Allow'
])
param networkDefaultAction string = 'Deny'

@description('Public IP addresses or CIDR ranges (operators running the CLI against the app\'s ledger) admitted besides the subnet when the default action is Deny. IP rules do not apply to clients in the account\'s own region.')
param operatorIpRanges array = []

@description('Blob container Flex Consumption deploys the app package into.')
param deploymentContainerName string

// Names are the defaults in shared/common/settings.py (JOBS_QUEUE, LEDGER_TABLE, EVIDENCE_CONTAINER,
// LOCK_CONTAINER); the poison queue is the one the Functions host moves failed messages to.
@description('Queue of remediation jobs (JOBS_QUEUE).')
param jobsQueueName string = 'remediation-jobs'

@description('Table of alerts, jobs and decisions (LEDGER_TABLE).')
param ledgerTableName string = 'ledger'

@description('Blob container for evidence (EVIDENCE_CONTAINER).')
param evidenceContainerName string = 'evidence'

@description('Blob container holding per-gateway leases (LOCK_CONTAINER).')
param lockContainerName string = 'locks'

@description('Tags for every resource.')
param tags object = {}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_206: LRS is enough: the account holds host state, a job queue, leases and evidence the ledger also records; the deployment package is rebuilt by azd.
  //checkov:skip=CKV_AZURE_59: the public endpoint stays on so that networkAcls decide (default Deny, only the integration subnet and trusted Azure services); turning it off needs private endpoints and private DNS, which this template does not create.
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard_LRS'
  }
  kind: 'StorageV2'
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: networkDefaultAction
      bypass: 'AzureServices'
      virtualNetworkRules: [
        {
          id: subnetId
          action: 'Allow'
        }
      ]
      ipRules: [
        for range in operatorIpRanges: {
          value: range
          action: 'Allow'
        }
      ]
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource evidenceContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: evidenceContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource lockContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: lockContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource jobsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: jobsQueueName
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: '${jobsQueueName}-poison'
}

// The sweep's gateway checks (shared/service/worker.py) and their poison queue: named after the
// job queue, so one setting names both.
resource checksQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: '${jobsQueueName}-checks'
}

resource checksPoisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: '${jobsQueueName}-checks-poison'
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource ledgerTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: ledgerTableName
}

output id string = account.id
output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
