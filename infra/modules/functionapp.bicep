// The bot's Function App on the Flex Consumption plan (FC1, Linux, Python 3.11), HTTPS only,
// TLS 1.2, basic publishing credentials (FTP and SCM) off, running as the user-assigned identity.
// siteConfig sets no property on Learn's Flex Consumption deprecation list ("App settings
// reference for Azure Functions", Flex Consumption plan deprecations): ARM rejects them with error
// 51021 ("... for Flex Consumption sites is invalid"), ftpsState included (docs/sources.md#flex-consumption).
// Flex Consumption is the plan to use for a new Python app with VNet integration
// (docs/sources.md#functions: Linux Consumption is retired).

@description('Azure region.')
param location string

@description('Function app name (also the host name prefix).')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('Storage account the host, the deployment and the bot use.')
param storageAccountName string

@description('Blob container Flex Consumption deploys the package into.')
param deploymentContainerName string

@description('Application Insights component name.')
param appInsightsName string

@description('Integration subnet id (delegated to Microsoft.App/environments).')
param subnetId string

@description('Settings the bot reads (shared/common/settings.py), name to value; built in main.bicep.')
param botSettings object

@description('Webhook for proposals and outcomes (NOTIFY_WEBHOOK_URL); a secret because the URL carries its credential.')
@secure()
param notifyWebhookUrl string = ''

@description('Key of the review page\'s anti-CSRF tokens (REVIEW_TOKEN_SECRET).')
@secure()
param reviewTokenSecret string = ''

@description('Most instances Flex Consumption may scale out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory per instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Spread instances over availability zones (only in regions where Flex Consumption supports it).')
param zoneRedundant bool = false

@description('Tags for every resource.')
param tags object = {}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

// Identity-based AzureWebJobsStorage: no connection string or key exists anywhere (shared-key
// access is off on the account). The bot's own clients read the same __accountName/__clientId.
var platformSettings = {
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AZURE_CLIENT_ID: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  // Local (key) auth is off on the component: the exporter signs in as the user-assigned identity.
  // https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identityClientId}'
  NOTIFY_WEBHOOK_URL: notifyWebhookUrl
  REVIEW_TOKEN_SECRET: reviewTokenSecret
}

var appSettings = union(botSettings, platformSettings)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  //checkov:skip=CKV_AZURE_225: zone redundancy on Flex Consumption is available in some regions only; set zoneRedundant where the region supports it.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  //checkov:skip=CKV_AZURE_222: public access stays on: Azure Monitor action groups call /api/alerts from the internet (with the function key) and cannot reach a private endpoint; approval routes are behind Entra ID (auth.bicep).
  //checkov:skip=CKV_AZURE_17: callers do not authenticate with client certificates: action groups send the function key and approvers an Entra ID token.
  //checkov:skip=CKV_AZURE_212: Flex Consumption scales out per trigger from zero; a standing minimum of instances would be always-ready capacity billed around the clock for an alert-driven bot.
  //checkov:skip=CKV_AZURE_78: this check reads siteConfig.ftpsState, which Flex Consumption rejects (ARM error 51021; Learn Flex Consumption deprecations); FTP is off through basicPublishingCredentialsPolicies ftp allow=false below.
  //checkov:skip=CKV_AZURE_213: App Service health check takes unhealthy instances out of a pool of always-on web workers; this app has none, and the probe path would need an anonymous route past App Service Authentication.
  name: name
  location: location
  // azd finds the app to deploy the `bot` service to by this tag.
  tags: union(tags, {
    'azd-service-name': 'bot'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    virtualNetworkSubnetId: subnetId
    keyVaultReferenceIdentity: identityId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      appSettings: [
        for setting in items(appSettings): {
          name: setting.key
          value: setting.value
        }
      ]
    }
  }
}

// Basic (user/password) publishing credentials off for both FTP and the SCM site: deployments
// authenticate with Entra ID. This, not siteConfig.ftpsState (which Flex Consumption rejects), is
// what turns FTP off here.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = site.id
output name string = site.name
output defaultHostName string = site.properties.defaultHostName
