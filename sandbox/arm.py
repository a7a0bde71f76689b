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
given, sent on the gateway PUT, its operation polls and backend-health 202s instead of the
recorded values), time_scale (factor on the recorded Retry-After values; sandbox/arm_ops.py),
conflict (what a PUT gets while another write runs on the gateway: "supersede", the default, as
Azure does: accepted, the earlier operation ends Canceled; or "409" / "429": refused),
probe_interval_seconds, probe_timeout_cap_seconds, hosts, resource_groups, faults (rules, as
POSTed), clock (tests); subscriptions (more subscription ids the emulator serves), list_page_size
(gateways per page of a list: a `nextLink` with `$skiptoken` follows, as ARM pages collections),
health_model (gateway id -> {"unhealthy": n, "servers": m, "no_data": bool}: backend health and
the UnhealthyHostCount metric of that gateway come from the model, nothing is probed;
sandbox/fleet.py).

The write protocol follows recorded real traffic (tests/data/recorded/, SOURCES.md): update PUT
200, create 201, `Azure-AsyncOperation` on both, no `Location` and no `ETag` header on PUT
responses, `Retry-After` as recorded by a recorder that keeps it (sandbox/arm_ops.py);
computed back-references in GET and PUT bodies, ignored in a PUT (sandbox/arm_backrefs.py); an
unregistered api-version refused (sandbox/arm_versions.py); `provisioningState` `Updating` in
the PUT body and on GET until the
operation ends; status bodies exactly {"status": "InProgress"} / {"status": "Succeeded"}, 200;
a PUT while the gateway is `Updating` is accepted (cli_ag_auth_cert_v1.json: four PUTs within
6 s, each 200 with its own Azure-AsyncOperation) and the earlier operation ends Canceled.

This module routes and authenticates; the rest lives by concern: sandbox/arm_core.py (state,
lookups, read-only output), sandbox/arm_writes.py (PUT and its operation), sandbox/arm_health.py
(backend health), sandbox/arm_http.py (the HTTPS server), sandbox/arm_validation.py (what ARM
refuses in a body).
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
from collections.abc import Callable
from typing import Any

from sandbox import arm_versions as versions
from sandbox import permissions
from sandbox.arm_core import GATEWAY_TYPE, _WriteOp
from sandbox.arm_health import BackendHealth
from sandbox.arm_http import HttpsEndpoint, Request, Response
from sandbox.arm_validation import ArmError
from sandbox.arm_writes import WriteOps
from sandbox.faults import AfterGet, Effect, ErrorReply, FaultError

# Routes of the applicationGateways type, whose api-version ARM checks; the operation URLs
# NRP hands out carry the version it chose.
_VERSIONED_ROUTES = frozenset({"get", "put", "backendhealth", "ondemand", "list_rg", "list_all"})


def _location(doc: dict) -> str:
    return str(doc.get("location") or "").replace(" ", "").lower()


__all__ = ["GATEWAY_TYPE", "ROUTES", "ArmEmulator", "HttpsEndpoint", "Request", "Response"]

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


class ArmEmulator(WriteOps, BackendHealth):
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
                if name in _VERSIONED_ROUTES:
                    self._check_api_version(request)
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

    def _check_api_version(self, request: Request) -> None:
        """ARM refuses an api-version the provider does not register (sandbox/arm_versions.py),
        before the provider sees the request."""
        given = request.query.get("api-version")
        version = given[0] if given else None
        try:
            versions.check(version, "", ())
        except ArmError:
            with self._lock:
                locations = [_location(d) for d in self._gateways.values()]
                doc = (
                    self._gateways.get(self._gateway_key(request))
                    if "name" in request.params
                    else None
                )
            here = _location(doc) if doc else (sorted(set(locations)) or ["westus"])[0]
            versions.check(version, here, locations)

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

    # ---- routes ----------------------------------------------------------------------------

    def _route_get(self, request: Request) -> Response:
        with self._lock:
            self._settle()
            response = Response(200, self._out(self._existing(request)))
            # GET 200 carries the ETag header too (cli_ag_auth_cert_v1.json idx 7,
            # cli_ag_root_cert_v2.json 05:26:20); PUT responses do not (see _route_put).
            response.headers["ETag"] = str(response.body.get("etag", ""))
            if isinstance(request.effect, AfterGet):
                effect = request.effect
                self._other_writer(self._gateway_key(request), effect.patch, effect.seconds)
            return response

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
        body: dict[str, Any] = {"value": [self._out(self._gateways[key]) for key in page]}
        if skip + self._page_size < len(keys):
            body["nextLink"] = (
                f"{self.url}{request.path}?api-version={self._api_version(request)}"
                f"&$skiptoken={skip + self._page_size}"
            )
        return body

    # ---- for the metrics emulator (sandbox/metrics.py) ------------------------------------

    def gateway_location(self, gateway_id: str) -> str | None:
        """The stored gateway's `location` (None: no such gateway)."""
        with self._lock:
            doc = self._gateways.get(gateway_id.lower())
            return None if doc is None else str(doc.get("location") or "")

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
