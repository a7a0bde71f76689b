"""The ARM emulator's state and the lookups every route shares: stored gateways, write
operations, ARM's read-only output (ids, etags, provisioning state), and its 404s.

sandbox/arm.py composes this with the write (sandbox/arm_writes.py) and backend-health
(sandbox/arm_health.py) routes."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from sandbox import arm_backrefs as backrefs
from sandbox import arm_ops as ops
from sandbox import arm_validation as val
from sandbox.arm_http import HttpsEndpoint, Request
from sandbox.arm_validation import ArmError
from sandbox.faults import FaultBook, FaultError
from sandbox.health_rules import ProbeLimits, ProbeResult

GATEWAY_TYPE = "Microsoft.Network/applicationGateways"
_GWS_PATH = "/providers/microsoft.network/applicationgateways"


@dataclass
class _WriteOp:
    gateway_key: str
    done_at: float
    status: str = "InProgress"
    polls: int = 0  # status polls answered InProgress so far (the recorded Retry-After backs off)
    final: str = "Succeeded"  # Succeeded | Failed | Canceled (faults)
    error: dict[str, Any] | None = None
    touches_gateway: bool = True  # the gateway's provisioningState follows this operation
    by: str = "client"  # client (a PUT) | another_writer (a fault's overlapping writer)


@dataclass
class _HealthJob:
    future: Future[dict]
    not_before: float
    location: str


def _new_etag() -> str:
    return f'W/"{uuid.uuid4()}"'


class ArmCore:
    def __init__(
        self,
        *,
        subscription_id: str,
        gateways: list[dict],
        tls_cert_pem: bytes,
        tls_key_pem: bytes,
        verify_token: Callable[[str], bool],
        well_known_roots: list[bytes],
        options: dict,
        authorizer: Any = None,
    ) -> None:
        self.subscription_id = subscription_id
        self._tls = (tls_cert_pem, tls_key_pem)
        self._verify_token = verify_token
        # sandbox.rbac.Authorizer when started with --rbac; None lets every valid token in.
        self._authorizer = authorizer
        self._options = dict(options)
        # Injectable for tests: drives LRO completion and the probe-interval cache.
        self._clock: Callable[[], float] = options.get("clock") or time.monotonic
        self._lro_delay = float(options.get("lro_delay_seconds", 2.0))
        self._health_lro = float(options.get("health_lro_seconds", 0.5))
        # 429 answers (faults, the 429 overlap mode) always carry a Retry-After of this many s.
        self._retry_after = str(int(options.get("retry_after_seconds", 1)))
        # Retry-After on the gateway PUT, its operation polls and backend health: NRP sends it
        # (tests/data/recorded/net_ag_backend_health_v2.json; azure-cli recordings cannot show
        # it, their recorder drops the header). Recorded values times `time_scale`; a fixed
        # `retry_after_seconds` wins; never more than the operation has left (ops.py).
        self._time_scale = float(options.get("time_scale", 1.0))
        fixed = options.get("retry_after_seconds")
        self._fixed_retry_after = float(fixed) if fixed is not None else None
        # "none" is the older name of the default: the overlapping PUT is accepted.
        self._conflict = str(options.get("conflict", "supersede"))
        interval_cap = options.get("probe_interval_seconds")
        self._limits = ProbeLimits(
            hosts={k.lower(): v for k, v in (options.get("hosts") or {}).items()},
            well_known_roots=tuple(x509.load_der_x509_certificate(d) for d in well_known_roots),
            timeout_cap=float(options.get("probe_timeout_cap_seconds", 3.0)),
            interval_cap=float(interval_cap) if interval_cap is not None else None,
        )
        self._lock = threading.RLock()
        self._gateways: dict[str, dict] = {}
        self._resource_groups: set[str] = {
            f"/subscriptions/{subscription_id}/resourcegroups/{rg}".lower()
            for rg in options.get("resource_groups") or []
        }
        self._subscriptions = {subscription_id.lower()} | {
            str(s).lower() for s in options.get("subscriptions") or []
        }
        self._page_size = max(1, int(options.get("list_page_size", 100)))
        self._health_model: dict[str, dict[str, Any]] = {
            str(k).lower(): dict(v) for k, v in (options.get("health_model") or {}).items()
        }
        self._write_ops: dict[str, _WriteOp] = {}
        self._busy: dict[str, str] = {}
        self._health_jobs: dict[str, _HealthJob] = {}
        # (gateway, pool, settings, member) -> (probed at, result); refreshed per probe interval.
        self._health_cache: dict[tuple[str, ...], tuple[float, ProbeResult]] = {}
        self._requests: list[dict] = []
        try:
            self._faults = FaultBook(options.get("faults"))
        except FaultError as exc:
            raise ValueError(f"options.faults: {exc}") from exc
        self._other_writes: list[dict[str, str | None]] = []
        self._endpoint: HttpsEndpoint | None = None
        self._jobs = ThreadPoolExecutor(max_workers=4, thread_name_prefix="arm-health")
        self._probes = ThreadPoolExecutor(max_workers=32, thread_name_prefix="arm-probe")
        self.url = ""
        self.control_url = ""
        for raw in gateways:
            self._seed(raw)

    # ---- seeding and normalisation ---------------------------------------------------------

    def _seed(self, raw: dict) -> None:
        gateway_id = str(raw["id"])
        try:
            val.validate_gateway(raw, gateway_id, None)
        except ArmError as exc:
            raise ValueError(f"seed gateway {gateway_id}: {exc.code}: {exc.message}") from exc
        doc = backrefs.strip(raw)
        self._stamp(doc, gateway_id, state="Succeeded", keep_child_ids=True)
        self._gateways[gateway_id.lower()] = doc
        self._resource_groups.add(gateway_id.lower().split("/providers/")[0])

    def _stamp(self, doc: dict, gateway_id: str, *, state: str, keep_child_ids: bool) -> None:
        """Fill ARM's read-only output: ids, type, weak etag, provisioning state."""
        etag = _new_etag()
        doc["id"] = gateway_id
        doc["name"] = gateway_id.rsplit("/", 1)[-1]
        doc["type"] = GATEWAY_TYPE
        doc["etag"] = etag
        properties = doc.setdefault("properties", {})
        properties["provisioningState"] = state
        properties.setdefault("operationalState", "Running")
        properties.setdefault("resourceGuid", str(uuid.uuid4()))
        for key, children in properties.items():
            if not isinstance(children, list):
                continue
            for child in children:
                if isinstance(child, dict) and "name" in child:
                    if not (keep_child_ids and child.get("id")):
                        child["id"] = f"{gateway_id}/{key}/{child['name']}"
                    child["etag"] = etag
                    child.setdefault("type", f"{GATEWAY_TYPE}/{key}")
                    if isinstance(child.setdefault("properties", {}), dict):
                        child["properties"]["provisioningState"] = state

    @staticmethod
    def _set_state(doc: dict, state: str) -> None:
        properties = doc.get("properties") or {}
        properties["provisioningState"] = state
        for children in properties.values():
            for child in children if isinstance(children, list) else []:
                if isinstance(child, dict) and isinstance(child.get("properties"), dict):
                    child["properties"]["provisioningState"] = state

    def _settle(self) -> None:
        """Finish write operations whose delay has passed (caller holds the lock)."""
        now = self._clock()
        for op_id, op in self._write_ops.items():
            if op.status == "InProgress" and now >= op.done_at:
                op.status = op.final
                if self._busy.get(op.gateway_key) == op_id:
                    del self._busy[op.gateway_key]
                    if op.touches_gateway and op.gateway_key in self._gateways:
                        # A failed update leaves the gateway Failed
                        # (docs/sources.md#overlapping-writes).
                        state = "Failed" if op.final == "Failed" else "Succeeded"
                        self._set_state(self._gateways[op.gateway_key], state)

    def _check_subscription(self, sub: str) -> None:
        if sub.lower() not in self._subscriptions:
            raise ArmError(
                404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found."
            )

    def _gateway_key(self, request: Request) -> str:
        p = request.params
        return f"/subscriptions/{p['sub']}/resourcegroups/{p['rg']}{_GWS_PATH}/{p['name']}".lower()

    def _require_rg(self, request: Request) -> None:
        p = request.params
        if (
            f"/subscriptions/{p['sub']}/resourcegroups/{p['rg']}".lower()
            not in self._resource_groups
        ):
            raise ArmError(
                404, "ResourceGroupNotFound", f"Resource group '{p['rg']}' could not be found."
            )

    def _existing(self, request: Request) -> dict:
        """The stored gateway (caller holds the lock), or ARM's 404s."""
        self._require_rg(request)
        doc = self._gateways.get(self._gateway_key(request))
        if doc is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource '{GATEWAY_TYPE}/{request.params['name']}' under resource group "
                f"'{request.params['rg']}' was not found. For more details please go to "
                "https://aka.ms/ARMResourceNotFoundFix",
            )
        return doc

    def _api_version(self, request: Request) -> str:
        return (request.query.get("api-version") or ["2026-03-01"])[0]

    def _json_body(self, request: Request) -> Any:
        try:
            return json.loads(request.body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise val.bad_request(
                "InvalidRequestContent",
                f"The request content was invalid and could not be deserialized: {exc}",
            ) from exc

    def _canonical_id(self, request: Request) -> str:
        p = request.params
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{p['rg']}"
            f"/providers/{GATEWAY_TYPE}/{p['name']}"
        )

    def _retry_after_header(self, recorded: float, remaining: float) -> dict[str, str]:
        """Retry-After for an operation still running (sandbox/arm_ops.py)."""
        seconds = ops.retry_after(recorded, self._time_scale, self._fixed_retry_after, remaining)
        return {"Retry-After": ops.format_seconds(seconds)}

    @staticmethod
    def _out(doc: dict) -> dict:
        """What GET and PUT responses show of a stored document: certificates projected
        (arm_validation), computed back-references added (arm_backrefs)."""
        return backrefs.add(val.redact(doc))
