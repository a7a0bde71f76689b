// App Service Authentication (Entra ID) in front of the approval endpoints (/api/gateways/...,
// /api/jobs/..., /api/proposals/...). /api/alerts is excluded: Azure Monitor action groups
// cannot present an Entra token to a Function receiver and call it with the function key
// instead (docs/sources.md#action-groups).

@description('Function app name.')
param functionAppName string

@description('Application (client) id of the Entra app registration approvers sign in to.')
param clientId string

@description('Entra tenant of that app registration.')
param tenantId string = tenant().tenantId

@description('Extra audiences accepted besides api://<clientId> and <clientId>.')
param extraAudiences array = []

@description('Entra object ids admitted to the approval endpoints; empty leaves it to the app registration (appRoleAssignmentRequired).')
param allowedPrincipalIds array = []

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  //checkov:skip=CKV_AZURE_13: this check reads only the legacy authsettings (properties.enabled); authsettingsV2 turns authentication on with platform.enabled and requireAuthentication below.
  //checkov:skip=CKV_AZURE_63: HTTP logging is a site web-config setting; this check misfires on every sites/config resource, and this one is authsettingsV2.
  //checkov:skip=CKV_AZURE_65: detailed error messages are a site web-config setting; this check misfires on this authsettingsV2 resource.
  //checkov:skip=CKV_AZURE_66: failed request tracing is a site web-config setting; this check misfires on this authsettingsV2 resource.
  //checkov:skip=CKV_AZURE_80: the .NET Framework version does not apply: this is a Python app, and this resource is authsettingsV2.
  //checkov:skip=CKV_AZURE_88: Azure Files mounts are a site setting that a Flex Consumption Python app does not need; this check misfires on this authsettingsV2 resource.
  //checkov:skip=CKV_AZURE_222: authentication settings carry no network setting; public access is justified on the site in functionapp.bicep.
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      // An API has no sign-in page to redirect to: unauthenticated calls get 401.
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/api/alerts'
        // The MCP tools (Functions MCP extension): the host's mcp_extension system key guards
        // them, as the function key guards /api/alerts; agents hold no user session
        // (docs/agents.md). No tool writes a gateway.
        '/runtime/webhooks/mcp'
      ]
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: clientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: concat([
            'api://${clientId}'
            clientId
          ], extraAudiences)
          // Without this, any principal of the tenant with a token for the app gets in.
          // https://learn.microsoft.com/azure/app-service/configure-authentication-provider-aad#use-a-built-in-authorization-policy
          defaultAuthorizationPolicy: empty(allowedPrincipalIds) ? {} : {
            allowedPrincipals: {
              identities: allowedPrincipalIds
            }
          }
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}
