// VNet integration for the function app. The bot probes backends by private IP (the ILB of an
// App Service Environment), so it must sit in a network that reaches the ILB on the backend ports;
// without it the diagnosis cannot see what the gateway sees (docs/sources.md#network-reach:
// Flex Consumption, Premium and Dedicated plans have VNet integration).
//
// Either pass an existing subnet (already delegated to Microsoft.App/environments, with the
// Microsoft.Storage service endpoint) or let this module create a VNet, subnet and NSG; peer that
// VNet with the ASE's VNet yourself (docs/deploy.md).

@description('Azure region.')
param location string

@description('Resource id of an existing integration subnet; empty to create a VNet and subnet here.')
param existingSubnetId string = ''

@description('Name of the VNet created when no existing subnet is given.')
param vnetName string

@description('Address space of the created VNet; must not overlap the ASE VNet you peer it with.')
param vnetAddressPrefix string = '10.90.0.0/24'

@description('Prefix of the created integration subnet; each scaled-out instance takes an address, so size it for maximumInstanceCount.')
param subnetAddressPrefix string = '10.90.0.0/26'

@description('Address prefixes of the backends the bot probes (the ASE ILB addresses); the NSG allows outbound to them on backendPorts.')
param backendAddressPrefixes array = []

@description('TCP ports the backends listen on (the gateway backend settings ports).')
param backendPorts array = [
  '443'
]

@description('Tags for every resource.')
param tags object = {}

var createNetwork = empty(existingSubnetId)
var subnetName = 'snet-functions'
var probeRule = {
  name: 'allow-backend-probe-out'
  properties: {
    description: 'The bot probes the ILB on the backend ports, as the gateway does.'
    direction: 'Outbound'
    access: 'Allow'
    priority: 200
    protocol: 'Tcp'
    sourceAddressPrefix: subnetAddressPrefix
    sourcePortRange: '*'
    destinationAddressPrefixes: backendAddressPrefixes
    destinationPortRanges: backendPorts
  }
}
var probeRules = empty(backendAddressPrefixes) ? [] : [probeRule]
var createdSubnetId = resourceId('Microsoft.Network/virtualNetworks/subnets', vnetName, subnetName)

resource nsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = if (createNetwork) {
  name: '${vnetName}-nsg'
  location: location
  tags: tags
  properties: {
    securityRules: probeRules
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = if (createNetwork) {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        vnetAddressPrefix
      ]
    }
    subnets: [
      {
        name: subnetName
        properties: {
          addressPrefix: subnetAddressPrefix
          networkSecurityGroup: {
            id: nsg.id
          }
          // Flex Consumption integrates only with a subnet delegated to Microsoft.App/environments.
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
          // Lets the storage account admit this subnet only (storage.bicep networkAcls).
          serviceEndpoints: [
            {
              service: 'Microsoft.Storage'
            }
          ]
        }
      }
    ]
  }
}

output subnetId string = createNetwork ? createdSubnetId : existingSubnetId
output created bool = createNetwork
