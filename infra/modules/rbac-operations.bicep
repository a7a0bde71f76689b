// Grants the bot's operation-tracking role on one target gateway's resource group (deployed into
// that group; the assignment's scope is the group itself). The status of a gateway update
// (Azure-AsyncOperation) and of backend health (Location) is read from
// /subscriptions/{s}/providers/Microsoft.Network/locations/{loc}/operations|operationResults/{id},
// which is not under the gateway: "to track the status of an asynchronous operation, you need
// sufficient permission at the level of the resource group. If you only have permission at the
// resource level, you can start the operation but you can't track its status."
// https://learn.microsoft.com/azure/azure-resource-manager/management/async-operations

@description('Name (GUID) of the custom operation-tracking role.')
param roleDefinitionName string

@description('Principal (object) id of the bot identity.')
param principalId string

resource grant 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, roleDefinitionName)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionName)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
