"""The gateway model: what the diagnosis needs from a raw Application Gateway document.

Accepts the ARM form (child resources nest their fields under `properties`) and the flattened form
that `az network application-gateway show` prints, and tolerates the oddities listed in
tests/data/SOURCES.md ("Oddities the parsers must tolerate", from Microsoft's REST API examples):
string `backendAddresses`, and child resources without `id` in the Create example's request body.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from shared.common.errors import InputError, ResourceIdError
from shared.common.ids import last_segment, parse_gateway_id, same_id


class Generation(StrEnum):
    V1 = "v1"  # sku.tier Standard, WAF
    V2 = "v2"  # sku.tier Standard_v2, WAF_v2, Basic


@dataclass(frozen=True)
class BackendAddress:
    ip_address: str | None = None
    fqdn: str | None = None

    @property
    def value(self) -> str:
        return self.fqdn or self.ip_address or ""


@dataclass(frozen=True)
class Pool:
    id: str
    name: str
    addresses: tuple[BackendAddress, ...]


@dataclass(frozen=True)
class Probe:
    id: str
    name: str
    protocol: str | None
    host: str | None
    path: str | None
    port: int | None
    interval: int | None
    timeout: int | None
    unhealthy_threshold: int | None
    pick_host_name_from_backend_http_settings: bool
    status_codes: tuple[str, ...]  # match.statusCodes, e.g. ("200-399",)


@dataclass(frozen=True)
class HttpSettings:
    id: str
    name: str
    port: int | None
    protocol: str | None  # "Http" / "Https"
    host_name: str | None
    pick_host_name_from_backend_address: bool
    probe_id: str | None
    authentication_certificate_ids: tuple[str, ...]
    trusted_root_certificate_ids: tuple[str, ...]
    validate_sni: bool | None  # None: not set (Azure's default is true)
    validate_cert_chain_and_expiry: bool | None  # None: not set (default true)
    sni_name: str | None


@dataclass(frozen=True)
class CertificateRef:
    """An authentication certificate (v1) or trusted root (v2) stored on the gateway."""

    id: str
    name: str
    # base64 as ARM holds it and returns it on GET (tests/data/recorded/cli_ag_auth_cert_v1.json);
    # None for a Key Vault reference or a document without it
    data: str | None
    key_vault_secret_id: str | None = None


@dataclass(frozen=True)
class Gateway:
    id: str
    name: str
    sku_name: str | None
    sku_tier: str | None
    generation: Generation
    pools: tuple[Pool, ...]
    settings: tuple[HttpSettings, ...]
    probes: tuple[Probe, ...]
    authentication_certificates: tuple[CertificateRef, ...]
    trusted_root_certificates: tuple[CertificateRef, ...]
    tags: tuple[tuple[str, str], ...]
    # (pool id, settings id) pairs wired by routing rules and path maps, in document order.
    routes: tuple[tuple[str, str], ...]

    def pool_by_id(self, resource_id: str | None) -> Pool | None:
        return _first(p for p in self.pools if same_id(p.id, resource_id))

    def settings_by_id(self, resource_id: str | None) -> HttpSettings | None:
        return _first(s for s in self.settings if same_id(s.id, resource_id))

    def probe_by_id(self, resource_id: str | None) -> Probe | None:
        return _first(p for p in self.probes if same_id(p.id, resource_id))

    def certificate_by_id(self, resource_id: str | None) -> CertificateRef | None:
        """An authentication certificate or a trusted root, whichever the id names."""
        refs = self.authentication_certificates + self.trusted_root_certificates
        return _first(c for c in refs if same_id(c.id, resource_id))

    def pool_by_name(self, name: str) -> Pool | None:
        return _first(p for p in self.pools if p.name.lower() == name.lower())

    def settings_by_name(self, name: str) -> HttpSettings | None:
        return _first(s for s in self.settings if s.name.lower() == name.lower())

    def probe_for(self, settings: HttpSettings) -> Probe | None:
        """The custom probe the settings use; None means the default probe."""
        return self.probe_by_id(settings.probe_id)

    def certificates_for(self, settings: HttpSettings) -> tuple[CertificateRef, ...]:
        """The authentication certificates (v1) or trusted roots (v2) the settings reference."""
        ids = settings.authentication_certificate_ids + settings.trusted_root_certificate_ids
        found = (self.certificate_by_id(i) for i in ids)
        return tuple(c for c in found if c is not None)


# sku.tier -> generation (docs/sources.md#sku-and-retirement: v1 is Standard/WAF; v2 is
# Standard_v2/WAF_v2/Basic).
_TIERS = {
    "standard": Generation.V1,
    "waf": Generation.V1,
    "standard_v2": Generation.V2,
    "waf_v2": Generation.V2,
    "basic": Generation.V2,
}
# v1 sku names carry a size suffix (Standard_Small, WAF_Medium); v2 names equal their tier.
_V1_NAME_PREFIXES = (
    "standard_small",
    "standard_medium",
    "standard_large",
    "waf_medium",
    "waf_large",
)

# Collection names, as in ARM child-resource ids (docs/sources.md#arm-shape).
_POOLS = "backendAddressPools"
_SETTINGS = "backendHttpSettingsCollection"
_PROBES = "probes"
_AUTH_CERTS = "authenticationCertificates"
_ROOT_CERTS = "trustedRootCertificates"
_GATEWAY_TYPE = "microsoft.network/applicationgateways"

_T = TypeVar("_T")


def generation_of(sku_tier: str | None) -> Generation:
    """v1 or v2 from `sku.tier`, case-insensitively; InputError for anything else."""
    if isinstance(sku_tier, str) and sku_tier.strip().lower() in _TIERS:
        return _TIERS[sku_tier.strip().lower()]
    raise InputError(f"unknown Application Gateway sku tier: {sku_tier!r}")


def parse_gateway(doc: Mapping[str, Any]) -> Gateway:
    """The gateway model from an ARM or `az ... show` document; InputError if not a gateway."""
    if not isinstance(doc, Mapping):
        raise InputError("not an Application Gateway: expected a JSON object")
    if "responses" in doc and "parameters" in doc:
        raise InputError(
            "not an Application Gateway: this is an API example wrapper; use its response body"
        )
    view = _view(doc)
    _check_type(view)
    gw_id, name = _identity(view)
    sku = _mapping(view.get("sku"))
    tier = _str(sku.get("tier"))
    sku_name = _str(sku.get("name"))
    if not sku and not any(k in view for k in (_POOLS, _SETTINGS)):
        raise InputError("not an Application Gateway: no sku, backend pools or HTTP settings")
    pools = tuple(_children(view, _POOLS, gw_id, _pool))
    settings = tuple(_children(view, _SETTINGS, gw_id, _http_settings))
    return Gateway(
        id=gw_id,
        name=name,
        sku_name=sku_name,
        sku_tier=tier,
        generation=_generation(tier, sku_name),
        pools=pools,
        settings=settings,
        probes=tuple(_children(view, _PROBES, gw_id, _probe)),
        authentication_certificates=tuple(_children(view, _AUTH_CERTS, gw_id, _cert_ref)),
        trusted_root_certificates=tuple(_children(view, _ROOT_CERTS, gw_id, _cert_ref)),
        tags=_tags(view.get("tags")),
        routes=_routes(view, pools, settings),
    )


def unwrap_example(doc: Mapping[str, Any], status: str = "200") -> Mapping[str, Any]:
    """The response body of a Microsoft REST API example file (tests and fixtures)."""
    try:
        body = doc["responses"][status]["body"]
    except (KeyError, TypeError) as exc:
        raise InputError(f"not an API example with a {status} body") from exc
    if not isinstance(body, Mapping):
        raise InputError(f"the example's {status} body is not a JSON object")
    return body


# ---- document access helpers (every one tolerates any JSON value) ----


def _first(items: Iterator[Any]) -> Any:
    return next(items, None)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: object) -> str | None:
    """A non-empty, stripped string, or None."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    return None


