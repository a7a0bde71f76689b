"""Azure Resource Manager I/O for Application Gateways, through azure-mgmt-network.

The bot works on the RAW gateway document (a dict), so fields the SDK does not model survive a
read-modify-write. Every ARM call the bot makes is listed in `ARM_ACTIONS` with the RBAC action it
needs; infra/ builds the custom role from it and a test keeps the two equal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.common.errors import BotError
from shared.common.ids import GatewayId

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.mgmt.network import NetworkManagementClient

    from shared.common.settings import Settings

# Operation -> RBAC action. Add a row with every new ARM call (tests/infra checks the custom role).
ARM_ACTIONS: dict[str, str] = {
    "get_gateway": "Microsoft.Network/applicationGateways/read",
    "list_gateways": "Microsoft.Network/applicationGateways/read",
    "iter_gateways": "Microsoft.Network/applicationGateways/read",
    "put_gateway": "Microsoft.Network/applicationGateways/write",
    "backend_health": "Microsoft.Network/applicationGateways/backendhealth/action",
    "backend_health_on_demand": (
        "Microsoft.Network/applicationGateways/getBackendHealthOnDemand/action"
    ),
    "poll_operation": "Microsoft.Network/locations/operations/read",
    "poll_operation_result": "Microsoft.Network/locations/operationResults/read",
}

# A whole-gateway PUT re-submits links to these resources; ARM checks join/assign on each of them
# (read too, for subnets, public IPs and WAF policies: LINKED_RESOURCE_READS). infra/ grants each
# on the linked resource alone. https://learn.microsoft.com/azure/application-gateway/
# configuration-infrastructure#permissions
LINKED_RESOURCE_ACTIONS: dict[str, str] = {
    "subnet": "Microsoft.Network/virtualNetworks/subnets/join/action",
    "public_ip": "Microsoft.Network/publicIPAddresses/join/action",
    "waf_policy": "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/join/action",
    "user_assigned_identity": "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
    # A certificate's keyVaultSecretId: "Enables access to secrets in a key vault when deploying
    # Azure resources" (docs/deploy.md: only a real deployment shows ARM checks it on a gateway).
    "key_vault": "Microsoft.KeyVault/vaults/deploy/action",
}
LINKED_RESOURCE_READS: dict[str, str] = {
    "subnet": "Microsoft.Network/virtualNetworks/subnets/read",
    "public_ip": "Microsoft.Network/publicIPAddresses/read",
    "waf_policy": "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/read",
}


class ArmError(BotError):
    """An ARM call failed; `code` is ARM's error code, `status` the HTTP status.

    `details` holds the codes nested in `error.details` (depth first): a superseded operation
    ends with top-level code `Canceled` and `CanceledAndSupersededDueToAnotherOperation` only in
    its details (azure-cli issue #21156, terraform-provider-iterative issue #341).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        details: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.retry_after = retry_after
        self.details = details

    @property
    def codes(self) -> tuple[str, ...]:
        """The top-level code, then every nested detail code."""
        return ((self.code,) if self.code else ()) + self.details


class GatewayNotFound(ArmError):
    """The gateway (or its resource group) does not exist, or the bot may not see it."""


class LroTimeout(ArmError):
    """A long-running operation did not finish within the bot's deadline."""


class LroFailed(ArmError):
    """ARM accepted the PUT, then its operation ended Failed or Canceled (code kept).

    Unlike a refused request, the gateway may now hold the body or be left Failed.
    """


@dataclass(frozen=True)
class GatewayDocument:
    """A gateway as read from ARM: the raw JSON and its ETag at read time."""

    doc: dict[str, Any]

    @property
    def etag(self) -> str | None:
        value = self.doc.get("etag")
        return str(value) if value is not None else None

    @property
    def provisioning_state(self) -> str | None:
        props = self.doc.get("properties")
        return props.get("provisioningState") if isinstance(props, dict) else None


def _raw_json(pipeline_response: Any, _deserialized: Any, _headers: Any) -> Any:
    """`cls=` hook: hand back the response JSON instead of an SDK model (keeps unknown fields)."""
    return pipeline_response.http_response.json()


def _retry_after(error: Any) -> float | None:
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    raw = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def _detail_codes(odata: Any, depth: int = 0) -> tuple[str, ...]:
    """Codes in an ODataV4Format's `details`, depth first (bounded: bodies are untrusted)."""
    if depth >= 4:
        return ()
    codes: list[str] = []
    for detail in (getattr(odata, "details", None) or [])[:20]:
        code = getattr(detail, "code", None)
        if isinstance(code, str) and code:
            codes.append(code)
        codes.extend(_detail_codes(detail, depth + 1))
    return tuple(codes)


def _detail_messages(odata: Any) -> list[str]:
    return [
        str(m)
        for d in (getattr(odata, "details", None) or [])[:5]
        if (m := getattr(d, "message", None))
    ]


def to_arm_error(error: Exception) -> ArmError:
    """Translate an azure-core exception into ArmError (code, nested detail codes, status,
    Retry-After kept)."""
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    if isinstance(error, ArmError):
        return error
    if isinstance(error, HttpResponseError):
        odata = getattr(error, "error", None)
        code = getattr(odata, "code", None) or getattr(error, "reason", None)
        message = getattr(odata, "message", None) or str(error).splitlines()[0]
        details = _detail_codes(odata)
        extra = "".join(f" ({m})" for m in _detail_messages(odata))
        status = getattr(error, "status_code", None)
        kind = GatewayNotFound if isinstance(error, ResourceNotFoundError) else ArmError
        return kind(
            f"ARM {status}: {code}{''.join('/' + d for d in details)}: {message}{extra}",
            code=code,
            status=status,
            retry_after=_retry_after(error),
            details=details,
        )
    return ArmError(f"ARM request failed: {error}")


# Clouds and their Resource Manager token scopes: the `.default` of each cloud's ARM endpoint
# (https://learn.microsoft.com/azure/developer/python/sdk/azure-sdk-sovereign-domain passes
# `credential_scopes=[resource_manager + "/.default"]` with `base_url=resource_manager`).
_KNOWN_ARM_SCOPES = {
    "management.azure.com": "https://management.azure.com/.default",
    "management.chinacloudapi.cn": "https://management.chinacloudapi.cn/.default",
    "management.usgovcloudapi.net": "https://management.usgovcloudapi.net/.default",
}


def arm_scope(endpoint: str) -> str:
    """The token scope for the Resource Manager at `endpoint`.

    The SDK's default is the public cloud's scope whatever `base_url` says, so a bot pointed at
    Azure China or US Government would ask for a token ARM there refuses. Known clouds map to
    their audience; any other endpoint (the local sandbox, whose ARM accepts tokens issued for
    its own URL) gets `<scheme>://<host[:port]>/.default`.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint.strip() or "https://management.azure.com")
    host = (parts.hostname or "").lower()
    if host in _KNOWN_ARM_SCOPES:
        return _KNOWN_ARM_SCOPES[host]
    return f"{parts.scheme.lower() or 'https'}://{parts.netloc.lower()}/.default"


def make_credential(settings: Settings) -> TokenCredential:
    """The managed identity in Azure (and in the sandbox), else the default credential chain."""
    import os

    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    client_id = settings["AZURE_CLIENT_ID"] or None
    if os.environ.get("IDENTITY_ENDPOINT") and os.environ.get("IDENTITY_HEADER"):
        return ManagedIdentityCredential(client_id=client_id)
    return DefaultAzureCredential(managed_identity_client_id=client_id)


class ArmClient:
    """Application Gateway calls on raw documents. One SDK client per subscription."""

    def __init__(
        self,
        settings: Settings,
        *,
        credential: TokenCredential | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._credential = credential
        self._clients: dict[str, NetworkManagementClient] = {}
        self._sleep = sleep

    def _network(self, subscription: str) -> NetworkManagementClient:
        client = self._clients.get(subscription.lower())
        if client is None:
            from azure.mgmt.network import NetworkManagementClient

            if self._credential is None:
                self._credential = make_credential(self._settings)
            endpoint = self._settings.arm_endpoint
            client = NetworkManagementClient(
                self._credential,
                subscription,
                base_url=endpoint,
                credential_scopes=[arm_scope(endpoint)],
                polling_interval=self._settings["ARM_POLLING_INTERVAL"],
            )
            self._clients[subscription.lower()] = client
        return client

    def _ops(self, gid: GatewayId) -> Any:
        return self._network(gid.subscription).application_gateways

    def get_gateway(self, gid: GatewayId) -> GatewayDocument:
        """GET the gateway as raw JSON."""
        try:
            doc = self._ops(gid).get(gid.resource_group, gid.name, cls=_raw_json)
        except Exception as exc:
            raise to_arm_error(exc) from exc
        if not isinstance(doc, dict):
            raise ArmError(f"ARM returned no gateway document for {gid}")
        return GatewayDocument(doc)

    def list_gateways(self, subscription: str, resource_group: str | None = None) -> list[dict]:
        """List gateway documents in a subscription or one resource group."""
        ops = self._network(subscription).application_gateways
        try:
            pages = ops.list(resource_group) if resource_group else ops.list_all()
            return [item.as_dict() if hasattr(item, "as_dict") else dict(item) for item in pages]
        except Exception as exc:
            raise to_arm_error(exc) from exc

    def iter_gateways(
        self, subscription: str, resource_group: str | None = None
    ) -> Iterator[tuple[str, str]]:
        """(id, location) of every gateway in a subscription or one group, page by page: the
        SDK follows ARM's `nextLink`, and nothing but the two fields outlives its page."""
        ops = self._network(subscription).application_gateways
        try:
            pages = ops.list(resource_group) if resource_group else ops.list_all()
            for item in pages:
                if item.id:
                    yield str(item.id), str(item.location or "")
        except Exception as exc:
            raise to_arm_error(exc) from exc

    def put_gateway(
        self,
        gid: GatewayId,
        doc: Mapping[str, Any],
        *,
        on_accepted: Callable[[], None] | None = None,
    ) -> GatewayDocument:
        """PUT the whole gateway and wait (bounded) for the LRO. `on_accepted` runs once ARM has
        accepted the PUT, before the wait for its operation (progress for the CLI).

        SDK retries are off for the PUT only: a retried PUT would replay a body that may be
        stale; the caller owns those retries and re-reads before each attempt. The status polls
        and the final GET keep the SDK's retry policy: a 429 or 5xx on a poll says nothing about
        the write, and giving up there would leave an applied change unrecorded.

        How: azure-core reads `retry_total` per request from the call's kwargs, and the
        generated `begin_create_or_update` hands the same kwargs both to the initial PUT and,
        when `polling=True`, to the ARMPolling it builds, whose polls and final GET send them
        again. So the bot builds the polling method itself (what the SDK would build: ARMPolling
        with the client's interval and its `endpoint` path argument, but without the
        per-request kwargs) and passes `retry_total=0` for the initial PUT alone. This keeps the
        SDK's own LRO logic (Azure-AsyncOperation, Retry-After when sent, final GET) and public
        API only; a test (tests/test_remediate_faults.py) checks both halves against the sandbox.
        """
        from azure.mgmt.core.polling.arm_polling import ARMPolling

        body = {k: v for k, v in doc.items() if k != "etag"}
        polling = ARMPolling(
            float(self._settings["ARM_POLLING_INTERVAL"]),
            path_format_arguments={"endpoint": self._settings.arm_endpoint},
        )
        try:
            poller = self._ops(gid).begin_create_or_update(
                gid.resource_group, gid.name, body, retry_total=0, polling=polling, cls=_raw_json
            )
        except Exception as exc:
            raise to_arm_error(exc) from exc
        if on_accepted is not None:
            on_accepted()
        try:
            result = self._wait(poller, f"update of {gid.name}")
        except LroTimeout:
            raise
        except ArmError as exc:
            raise LroFailed(
                str(exc),
                code=exc.code,
                status=exc.status,
                retry_after=exc.retry_after,
                details=exc.details,
            ) from exc
        if not isinstance(result, dict):
            return self.get_gateway(gid)
        return GatewayDocument(result)

    def backend_health(self, gid: GatewayId) -> dict[str, Any]:
        """Run the backend-health LRO and return its raw result."""
        try:
            poller = self._ops(gid).begin_backend_health(
                gid.resource_group, gid.name, cls=_raw_json
            )
        except Exception as exc:
            raise to_arm_error(exc) from exc
        result = self._wait(poller, f"backend health of {gid.name}")
        if not isinstance(result, dict):
            raise ArmError(f"backend health of {gid.name} returned no result")
        return result

    def backend_health_on_demand(
        self, gid: GatewayId, probe_request: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Run getBackendHealthOnDemand for one pool/settings pair; raw result."""
        try:
            poller = self._ops(gid).begin_backend_health_on_demand(
                gid.resource_group, gid.name, dict(probe_request), cls=_raw_json
            )
        except Exception as exc:
            raise to_arm_error(exc) from exc
        result = self._wait(poller, f"on-demand health of {gid.name}")
        if not isinstance(result, dict):
            raise ArmError(f"on-demand health of {gid.name} returned no result")
        return result

    def _wait(self, poller: Any, what: str) -> Any:
        # poller.result(timeout) returns a half-baked object instead of raising; check done().
        timeout = float(self._settings["LRO_TIMEOUT_SECONDS"])
        try:
            poller.wait(timeout=timeout)
            if not poller.done():
                raise LroTimeout(f"{what} did not finish within {timeout:.0f} s", code="LroTimeout")
            return poller.result()
        except ArmError:
            raise
        except Exception as exc:
            raise to_arm_error(exc) from exc
