"""Key Vault I/O: the trusted-source certificates the trust checks compare against.

`trusted_source` builds the callable the Remediator is given; `fetch_trusted_certificates` is the
one call to Key Vault (public parts only: `.cer`, never a private key).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from shared.common.settings import Settings


def fetch_trusted_certificates(
    vault_url: str, names: Sequence[str], credential: Any, **client_kwargs: Any
) -> list[bytes]:
    """DER of each named Key Vault certificate (public part only: `.cer`). Raises on failure.

    The caller turns a failure into "propose". `client_kwargs` go to CertificateClient (for
    example `connection_verify`, or `verify_challenge_resource`).
    """
    from azure.keyvault.certificates import CertificateClient

    if not vault_url or not names:
        return []
    client = CertificateClient(vault_url=vault_url, credential=credential, **client_kwargs)
    try:
        ders = []
        for name in names:
            cer = client.get_certificate(name).cer
            if cer:
                ders.append(bytes(cer))
        return ders
    finally:
        client.close()


def trusted_source(settings: Settings, credential: Any) -> Callable[[], Sequence[bytes]]:
    """Reads the trusted-source certificates from Key Vault when one is configured."""
    vault = str(settings["KEY_VAULT_URL"])
    names = tuple(settings["TRUSTED_CERT_NAMES"])
    # The SDK checks that the vault's auth challenge names a resource under the vault's own
    # domain, so a token is never sent for the wrong resource (a mistyped or hostile URL). Only a
    # local emulator, whose host is not a vault domain, turns this off, and only by an explicit
    # setting: sovereign-cloud vaults (vault.azure.cn, vault.usgovcloudapi.net) pass the check.
    verify = bool(settings["KEY_VAULT_VERIFY_CHALLENGE_RESOURCE"])

    def fetch() -> Sequence[bytes]:
        if not vault or not names:
            return ()
        return fetch_trusted_certificates(
            vault, names, credential, verify_challenge_resource=verify
        )

    return fetch


__all__ = ["fetch_trusted_certificates", "trusted_source"]