def _view(obj: Mapping[str, Any]) -> dict[str, Any]:
    """One flat view over both forms: top-level fields overlaid by `properties` (ARM form)."""
    merged = {k: v for k, v in obj.items() if isinstance(k, str) and k != "properties"}
    props = obj.get("properties")
    if isinstance(props, Mapping):
        merged.update({k: v for k, v in props.items() if isinstance(k, str)})
    return merged


def _ref_id(value: object) -> str | None:
    """The id of a sub-resource reference: `{"id": ...}` (ARM and CLI) or a bare id string."""
    if isinstance(value, Mapping):
        return _str(value.get("id"))
    return _str(value)


def _check_type(view: Mapping[str, Any]) -> None:
    kind = view.get("type")
    if kind is not None and (not isinstance(kind, str) or kind.strip().lower() != _GATEWAY_TYPE):
        raise InputError(f"not an Application Gateway: resource type is {str(kind)[:100]!r}")


def _identity(view: Mapping[str, Any]) -> tuple[str, str]:
    """(id, name). Without an id the name alone stands in for it: no subscription is invented."""
    raw_id, name = view.get("id"), _str(view.get("name"))
    if raw_id is not None:
        try:
            gid = parse_gateway_id(raw_id)
        except ResourceIdError as exc:
            raise InputError(f"not an Application Gateway: {exc}") from None
        return str(raw_id).strip().rstrip("/"), name or gid.name
    if name is None:
        raise InputError("not an Application Gateway: the document has neither id nor name")
    return name, name


