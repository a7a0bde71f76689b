"""A fleet of lightweight gateways for the sandbox: gateways x subscriptions x unhealthy share.

`python -m sandbox serve --fleet 2000x20@0.02` (or `start_sandbox(..., fleet="2000x20@0.02")`)
adds 2,000 gateways in 20 subscriptions, 2 % of them with an unhealthy backend, to the scenario's
own. Spec: `GATEWAYSxSUBSCRIPTIONS@UNHEALTHY[,nodata=F][,regions=a+b][,page=N][,seed=S]`:
`nodata` is the fraction with no UnhealthyHostCount data (the sweep asks backend health for
those), `regions` the regions the gateways spread over (default westeurope+northeurope),
`page` ARM's list page size (default 100), `seed` which gateways are unhealthy.

The gateways have no real backends: the ARM emulator's health model answers their backend health
(an unhealthy one: one member Unhealthy with Azure's untrusted-root message) and the metrics
emulator's UnhealthyHostCount from the same model, so both always agree. Their one pool member
is 127.0.0.1, whose TLS port nothing serves: a diagnosis that probes it is refused at once.
"""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

GATEWAY_TYPE = "Microsoft.Network/applicationGateways"
_SPEC = re.compile(r"^\s*(?P<g>\d+)\s*x\s*(?P<s>\d+)\s*@\s*(?P<u>[0-9.]+)\s*$")
_SUBSCRIPTIONS = uuid.UUID("f1ee7000-5a1c-4b0e-8b0e-000000000000")
GROUPS_PER_SUBSCRIPTION = 4
# A port nothing listens on, so a probe of a fleet backend fails fast (connection refused).
DEAD_PORT = 9


class FleetError(ValueError):
    """A fleet spec that does not parse."""


@dataclass(frozen=True)
class FleetSpec:
    gateways: int
    subscriptions: int
    unhealthy: float
    no_data: float = 0.0
    regions: tuple[str, ...] = ("westeurope", "northeurope")
    page_size: int = 100
    seed: int = 14

    @classmethod
    def parse(cls, text: str) -> FleetSpec:
        head, *rest = text.split(",")
        match = _SPEC.match(head)
        if match is None:
            raise FleetError(f"fleet {text!r}: expected GATEWAYSxSUBSCRIPTIONS@UNHEALTHY")
        extra: dict[str, Any] = {}
        for item in rest:
            key, sep, value = item.partition("=")
            key = key.strip().lower()
            try:
                if key == "nodata" and sep:
                    extra["no_data"] = float(value)
                elif key == "regions" and sep and value.strip():
                    extra["regions"] = tuple(r.strip().lower() for r in value.split("+"))
                elif key == "page" and sep:
                    extra["page_size"] = int(value)
                elif key == "seed" and sep:
                    extra["seed"] = int(value)
                else:
                    raise FleetError(f"fleet {text!r}: unknown option {item.strip()!r}")
            except ValueError as exc:
                raise FleetError(f"fleet {text!r}: {item.strip()!r}: {exc}") from None
        spec = cls(int(match["g"]), int(match["s"]), float(match["u"]), **extra)
        spec.check()
        return spec

    def check(self) -> None:
        if not 1 <= self.gateways <= 100_000:
            raise FleetError("fleet: 1 to 100000 gateways")
        if not 1 <= self.subscriptions <= min(self.gateways, 1000):
            raise FleetError("fleet: 1 to 1000 subscriptions, no more than gateways")
        for name, value in (("unhealthy", self.unhealthy), ("nodata", self.no_data)):
            if not 0 <= value <= 1:
                raise FleetError(f"fleet: {name} is a fraction between 0 and 1")
        if self.unhealthy + self.no_data > 1:
            raise FleetError("fleet: unhealthy + nodata exceed 1")
        if not self.regions or not all(re.fullmatch(r"[a-z0-9]+", r) for r in self.regions):
            raise FleetError("fleet: regions are names like westeurope+eastus")
        if not 1 <= self.page_size <= 1000:
            raise FleetError("fleet: page is 1 to 1000")


