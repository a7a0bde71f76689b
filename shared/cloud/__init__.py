"""Azure I/O: Resource Manager (the gateway, backend health, long-running operations, listing
gateways), the credential and token scope per cloud, Azure Monitor metrics (the sweep's
pre-filter), Key Vault (the trusted source), and what a 403 says is missing.

Owns: every call to an Azure control-plane, metrics or Key Vault API, through the Azure SDKs.
May import: shared.common and the Azure SDKs (imported lazily, off the alert path).
"""