def _generation(tier: str | None, sku_name: str | None) -> Generation:
    if tier is not None:
        return generation_of(tier)
    if sku_name is not None:
        lowered = sku_name.lower()
        if lowered in _TIERS:
            return _TIERS[lowered]
        if lowered in _V1_NAME_PREFIXES:
            return Generation.V1
    raise InputError("not a usable Application Gateway: sku.tier is missing or unknown")


def _children(
    view: Mapping[str, Any],
    collection: str,
    gw_id: str,
    build: Callable[[Mapping[str, Any], str, str], _T],
) -> Iterator[_T]:
    """Parse each child resource; a child without a name or id is unusable and skipped."""
    for item in _list(view.get(collection)):
        if not isinstance(item, Mapping):
            continue
        child = _view(item)
        rid, name = _str(child.get("id")), _str(child.get("name"))
        if rid is None and name is None:
            continue
        # Missing ids happen in PUT bodies (tests/data/SOURCES.md, the Create example):
        # synthesise the ARM form.
        rid = rid or f"{gw_id}/{collection}/{name}"
        yield build(child, rid, name or last_segment(rid))


def _pool(view: Mapping[str, Any], rid: str, name: str) -> Pool:
    addresses = (_address(a) for a in _list(view.get("backendAddresses")))
    return Pool(id=rid, name=name, addresses=tuple(a for a in addresses if a is not None))


def _address(value: object) -> BackendAddress | None:
    # The Get example lists plain strings ("10.0.0.1") instead of {"ipAddress": ...} objects.
    if isinstance(value, str):
        return _address_from_text(value)
    if isinstance(value, Mapping):
        ip, fqdn = _str(value.get("ipAddress")), _str(value.get("fqdn"))
        if ip is None and fqdn is None:
            return None
        return BackendAddress(ip_address=ip, fqdn=fqdn)
    return None


def _address_from_text(text: str) -> BackendAddress | None:
    value = text.strip()
    if not value:
        return None
    if is_ip(value):
        return BackendAddress(ip_address=value)
    return BackendAddress(fqdn=value)


def is_ip(value: str | None) -> bool:
    """True for an IPv4/IPv6 literal (RFC 6066: such a name is never sent as SNI)."""
    if not value:
        return False
    try:
        ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return False
    return True