@dataclass
class Fleet:
    spec: FleetSpec
    subscriptions: list[str]
    gateways: list[dict[str, Any]]
    health_model: dict[str, dict[str, Any]]
    unhealthy_ids: list[str] = field(default_factory=list)
    no_data_ids: list[str] = field(default_factory=list)

    def emulator_options(self) -> dict[str, Any]:
        """What the ARM emulator needs to serve the fleet (its `options`)."""
        return {
            "subscriptions": list(self.subscriptions),
            "list_page_size": self.spec.page_size,
            "health_model": self.health_model,
        }


def subscription_id(index: int) -> str:
    return str(uuid.uuid5(_SUBSCRIPTIONS, f"fleet-subscription-{index}"))


def build_fleet(spec: FleetSpec | str) -> Fleet:
    """The fleet's gateway documents and health model (deterministic for a spec)."""
    spec = FleetSpec.parse(spec) if isinstance(spec, str) else spec
    spec.check()
    subscriptions = [subscription_id(i) for i in range(spec.subscriptions)]
    order = list(range(spec.gateways))
    random.Random(spec.seed).shuffle(order)
    n_unhealthy = round(spec.gateways * spec.unhealthy)
    n_no_data = round(spec.gateways * spec.no_data)
    unhealthy = set(order[:n_unhealthy])
    no_data = set(order[n_unhealthy : n_unhealthy + n_no_data])
    fleet = Fleet(spec, subscriptions, [], {})
    for i in range(spec.gateways):
        sub = subscriptions[i % spec.subscriptions]
        within = i // spec.subscriptions
        region = spec.regions[within % len(spec.regions)]
        group = f"rg-fleet-{(within // len(spec.regions)) % GROUPS_PER_SUBSCRIPTION:02d}"
        gid = f"/subscriptions/{sub}/resourceGroups/{group}/providers/{GATEWAY_TYPE}"
        gid += f"/agw-fleet-{i:05d}"
        fleet.gateways.append(_document(gid, region))
        model: dict[str, Any] = {"servers": 2, "unhealthy": 1 if i in unhealthy else 0}
        if i in no_data:
            model["no_data"] = True
            fleet.no_data_ids.append(gid)
        if i in unhealthy:
            fleet.unhealthy_ids.append(gid)
        fleet.health_model[gid.lower()] = model
    return fleet


def _document(gid: str, region: str) -> dict[str, Any]:
    """A small Standard_v2 gateway: one pool (127.0.0.1), one HTTPS settings, one rule."""
    name = gid.rsplit("/", 1)[-1]
    sub, group = gid.split("/")[2], gid.split("/")[4]
    return {
        "id": gid,
        "name": name,
        "type": GATEWAY_TYPE,
        "location": region,
        "tags": {"fleet": "sandbox"},
        "properties": {
            "sku": {"name": "Standard_v2", "tier": "Standard_v2", "capacity": 1},
            "gatewayIPConfigurations": [
                {
                    "name": "ipc",
                    "properties": {
                        "subnet": {
                            "id": f"/subscriptions/{sub}/resourceGroups/{group}/providers/"
                            "Microsoft.Network/virtualNetworks/vnet-fleet/subnets/appgw"
                        }
                    },
                }
            ],
            "backendAddressPools": [
                {"name": "pool", "properties": {"backendAddresses": [{"ipAddress": "127.0.0.1"}]}}
            ],
            "backendHttpSettingsCollection": [
                {
                    "name": "https",
                    "properties": {
                        "port": DEAD_PORT,
                        "protocol": "Https",
                        "cookieBasedAffinity": "Disabled",
                        "requestTimeout": 30,
                        "pickHostNameFromBackendAddress": False,
                    },
                }
            ],
        },
    }
