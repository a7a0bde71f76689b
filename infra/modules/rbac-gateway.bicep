// Grants the bot's gateway role on one Application Gateway (deployed into the gateway's group).

@description('Application Gateway name.')
param gatewayName string

@description('Name (GUID) of the custom gateway role.')
param roleDefinitionName string

@description('Principal (object) id of the bot identity.')
param principalId string

resource gateway 'Microsoft.Network/applicationGateways@2024-05-01' existing = {
  name: gatewayName
}

resource grant 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: gateway
  name: guid(gateway.id, principalId, roleDefinitionName)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionName)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
