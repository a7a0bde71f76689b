// Second deployment step, after the code: the alert wiring (action group -> /api/alerts and a
// metric alert per gateway). Separate from main.bicep because the function key it embeds in the
// action group exists only once the app's code is deployed (see
// docs/sources.md#action-groups: the key is stored in the action; rotate it by re-running this).
//   az deployment group create --resource-group <rg> --template-file infra/alerts.bicep \
//     --parameters functionAppName=<app> gatewayIds=<comma-separated gateway ids>

@description('Name of the bot function app (main.bicep output AZURE_FUNCTION_APP_NAME).')
param functionAppName string

@description('Comma-separated Application Gateway ids to alert on (main.bicep output ALERT_GATEWAY_IDS).')
param gatewayIds string

@description('Name of the HTTP-triggered function behind /api/alerts.')
param alertFunctionName string = 'alerts'

@description('Tags for every resource.')
param tags object = {}

// Ids trimmed: `a, b` (a space after the comma) must not become ' b'.
var gatewayIdList = [for id in filter(split(gatewayIds, ','), x => !empty(trim(x))): trim(id)]

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

module alerts 'modules/alerts.bicep' = {
  name: 'bot-alerts'
  params: {
    functionAppId: site.id
    functionAppHostName: site.properties.defaultHostName
    alertFunctionName: alertFunctionName
    // The alerts function's own default key: it opens /api/alerts only, not the other keyed
    // routes (/api/gateways/..., /api/jobs, /api/proposals, /api/changes) as a host key would.
    // A secure parameter, never an output.
    // https://learn.microsoft.com/azure/azure-functions/function-keys-how-to
    functionKey: listKeys('${site.id}/functions/${alertFunctionName}', '2024-04-01').default
    gatewayIds: gatewayIdList
    tags: tags
  }
}