def _http_settings(view: Mapping[str, Any], rid: str, name: str) -> HttpSettings:
    return HttpSettings(
        id=rid,
        name=name,
        port=_int(view.get("port")),
        protocol=_str(view.get("protocol")),
        host_name=_str(view.get("hostName")),
        pick_host_name_from_backend_address=bool(_bool(view.get("pickHostNameFromBackendAddress"))),
        probe_id=_ref_id(view.get("probe")),
        authentication_certificate_ids=_ref_ids(view.get(_AUTH_CERTS)),
        trusted_root_certificate_ids=_ref_ids(view.get(_ROOT_CERTS)),
        validate_sni=_bool(view.get("validateSNI", view.get("validateSni"))),
        validate_cert_chain_and_expiry=_bool(view.get("validateCertChainAndExpiry")),
        sni_name=_str(view.get("sniName")),
    )


def _ref_ids(value: object) -> tuple[str, ...]:
    ids = (_ref_id(v) for v in _list(value))
    return tuple(i for i in ids if i is not None)


def _probe(view: Mapping[str, Any], rid: str, name: str) -> Probe:
    codes = _list(_mapping(view.get("match")).get("statusCodes"))
    return Probe(
        id=rid,
        name=name,
        protocol=_str(view.get("protocol")),
        host=_str(view.get("host")),
        path=_str(view.get("path")),
        port=_int(view.get("port")),
        interval=_int(view.get("interval")),
        timeout=_int(view.get("timeout")),
        unhealthy_threshold=_int(view.get("unhealthyThreshold")),
        pick_host_name_from_backend_http_settings=bool(
            _bool(view.get("pickHostNameFromBackendHttpSettings"))
        ),
        status_codes=tuple(c.strip() for c in codes if isinstance(c, str) and c.strip()),
    )


def _cert_ref(view: Mapping[str, Any], rid: str, name: str) -> CertificateRef:
    return CertificateRef(
        id=rid,
        name=name,
        data=_str(view.get("data")),
        key_vault_secret_id=_str(view.get("keyVaultSecretId")),
    )


def _tags(value: object) -> tuple[tuple[str, str], ...]:
    pairs = []
    for key, val in _mapping(value).items():
        if (
            isinstance(key, str)
            and isinstance(val, str | int | float)
            and not isinstance(val, bool)
        ):
            pairs.append((key, str(val)))
        elif isinstance(key, str) and isinstance(val, bool):
            pairs.append((key, str(val).lower()))
    return tuple(sorted(pairs))


def _routes(
    view: Mapping[str, Any], pools: tuple[Pool, ...], settings: tuple[HttpSettings, ...]
) -> tuple[tuple[str, str], ...]:
    """(pool id, settings id) pairs from routing rules, then url path maps; deduplicated."""
    pairs: list[tuple[str | None, str | None]] = []
    for rule in _list(view.get("requestRoutingRules")):
        r = _view(_mapping(rule))
        pairs.append((_ref_id(r.get("backendAddressPool")), _ref_id(r.get("backendHttpSettings"))))
    for path_map in _list(view.get("urlPathMaps")):
        m = _view(_mapping(path_map))
        pairs.append(
            (
                _ref_id(m.get("defaultBackendAddressPool")),
                _ref_id(m.get("defaultBackendHttpSettings")),
            )
        )
        for path_rule in _list(m.get("pathRules")):
            pr = _view(_mapping(path_rule))
            pairs.append(
                (_ref_id(pr.get("backendAddressPool")), _ref_id(pr.get("backendHttpSettings")))
            )
    routes: list[tuple[str, str]] = []
    for pool_ref, settings_ref in pairs:
        if pool_ref is None or settings_ref is None:
            continue  # redirects and rules without a backend
        # Use the resource's own id spelling when it exists, so callers can compare with ==.
        pool_id = _canonical(pool_ref, (p.id for p in pools))
        settings_id = _canonical(settings_ref, (s.id for s in settings))
        if not any(same_id(pool_id, p) and same_id(settings_id, s) for p, s in routes):
            routes.append((pool_id, settings_id))
    return tuple(routes)


def _canonical(ref: str, ids: Iterator[str]) -> str:
    return next((i for i in ids if same_id(i, ref)), ref)
