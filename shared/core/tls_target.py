"""How the gateway itself connects to a backend: address, port and SNI per SKU.

CONTRACT (types are fixed; functions are implemented by the diagnosis work).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.core.gateway import BackendAddress, Gateway, Generation, HttpSettings, Probe, is_ip


@dataclass(frozen=True)
class TlsTarget:
    address: str  # pool member (IP or FQDN) as the gateway dials it
    port: int
    sni: str | None  # the SNI the gateway sends, None for no SNI
    host_header: str | None  # the probe's Host header
    validate_sni: bool  # v2: the leaf must match the SNI/host name
    validate_chain: bool  # v2: chain and expiry are checked
    reason: str  # one sentence: why this SNI (which rule of which SKU)


# Host header of the default probe: `<protocol>://127.0.0.1:<port>/` (docs/sources.md#sni-rules).
# Never SNI.
DEFAULT_PROBE_HOST = "127.0.0.1"


def gateway_target(gw: Gateway, settings: HttpSettings, address: BackendAddress) -> TlsTarget:
    """Address, port and SNI exactly as the gateway's health probe connects to one pool member."""
    probe = gw.probe_for(settings)
    if gw.generation is Generation.V1:
        sni, reason = _v1_sni(address)
        validate_sni = validate_chain = False  # v1 allow-lists the leaf's public key
    else:
        sni, reason = _v2_sni(settings, probe, address)
        validate_sni = settings.validate_sni is not False  # not set -> Azure's default, true
        validate_chain = settings.validate_cert_chain_and_expiry is not False
    return TlsTarget(
        address=address.value,
        port=_port(gw, settings, probe),
        sni=sni,
        host_header=_host_header(settings, probe, address),
        validate_sni=validate_sni,
        validate_chain=validate_chain,
        reason=reason,
    )


def alternate_sni(gw: Gateway, settings: HttpSettings, address: BackendAddress) -> str | None:
    """The other handshake to compare with: a host name when the gateway sends no SNI, else none."""
    if gateway_target(gw, settings, address).sni is not None:
        return None  # the comparison is the no-SNI handshake
    probe = gw.probe_for(settings)
    candidates = (probe.host if probe else None, settings.host_name, address.fqdn)
    return next((c for c in (_name(x) for x in candidates) if c and not is_ip(c)), None)


def _port(gw: Gateway, settings: HttpSettings, probe: Probe | None) -> int:
    # v2 probes may name their own port; v1 probes always use the settings' port (issue #3).
    if gw.generation is Generation.V2 and probe is not None and probe.port:
        return probe.port
    if settings.port:
        return settings.port
    return 80 if (settings.protocol or "").lower() == "http" else 443


def _v1_sni(address: BackendAddress) -> tuple[str | None, str]:
    # docs/sources.md#sni-rules, v1 probe: SNI is "the backend pool FQDN"; literal IPs are never
    # sent.
    # Nothing else feeds v1 SNI: the custom probe `host` is "used only for the host header of the
    # probe request" on v1 (probe overview), and the settings' hostName only overrides the
    # Host header (it has an SNI effect on v2 only). This is the ILB ASE root cause.
    fqdn = _name(address.fqdn)
    if fqdn and not is_ip(fqdn):
        return fqdn, f"v1 sends the backend pool member's FQDN {fqdn!r} as SNI."
    return None, (
        "v1 sends no SNI to an IP pool member: probe host and settings hostName only set the "
        "Host header."
    )


def _v2_sni(
    settings: HttpSettings, probe: Probe | None, address: BackendAddress
) -> tuple[str | None, str]:
    # Probe precedence (v2): custom probe host > HTTP-settings hostName > pool FQDN.
    if probe is not None and _name(probe.host):
        return _v2_result(probe.host, "the custom probe's host")
    # sniName overrides the SNI of the settings' traffic; the documented probe precedence
    # does not mention it, so it ranks below the custom probe host and above the settings'
    # hostName. [INFERENCE: not stated outright by Microsoft; the sandbox uses the same order.]
    if settings.sni_name:
        return _v2_result(settings.sni_name, "the HTTP settings' sniName")
    settings_host = _settings_host(settings, address)
    if probe is not None and probe.pick_host_name_from_backend_http_settings and settings_host:
        return _v2_result(settings_host, "the host the probe picks from the HTTP settings")
    if settings_host:
        return _v2_result(settings_host, "the HTTP settings' host name")
    return _v2_result(address.fqdn, "the backend pool member's FQDN")


def _v2_result(value: str | None, source: str) -> tuple[str | None, str]:
    name = _name(value)
    if name and not is_ip(name):
        return name, f"v2 sends {source}, {name!r}, as SNI."
    if name:
        return None, f"v2 sends no SNI: {source} is the IP address {name} (RFC 6066)."
    return None, "v2 sends no SNI: no probe host, settings host name or pool FQDN is set."


def _settings_host(settings: HttpSettings, address: BackendAddress) -> str | None:
    """The host the settings give: the pool member with pickHostNameFromBackendAddress, or hostName.

    With pickHostNameFromBackendAddress "the SNI header is always set to the backend pool FQDN"
    (docs/sources.md#sni-rules); for an IP member that yields an IP, hence no SNI.
    """
    if settings.pick_host_name_from_backend_address:
        return _name(address.value)
    return _name(settings.host_name)


def _host_header(settings: HttpSettings, probe: Probe | None, address: BackendAddress) -> str:
    if probe is not None and _name(probe.host):
        return str(_name(probe.host))
    return _settings_host(settings, address) or DEFAULT_PROBE_HOST


def _name(value: str | None) -> str | None:
    """A usable host name: stripped, without a trailing dot; None when empty."""
    if not value:
        return None
    name = value.strip().rstrip(".")
    return name or None
