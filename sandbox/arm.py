"""Local Azure Resource Manager for Microsoft.Network/applicationGateways, over HTTPS.

Speaks the real ARM protocol the azure-mgmt-network SDK expects (see
docs/sources.md#arm-lro and docs/sources.md#overlapping-writes): bearer tokens, case-insensitive
paths, weak ETags, PUT as a long-running operation with Azure-AsyncOperation, backend health as a
Location LRO, ARM-shaped errors. Backend health is computed by really probing the pool members
(sandbox.health_rules).

Control endpoint (no auth, loopback only, never subject to faults) under `{url}/sandbox`:
  GET    /sandbox/requests        -> [{"method", "path", "status"}] of every ARM request served
  POST   /sandbox/reset-requests  -> forget them
  GET    /sandbox/faults          -> {"faults": [active rules with remaining counts],
                                      "other_writes": [{"gateway", "etag", "error"}]}
  POST   /sandbox/faults          -> add rules (sandbox/faults.py; 400 if any rule is invalid)
  DELETE /sandbox/faults          -> clear every rule

  GET    /sandbox/operations      -> [{"id", "gateway", "by", "status", "error"}] of every gateway
                                      write operation (ours and `another_writer`'s)

Options (scenario `options`): lro_delay_seconds, health_lro_seconds, retry_after_seconds (when
given, sent on the gateway PUT, its operation polls and backend-health 202s, which send none by
default),
conflict (what a PUT gets while another write runs on the gateway: "supersede", the default, as
Azure does: accepted, the earlier operation ends Canceled; or "409" / "429": refused),
probe_interval_seconds, probe_timeout_cap_seconds, hosts, resource_groups, faults (rules, as
POSTed), clock (tests); subscriptions (more subscription ids the emulator serves), list_page_size
(gateways per page of a list: a `nextLink` with `$skiptoken` follows, as ARM pages collections),
health_model (gateway id -> {"unhealthy": n, "servers": m, "no_data": bool}: backend health and
the UnhealthyHostCount metric of that gateway come from the model, nothing is probed;
sandbox/fleet.py).

The write protocol follows recorded real traffic (tests/data/recorded/, SOURCES.md): update PUT
200, create 201, `Azure-AsyncOperation` on both, no `Location`, no `ETag` and no `Retry-After`
header on PUT responses; `provisioningState` `Updating` in the PUT body and on GET until the
operation ends; status bodies exactly {"status": "InProgress"} / {"status": "Succeeded"}, 200;
a PUT while the gateway is `Updating` is accepted (cli_ag_auth_cert_v1.json: four PUTs within
6 s, each 200 with its own Azure-AsyncOperation) and the earlier operation ends Canceled.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from cryptography import x509

from sandbox import arm_validation as val
from sandbox import permissions
from sandbox.arm_validation import ArmError
from sandbox.faults import (
    AfterGet,
    Effect,
    ErrorReply,
    FaultBook,
    FaultError,
    LroEnd,
    merge_patch,
    superseded_error,
)
from sandbox.health_rules import (
    PairPlan,
    ProbeLimits,
    ProbeResult,
    plan_gateway,
    plan_on_demand,
    probe,
    props,
)

GATEWAY_TYPE = "Microsoft.Network/applicationGateways"
_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_RG = _SUB + r"/resourcegroups/(?P<rg>[^/]+)"
_GWS = r"/providers/microsoft\.network/applicationgateways"
_LOC = _SUB + r"/providers/microsoft\.network/locations/(?P<loc>[^/]+)"
ROUTES: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple(
    (method, name, re.compile(f"^{pattern}/?$", re.IGNORECASE))
    for method, name, pattern in (
        ("GET", "get", _RG + _GWS + r"/(?P<name>[^/]+)"),
        ("PUT", "put", _RG + _GWS + r"/(?P<name>[^/]+)"),
        ("POST", "backendhealth", _RG + _GWS + r"/(?P<name>[^/]+)/backendhealth"),
        ("POST", "ondemand", _RG + _GWS + r"/(?P<name>[^/]+)/getbackendhealthondemand"),
        ("GET", "list_rg", _RG + _GWS),
        ("GET", "list_all", _SUB + _GWS),
        ("GET", "async_op", _LOC + r"/operations/(?P<op>[^/]+)"),
        ("GET", "op_result", _LOC + r"/operationresults/(?P<op>[^/]+)"),
    )
)


@dataclass
class _WriteOp:
    gateway_key: str
    done_at: float
    status: str = "InProgress"
    final: str = "Succeeded"  # Succeeded | Failed | Canceled (faults)
    error: dict[str, Any] | None = None
    touches_gateway: bool = True  # the gateway's provisioningState follows this operation
    by: str = "client"  # client (a PUT) | another_writer (a fault's overlapping writer)


@dataclass
class _HealthJob:
    future: Future[dict]
    not_before: float
    location: str


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    effect: Effect | None = None  # what a fault rule decided for this request


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def _new_etag() -> str:
    return f'W/"{uuid.uuid4()}"'


class ArmEmulator:
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
        self._retry_after = str(int(options.get("retry_after_seconds", 1)))
        # NRP sends no Retry-After on the gateway PUT, its status polls or backend health
        # (cli_ag_auth_cert_v1.json idx 9, cli_ag_root_cert_v2.json 05:25:58-05:26:20,
        # cli_ag_backend_health_v2.json): clients poll at their own cadence. Only an explicit
        # `retry_after_seconds` adds one (429 faults and the 429 overlap mode always send one).
        self._op_retry_after: dict[str, str] = (
            {"Retry-After": self._retry_after} if "retry_after_seconds" in options else {}
        )
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

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._endpoint = HttpsEndpoint(self, self._tls, "arm-emulator")
        self.url = self._endpoint.url
        self.control_url = f"{self.url}/sandbox"

    def stop(self) -> None:
        if self._endpoint is not None:
            self._endpoint.stop()
            self._endpoint = None
        self._jobs.shutdown(wait=False, cancel_futures=True)
        self._probes.shutdown(wait=False, cancel_futures=True)

    def gateway_document(self, gateway_id: str) -> dict:
        """The stored document, sslCertificates' PFX `data` and `password` included (for tests)."""
        with self._lock:
            self._settle()
            return copy.deepcopy(self._gateways[gateway_id.lower()])

    # ---- seeding and normalisation ---------------------------------------------------------

    def _seed(self, raw: dict) -> None:
        gateway_id = str(raw["id"])
        try:
            val.validate_gateway(raw, gateway_id, None)
        except ArmError as exc:
            raise ValueError(f"seed gateway {gateway_id}: {exc.code}: {exc.message}") from exc
        doc = copy.deepcopy(raw)
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

    # ---- HTTP entry point ------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if request.path.lower().startswith("/sandbox"):
            return self._control(request)
        try:
            response = self._arm(request)
        except ArmError as exc:
            response = Response(exc.status, exc.body(), dict(exc.headers))
        with self._lock:
            self._requests.append(
                {"method": request.method, "path": request.path, "status": response.status}
            )
        return response

    def _arm(self, request: Request) -> Response:
        self._authenticate(request)
        scope = permissions.scope_of(request.path) if request.method == "GET" else None
        if scope is not None:  # the caller's own permissions (sandbox/permissions.py)
            token = request.headers.get("authorization", "").partition(" ")[2].strip()
            return Response(200, permissions.permissions_body(self._authorizer, token, scope))
        for method, name, pattern in ROUTES:
            match = pattern.match(request.path)
            if match and method == request.method:
                request.params = match.groupdict()
                self._authorize(request, name)
                request.effect = self._fault_for(request, name)
                if isinstance(request.effect, ErrorReply):
                    reply = request.effect
                    raise ArmError(reply.status, reply.code, reply.message, headers=reply.headers)
                self._check_subscription(request.params["sub"])
                handler: Callable[[Request], Response] = getattr(self, f"_route_{name}")
                response = handler(request)
                if self._authorizer is not None:
                    self._authorizer.observe(name, request.params, response.headers)
                return response
        raise ArmError(404, "NotFound", f"No route for {request.method} {request.path}.")

    def _authorize(self, request: Request, route: str) -> None:
        """Role-based access control (sandbox/rbac.py), after authentication, before the route."""
        if self._authorizer is None:
            return
        token = request.headers.get("authorization", "").partition(" ")[2].strip()
        body = None
        if request.method == "PUT":
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                body = json.loads(request.body or b"null")
        self._authorizer.authorize(token, route, request.params, body)

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token and self._verify_token(token.strip()):
            return
        reason = "is missing" if not header else "is invalid"
        raise ArmError(
            401,
            "AuthenticationFailed",
            f"Authentication failed. The 'Authorization' header {reason}.",
            headers={
                "WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/'
                'common", error="invalid_token", error_description="The access token is invalid."'
            },
        )

    def _fault_for(self, request: Request, route: str) -> Effect | None:
        """The one place where injected faults are decided (rules: sandbox/faults.py).

        An ErrorReply is answered at once; LroEnd shapes the PUT's operation (_route_put);
        AfterGet makes another writer commit right after the GET is served (_route_get).
        Only ARM routes get here: the control endpoint and the identity endpoint never do.
        """
        with self._lock:
            return self._faults.take(
                request.method, route, request.params.get("name"), request.path
            )

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

    # ---- routes ----------------------------------------------------------------------------

    def _route_get(self, request: Request) -> Response:
        with self._lock:
            self._settle()
            response = Response(200, val.redact(self._existing(request)))
            # GET 200 carries the ETag header too (cli_ag_auth_cert_v1.json idx 7,
            # cli_ag_root_cert_v2.json 05:26:20); PUT responses do not (see _route_put).
            response.headers["ETag"] = str(response.body.get("etag", ""))
            if isinstance(request.effect, AfterGet):
                effect = request.effect
                self._other_writer(self._gateway_key(request), effect.patch, effect.seconds)
            return response

    def _other_writer(self, key: str, patch: dict, seconds: float = 0.0) -> None:
        """Someone else (Terraform, a pipeline) writes the gateway between a client's GET and
        PUT (docs/sources.md#overlapping-writes: ARM does not honour If-Match here).

        `seconds` > 0: their write is a PUT whose operation runs that long, as ours would: the
        gateway is `Updating` meanwhile and a PUT in that time supersedes (cancels) it.
        """
        previous = self._gateways[key]
        doc = merge_patch(previous, patch)
        record: dict[str, str | None] = {"gateway": previous["id"], "etag": None, "error": None}
        try:
            val.validate_gateway(doc, previous["id"], previous)
        except ArmError as exc:
            record["error"] = f"{exc.code}: {exc.message}"  # the patch is dropped, not half-done
            self._other_writes.append(record)
            return
        val.keep_hidden_data(doc, previous)
        state = previous.get("properties", {}).get("provisioningState", "Succeeded")
        if seconds > 0:
            op_id = str(uuid.uuid4())
            self._supersede(key, op_id)
            self._write_ops[op_id] = _WriteOp(key, self._clock() + seconds, by="another_writer")
            self._busy[key] = op_id
            state = "Updating"
        self._stamp(doc, previous["id"], state=state, keep_child_ids=False)
        self._gateways[key] = doc
        record["etag"] = doc["etag"]
        self._other_writes.append(record)

    def _route_list_rg(self, request: Request) -> Response:
        with self._lock:
            self._settle()
            self._require_rg(request)
            prefix = (
                f"/subscriptions/{request.params['sub']}/resourcegroups/{request.params['rg']}/"
            )
            return Response(200, self._list(prefix.lower(), request))

    def _route_list_all(self, request: Request) -> Response:
        with self._lock:
            self._settle()
            return Response(
                200, self._list(f"/subscriptions/{request.params['sub']}/".lower(), request)
            )

    def _list(self, prefix: str, request: Request) -> dict[str, Any]:
        """One page of the gateways under `prefix` (sorted by id), and a `nextLink` to the next
        page when there is one: the SDK's pager follows it (docs/sources.md#arm-lro)."""
        keys = sorted(key for key in self._gateways if key.startswith(prefix))
        raw_skip = (request.query.get("$skiptoken") or ["0"])[0]
        skip = int(raw_skip) if raw_skip.isdigit() else 0
        page = keys[skip : skip + self._page_size]
        body: dict[str, Any] = {"value": [val.redact(self._gateways[key]) for key in page]}
        if skip + self._page_size < len(keys):
            body["nextLink"] = (
                f"{self.url}{request.path}?api-version={self._api_version(request)}"
                f"&$skiptoken={skip + self._page_size}"
            )
        return body

    def _route_put(self, request: Request) -> Response:
        body = self._json_body(request)
        key = self._gateway_key(request)
        with self._lock:
            self._settle()
            self._require_rg(request)
            previous = self._gateways.get(key)
            gateway_id = previous["id"] if previous else self._canonical_id(request)
            self._check_conflict(key)
            val.validate_gateway(body, gateway_id, previous)
            doc = copy.deepcopy(body)
            doc.setdefault("location", (previous or {}).get("location"))
            if previous is not None:
                guid = previous.get("properties", {}).get("resourceGuid")
                doc.setdefault("properties", {}).setdefault("resourceGuid", guid)
            val.keep_hidden_data(doc, previous)
            self._stamp(doc, gateway_id, state="Updating", keep_child_ids=False)
            op_id = str(uuid.uuid4())
            op = self._write_op(key, request.effect)
            if op.touches_gateway:
                # Accepted even while another operation runs; that one ends Canceled.
                self._supersede(key, op_id)
                if self._commits(request.effect):
                    self._gateways[key] = doc
                elif previous is not None:
                    # Fails without taking the body: the old document ends Failed.
                    self._stamp(previous, gateway_id, state="Updating", keep_child_ids=True)
                self._busy[key] = op_id
            elif previous is not None:
                # Superseded by someone else's PUT of the old content: still a new ETag, as
                # every accepted PUT gives one (cli_ag_auth_cert_v1.json, findings (d)).
                state = str(previous.get("properties", {}).get("provisioningState", "Succeeded"))
                self._stamp(previous, gateway_id, state=state, keep_child_ids=True)
            self._write_ops[op_id] = op
            response_body = val.redact(doc)
        # Lower-case location segment, `operations` (not operationResults), same api-version as
        # the PUT (cli_ag_auth_cert_v1.json idx 9, cli_ag_root_cert_v2.json 05:25:58).
        location = str(doc.get("location") or "local").replace(" ", "").lower()
        op_url = (
            f"{self.url}/subscriptions/{request.params['sub']}/providers/Microsoft.Network/"
            f"locations/{location}/operations/{op_id}?api-version={self._api_version(request)}"
        )
        # Azure-AsyncOperation only: no Location, no ETag, no Retry-After (cli_ag_auth_cert_v1.json
        # idx 9/11/13/15, cli_ag_root_cert_v2.json 05:25:58); update 200, create 201
        # (java_ag_kv_sslcert_identity.json 06:13:42).
        headers = {"Azure-AsyncOperation": op_url, **self._op_retry_after}
        return Response(200 if previous else 201, response_body, headers)

    def _supersede(self, key: str, op_id: str) -> None:
        """A write accepted while another operation runs on the gateway cancels that operation
        (caller holds the lock). Its status becomes Canceled with the superseded code in
        `error.details` (sandbox.faults.superseded_error); its body stays overwritten."""
        old_id = self._busy.pop(key, None)
        old = self._write_ops.get(old_id) if old_id else None
        if old is None or old.status != "InProgress":
            return
        old.status = old.final = "Canceled"
        old.error = superseded_error(op_id)

    @staticmethod
    def _commits(effect: Effect | None) -> bool:
        return not isinstance(effect, LroEnd) or effect.commit

    def _write_op(self, key: str, effect: Effect | None) -> _WriteOp:
        """The operation a PUT starts; a fault may make it slow, failed or superseded."""
        if not isinstance(effect, LroEnd):
            return _WriteOp(key, self._clock() + self._lro_delay)
        delay = self._lro_delay if effect.seconds is None else effect.seconds
        error: dict[str, Any] | None = None
        if effect.code:
            error = {"code": effect.code, "message": effect.message or effect.code}
            if effect.details:
                error["details"] = [dict(d) for d in effect.details]
        # A superseded PUT never touches the gateway: the superseding writer owns it
        # (docs/sources.md#overlapping-writes).
        touches = effect.commit or effect.status == "Failed"
        return _WriteOp(
            key, self._clock() + delay, final=effect.status, error=error, touches_gateway=touches
        )

    def _canonical_id(self, request: Request) -> str:
        p = request.params
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{p['rg']}"
            f"/providers/{GATEWAY_TYPE}/{p['name']}"
        )

    def _check_conflict(self, key: str) -> None:
        """A write while another runs on the same gateway, in the 409 / 429 modes only
        (docs/sources.md#overlapping-writes); by default it is accepted and supersedes
        (_supersede)."""
        if key not in self._busy or self._conflict in {"supersede", "none"}:
            return
        op_id = self._busy[key]
        if self._conflict == "429":
            raise ArmError(
                429,
                "RetryableErrorDueToAnotherOperation",
                f"Operation PutApplicationGatewayOperation is blocked by operation {op_id}. "
                "Please retry later.",
                headers={"Retry-After": self._retry_after},
            )
        raise ArmError(
            409,
            "AnotherOperationInProgress",
            "Another operation on this or dependent resource is in progress. To retrieve status "
            f"of the operation use uri: {self.url}/subscriptions/{self.subscription_id}/providers/"
            f"Microsoft.Network/locations/local/operations/{op_id}.",
        )

    def _route_async_op(self, request: Request) -> Response:
        with self._lock:
            self._settle()
            op = self._write_ops.get(request.params["op"].lower())
        if op is None:
            raise ArmError(404, "OperationNotFound", "The operation was not found.")
        # Exactly {"status": "InProgress"} / {"status": "Succeeded"}, 200, no Retry-After unless
        # the option asks (cli_ag_root_cert_v2.json 05:26:09 / 05:26:20).
        if op.status == "InProgress":
            return Response(200, {"status": "InProgress"}, dict(self._op_retry_after))
        if op.error is not None:
            # What the SDK turns into HttpResponseError with error.code (docs/sources.md#arm-lro).
            return Response(200, {"status": op.status, "error": copy.deepcopy(op.error)})
        return Response(200, {"status": op.status})

    # ---- backend health --------------------------------------------------------------------

    def _route_backendhealth(self, request: Request) -> Response:
        with self._lock:
            self._settle()
            doc = copy.deepcopy(self._existing(request))
        expand = bool((request.query.get("$expand") or [""])[0])
        return self._start_health_job(request, doc, lambda: self._gateway_health(doc, expand))

    def _route_ondemand(self, request: Request) -> Response:
        body = self._json_body(request)
        with self._lock:
            self._settle()
            doc = copy.deepcopy(self._existing(request))
        if not isinstance(body, dict):
            raise val.bad_request("InvalidRequestContent", "The request content was invalid.")
        plan = plan_on_demand(doc, body, self._limits)
        if plan is None:
            raise val.bad_request(
                "InvalidResourceReference",
                "backendAddressPool and backendHttpSettings must reference resources of "
                f"{doc['id']}.",
            )
        return self._start_health_job(request, doc, lambda: self._on_demand_health(plan))

    def _start_health_job(
        self, request: Request, doc: dict, compute: Callable[[], dict]
    ) -> Response:
        job_id = str(uuid.uuid4())
        location = (
            f"{self.url}/subscriptions/{request.params['sub']}/providers/Microsoft.Network/"
            f"locations/{doc.get('location') or 'local'}/operationResults/{job_id}"
            f"?api-version={self._api_version(request)}"
        )
        job = _HealthJob(self._jobs.submit(compute), time.monotonic() + self._health_lro, location)
        with self._lock:
            self._health_jobs[job_id] = job
        # No Retry-After unless the option asks (cli_ag_backend_health_v2.json POST and polls).
        return Response(202, None, {"Location": location, **self._op_retry_after})

    def _route_op_result(self, request: Request) -> Response:
        with self._lock:
            job = self._health_jobs.get(request.params["op"].lower())
        if job is None:
            raise ArmError(404, "OperationNotFound", "The operation was not found.")
        if not job.future.done() or time.monotonic() < job.not_before:
            return Response(202, None, {"Location": job.location, **self._op_retry_after})
        try:
            return Response(200, job.future.result())
        except Exception as exc:
            raise ArmError(500, "InternalServerError", f"Backend health failed: {exc}") from exc

    def _gateway_health(self, doc: dict, expand: bool) -> dict:
        """Cached per (pool, settings, member) and refreshed per probe interval
        (docs/sources.md#health-states)."""
        modelled = self._health_model.get(str(doc["id"]).lower())
        if modelled is not None:
            return _modelled_health(doc, modelled)
        plans = plan_gateway(doc, self._limits)
        gw = str(doc["id"]).lower()
        now = self._clock()
        stale = []
        with self._lock:
            for plan in plans:
                for target in plan.targets:
                    key = (
                        gw,
                        plan.pool_id.lower(),
                        plan.settings_id.lower(),
                        target.address.lower(),
                    )
                    cached = self._health_cache.get(key)
                    if cached is None or now - cached[0] >= plan.interval:
                        stale.append((key, target))
        fresh = list(self._probes.map(probe, [target for _, target in stale]))
        with self._lock:
            for (key, _), result in zip(stale, fresh, strict=True):
                self._health_cache[key] = (now, result)
            results = {
                key: self._health_cache[key][1]
                for plan in plans
                for key in self._plan_keys(gw, plan)
            }
        return self._health_body(doc, plans, results, expand)

    @staticmethod
    def _plan_keys(gw: str, plan: PairPlan) -> list[tuple[str, ...]]:
        return [
            (gw, plan.pool_id.lower(), plan.settings_id.lower(), t.address.lower())
            for t in plan.targets
        ]

    def _health_body(
        self,
        doc: dict,
        plans: list[PairPlan],
        results: dict[tuple[str, ...], ProbeResult],
        expand: bool,
    ) -> dict:
        gw = str(doc["id"]).lower()
        pools: dict[str, dict] = {}
        for plan in plans:
            entry = pools.setdefault(
                plan.pool_id.lower(),
                {
                    "backendAddressPool": self._ref(
                        doc, "backendAddressPools", plan.pool_id, expand
                    ),
                    "backendHttpSettingsCollection": [],
                },
            )
            servers = [
                _server(t.address, results[key])
                for t, key in zip(plan.targets, self._plan_keys(gw, plan), strict=True)
            ]
            entry["backendHttpSettingsCollection"].append(
                {
                    "backendHttpSettings": self._ref(
                        doc, "backendHttpSettingsCollection", plan.settings_id, expand
                    ),
                    "servers": servers,
                }
            )
        return {"backendAddressPools": list(pools.values())}

    @staticmethod
    def _ref(doc: dict, collection: str, child_id: str, expand: bool) -> dict:
        if expand:
            for child in props(val.redact(doc)).get(collection) or []:
                if str(child.get("id", "")).lower() == child_id.lower():
                    return dict(child)
        return {"id": child_id}

    def _on_demand_health(self, plan: PairPlan) -> dict:
        """On demand: probed now, never from the cache."""
        results = list(self._probes.map(probe, plan.targets))
        return {
            "backendAddressPool": {"id": plan.pool_id},
            "backendHealthHttpSettings": {
                "backendHttpSettings": {"id": plan.settings_id},
                "servers": [
                    _server(t.address, r) for t, r in zip(plan.targets, results, strict=True)
                ],
            },
        }

    # ---- for the metrics emulator (sandbox/metrics.py) ------------------------------------

    def gateway_location(self, gateway_id: str) -> str | None:
        """The stored gateway's `location` (None: no such gateway)."""
        with self._lock:
            doc = self._gateways.get(gateway_id.lower())
            return None if doc is None else str(doc.get("location") or "")

    def unhealthy_host_count(self, gateway_id: str) -> int | None:
        """What Azure Monitor's UnhealthyHostCount would say now: from the health model, else
        counted from this emulator's own backend health (probes, cached per probe interval).
        None: the gateway sends no metric data (the model says so, or it does not exist)."""
        key = gateway_id.lower()
        with self._lock:
            doc = copy.deepcopy(self._gateways.get(key))
            modelled = self._health_model.get(key)
        if doc is None:
            return None
        if modelled is not None:
            return None if modelled.get("no_data") else int(modelled.get("unhealthy", 0))
        body = self._gateway_health(doc, False)
        return sum(
            1
            for pool in body["backendAddressPools"]
            for entry in pool["backendHttpSettingsCollection"]
            for server in entry["servers"]
            if server.get("health") != "Healthy"
        )

    def record_request(self, method: str, path: str, status: int) -> None:
        """A request another local service answered, listed with ARM's (GET /sandbox/requests)."""
        with self._lock:
            self._requests.append({"method": method, "path": path, "status": status})

    # ---- control endpoint ------------------------------------------------------------------

    def _control(self, request: Request) -> Response:
        route = request.path.lower().rstrip("/")
        with self._lock:
            if request.method == "GET" and route == "/sandbox/requests":
                return Response(200, list(self._requests))
            if request.method == "POST" and route == "/sandbox/reset-requests":
                self._requests.clear()
                return Response(200, {"cleared": True})
            if route == "/sandbox/faults":
                return self._control_faults(request)
            if request.method == "GET" and route == "/sandbox/operations":
                self._settle()
                return Response(200, [self._op_json(i, op) for i, op in self._write_ops.items()])
        return Response(404, {"error": {"code": "NotFound", "message": "No such control route."}})

    def _op_json(self, op_id: str, op: _WriteOp) -> dict[str, Any]:
        doc = self._gateways.get(op.gateway_key)
        return {
            "id": op_id,
            "gateway": doc["id"] if doc else op.gateway_key,
            "by": op.by,
            "status": op.status,
            "error": copy.deepcopy(op.error) if op.status != "InProgress" else None,
        }

    def _control_faults(self, request: Request) -> Response:
        """GET lists, POST adds (all rules valid or none added), DELETE clears (caller locks)."""
        if request.method == "POST":
            try:
                self._faults.add(json.loads(request.body or b"[]"))
            except (ValueError, FaultError) as exc:
                return Response(400, {"error": {"code": "InvalidFault", "message": str(exc)}})
        elif request.method == "DELETE":
            self._faults.clear()
        elif request.method != "GET":
            return Response(
                405, {"error": {"code": "MethodNotAllowed", "message": "GET, POST, DELETE"}}
            )
        return Response(
            200, {"faults": self._faults.snapshot(), "other_writes": list(self._other_writes)}
        )


