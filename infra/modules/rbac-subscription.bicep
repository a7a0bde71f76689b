// Grants the bot's sweep role on one subscription that holds target gateways (deployed at that
// subscription; the assignment's scope is the subscription itself). The sweep lists the
// subscription's gateways (one paged list_all, applicationGateways/read) and reads their
// UnhealthyHostCount through the metrics batch API, which is authorized at the subscription:
// POST https://{region}.metrics.monitor.azure.com/subscriptions/{s}/metrics:getBatch. Read on
// each gateway alone is not enough for it (docs/operations.md, "Sweep").
targetScope = 'subscription'

@description('Name (GUID) of the custom sweep role.')
param roleDefinitionName string

@description('Principal (object) id of the bot identity.')
param principalId string

resource grant 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, roleDefinitionName)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionName)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
