// The bot's user-assigned managed identity: one identity for ARM, storage and Key Vault, so that
// every grant in rbac.bicep names one principal and survives re-creating the function app.

@description('Azure region.')
param location string

@description('Name of the user-assigned identity.')
param name string

@description('Tags for every resource.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