_GWS_PATH = "/providers/microsoft.network/applicationgateways"


# What a modelled unhealthy server reports: the message Azure shows for a backend whose
# certificate is not trusted (docs/sources.md#health-states).
_MODEL_UNTRUSTED = (
    "The root certificate of the server certificate used by the backend does not match the "
    "trusted root certificate added to the application gateway. Ensure that you add the correct "
    "root certificate to whitelist the backend"
)


def _modelled_health(doc: dict, model: dict[str, Any]) -> dict:
    """Backend health from a health model: the first pool/settings pair, `servers` members of
    which the first `unhealthy` are Unhealthy (sandbox/fleet.py)."""
    properties = props(doc)
    pools = properties.get("backendAddressPools") or [{}]
    settings = properties.get("backendHttpSettingsCollection") or [{}]
    addresses = [
        str(a.get("ipAddress") or a.get("fqdn") or "")
        for a in (pools[0].get("properties") or {}).get("backendAddresses") or []
    ] or ["10.0.0.4"]
    count = max(int(model.get("servers", len(addresses))), int(model.get("unhealthy", 0)), 1)
    unhealthy = int(model.get("unhealthy", 0))
    servers = [
        {
            "address": addresses[i % len(addresses)],
            "health": "Unhealthy" if i < unhealthy else "Healthy",
            "healthProbeLog": _MODEL_UNTRUSTED
            if i < unhealthy
            else "Success. Received 200 status code",
        }
        for i in range(count)
    ]
    return {
        "backendAddressPools": [
            {
                "backendAddressPool": {"id": pools[0].get("id", "")},
                "backendHttpSettingsCollection": [
                    {"backendHttpSettings": {"id": settings[0].get("id", "")}, "servers": servers}
                ],
            }
        ]
    }


