// The alert wiring: an action group whose Azure Function receiver posts the common alert schema
// to /api/alerts, and one metric alert per target gateway on UnhealthyHostCount split by
// BackendSettingsPool, so each failing pool/settings pair is its own alert instance
// (docs/sources.md#alert-schema, docs/sources.md#action-groups). Deployed by ../alerts.bicep
// after the code, because the function key exists only then.

@description('Resource id of the bot function app.')
param functionAppId string

@description('Default host name of the function app.')
param functionAppHostName string

@description('Name of the HTTP-triggered function behind /api/alerts (the Python function name).')
param alertFunctionName string = 'alerts'

@description('Function key the action group sends as ?code= (action groups cannot use managed identity for Function receivers).')
@secure()
param functionKey string

@description('Application Gateway resource ids to alert on.')
param gatewayIds array

@description('Action group name.')
param actionGroupName string = 'ag-appgw-cert-bot'

@description('Severity of the metric alerts (0 critical .. 4 verbose).')
@minValue(0)
@maxValue(4)
param severity int = 2

@description('Tags for every resource.')
param tags object = {}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'appgwcertbot'
    enabled: true
    azureFunctionReceivers: [
      {
        name: 'appgw-cert-bot'
        functionAppResourceId: functionAppId
        functionName: alertFunctionName
        httpTriggerUrl: 'https://${functionAppHostName}/api/alerts?code=${functionKey}'
        useCommonAlertSchema: true
      }
    ]
  }
}

resource unhealthyHosts 'Microsoft.Insights/metricAlerts@2018-03-01' = [
  for gatewayId in gatewayIds: {
    // Gateway names repeat across resource groups; the id hash keeps rule names apart.
    name: 'appgw-cert-bot-${last(split(gatewayId, '/'))}-${uniqueString(gatewayId)}'
    location: 'global'
    tags: tags
    properties: {
      description: 'Backends behind ${last(split(gatewayId, '/'))} fail health probes; the bot diagnoses certificate trust.'
      severity: severity
      enabled: true
      scopes: [
        gatewayId
      ]
      evaluationFrequency: 'PT1M'
      windowSize: 'PT5M'
      autoMitigate: true
      criteria: {
        'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
        allOf: [
          {
            criterionType: 'StaticThresholdCriterion'
            name: 'unhealthy-backends'
            metricNamespace: 'Microsoft.Network/applicationGateways'
            metricName: 'UnhealthyHostCount'
            dimensions: [
              {
                name: 'BackendSettingsPool'
                operator: 'Include'
                values: [
                  '*'
                ]
              }
            ]
            operator: 'GreaterThan'
            threshold: 0
            timeAggregation: 'Average'
          }
        ]
      }
      actions: [
        {
          actionGroupId: actionGroup.id
        }
      ]
    }
  }
]

output actionGroupId string = actionGroup.id
