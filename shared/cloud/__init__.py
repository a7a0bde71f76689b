"""Azure I/O: Resource Manager (the gateway, backend health, long-running operations), the
credential, and Key Vault (the trusted source).

Owns: every call to an Azure control-plane or Key Vault API, through the Azure SDKs.
May import: shared.common and the Azure SDKs (imported lazily, off the alert path).
"""
