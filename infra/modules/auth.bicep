// App Service Authentication (Entra ID): signs approvers in and tells the app who they are.
//
// unauthenticatedClientAction is AllowAnonymous, and the app decides (docs/sources.md#easy-auth):
// - "Allow anonymous requests" defers unauthenticated traffic to the app's code, and for
//   authenticated requests App Service still passes the caller in the X-MS-CLIENT-PRINCIPAL*
//   headers, which it strips from client requests (Learn, "Authentication and authorization in
//   Azure App Service and Azure Functions", Authorization behavior; "Work with user identities").
// - The review page (/api/proposals/{id}/review) sends a signed-out browser to
//   /.auth/login/aad?post_login_redirect_uri=<the page> and back; approve, reject and rollback
//   answer 401 JSON without a caller. One global action cannot do both: RedirectToLoginPage would
//   answer API clients with a redirect, Return401 would never send a browser to sign in, and
//   excludedPaths cannot name /api/proposals/{id}/review (the id is in the middle; only a
//   trailing /* wildcard is supported, MicrosoftDocs/azure-docs#86514).
// - /api/alerts and the other keyed routes need the function key at the Functions host, as
//   before; the action group has no Entra token to send (docs/sources.md#action-groups).
// Sign-in without a client secret uses the implicit flow and needs ID tokens enabled on the app
// registration, with the web redirect URI https://<host>/.auth/login/aad/callback (Learn,
// "Configure your App Service or Azure Functions app to use Microsoft Entra sign-in"); the
// postprovision hook in azure.yaml sets both (docs/deploy.md).

@description('Function app name.')
param functionAppName string

@description('Application (client) id of the Entra app registration approvers sign in to.')
param clientId string

@description('Entra tenant of that app registration.')
param tenantId string = tenant().tenantId

@description('Extra audiences accepted besides api://<clientId> and <clientId>.')
param extraAudiences array = []

@description('Entra object ids App Service Authentication admits (APPROVERS); a signed-in principal not listed gets 403 from the platform. Empty leaves it to the app registration (appRoleAssignmentRequired).')
param allowedPrincipalIds array = []

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  //checkov:skip=CKV_AZURE_13: this check reads only the legacy authsettings (properties.enabled); authsettingsV2 turns authentication on with platform.enabled below (the app, not the platform, refuses anonymous callers: see the top of this file).
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
      // The app answers each unauthenticated request itself: a redirect to sign-in for the review
      // page, 401 for the API (see the top of this file).
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
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
