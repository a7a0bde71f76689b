"""Backend health: the `backendhealth` and `getBackendHealthOnDemand` POSTs as Location LROs,
computed by really probing the pool members (sandbox.health_rules) or from a health model."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any

from sandbox import arm_ops as ops
from sandbox import arm_validation as val
from sandbox.arm_core import ArmCore, _HealthJob
from sandbox.arm_http import JSON_NULL, Request, Response
from sandbox.arm_validation import ArmError
from sandbox.health_rules import PairPlan, ProbeResult, plan_gateway, plan_on_demand, probe, props


class BackendHealth(ArmCore):
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
        job = _HealthJob(self._jobs.submit(compute), self._clock() + self._health_lro, location)
        with self._lock:
            self._health_jobs[job_id] = job
        # 202, body `null`, Location, Retry-After 10 (net_ag_backend_health_v2.json 03:17:23;
        # cli_ag_backend_health_v2.json shows the body and Location, its recorder drops
        # Retry-After), no Azure-AsyncOperation.
        return Response(202, JSON_NULL, {"Location": location, **self._health_retry_after(job)})

    def _health_retry_after(self, job: _HealthJob) -> dict[str, str]:
        return self._retry_after_header(ops.HEALTH_RETRY_AFTER, job.not_before - self._clock())

    def _route_op_result(self, request: Request) -> Response:
        with self._lock:
            job = self._health_jobs.get(request.params["op"].lower())
        if job is None:
            raise ArmError(404, "OperationNotFound", "The operation was not found.")
        if not job.future.done() or self._clock() < job.not_before:
            headers = {"Location": job.location, **self._health_retry_after(job)}
            return Response(202, JSON_NULL, headers)
        try:
            # The final 200 still carries the Location, and no Retry-After (both recordings).
            return Response(200, job.future.result(), {"Location": job.location})
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
            for child in props(ArmCore._out(doc)).get(collection) or []:
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
