"""Errors as one line an operator can act on: a missing credential or setting names what to set;
the Azure SDK's own log (the credential chain it tried) only with `--debug`."""

from __future__ import annotations

import logging
import sys

_CREDENTIAL_MARKERS = (
    "DefaultAzureCredential failed",
    "ManagedIdentityCredential authentication unavailable",
    "CredentialUnavailableError",
    "ClientAuthenticationError",
)
NO_CREDENTIAL = (
    "no Azure credential to call ARM: sign in with `az login`, or set AZURE_CLIENT_ID for a "
    "managed identity (IDENTITY_ENDPOINT and IDENTITY_HEADER in Azure), or AZURE_TENANT_ID, "
    "AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for a service principal "
    "(--debug shows the chain tried)"
)


def configure_logging(debug: bool) -> None:
    """Without --debug the SDKs stay quiet (their warnings are the multi-line credential-chain
    dump); errors reach the operator as one line from main. With it, their log on stderr."""
    if debug:
        logging.basicConfig(
            level=logging.DEBUG, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
        )
        return
    logging.getLogger("azure").setLevel(logging.CRITICAL)
    logging.getLogger("azure").propagate = False
    logging.getLogger("azure").addHandler(logging.NullHandler())


def explain(exc: BaseException) -> str:
    """The error's message, or the setting to set when the cause is a missing credential."""
    seen: BaseException | None = exc
    for _ in range(8):  # the exception, its causes and contexts
        if seen is None:
            break
        text = f"{type(seen).__name__}: {seen}"
        if any(marker in text for marker in _CREDENTIAL_MARKERS):
            return NO_CREDENTIAL
        seen = seen.__cause__ or seen.__context__
    if type(exc).__name__ in {"StorageUnavailable", "StorageRejected"}:
        return f"{exc} (the function app's storage, from AzureWebJobsStorage)"
    return str(exc)
