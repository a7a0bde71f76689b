// Grants certificates/read on the trusted-source Key Vault (deployed into the vault's group).
// The vault must use the Azure RBAC permission model (enableRbacAuthorization).

@description('Key Vault name.')
param keyVaultName string

@description('Name (GUID) of the custom certificate-reader role.')
param roleDefinitionName string

@description('Principal (object) id of the bot identity.')
param principalId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource grant 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, principalId, roleDefinitionName)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionName)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