def _server(address: str, result: ProbeResult) -> dict:
    return {"address": address, "health": result.health, "healthProbeLog": result.log}


class TlsHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(address, handler)
        # The handshake runs in the request thread, so a slow client cannot stall accept().
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )


class JsonApp(Protocol):
    def handle(self, request: Request) -> Response: ...


class HttpsEndpoint:
    """`app` served over HTTPS on 127.0.0.1 (a free port) in a daemon thread; PEM cert and key."""

    def __init__(self, app: JsonApp, tls: tuple[bytes, bytes], name: str) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
            cert.write_bytes(tls[0])
            key.write_bytes(tls[1])
            context.load_cert_chain(cert, key)
        self._server = TlsHttpServer(("127.0.0.1", 0), _make_handler(app), context)
        # A short poll interval: stop() waits for it (the default 0.5 s adds up over a test run).
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=name,
            daemon=True,
        )
        self._thread.start()
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _make_handler(emulator: JsonApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "SandboxARM/1.0"
        # TCP_NODELAY: headers and body go out as two writes; with Nagle the body waits for the
        # client's delayed ACK (about 40 ms per response on Linux loopback).
        disable_nagle_algorithm = True

        def setup(self) -> None:
            super().setup()
            self.request.settimeout(30)
            self._tls_ok = True
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError):
                self._tls_ok = False

        def handle(self) -> None:
            if self._tls_ok:  # a client that failed the handshake gets nothing more
                with contextlib.suppress(ssl.SSLError, ConnectionError, TimeoutError):
                    super().handle()

        def _serve(self) -> None:
            if not self.client_address[0].startswith("127."):
                self.send_error(403)
                return
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            response = emulator.handle(request)
            payload = b"" if response.body is None else json.dumps(response.body).encode()
            self.send_response(response.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-ms-request-id", str(uuid.uuid4()))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
