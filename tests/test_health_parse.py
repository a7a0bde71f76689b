"""Backend health: state normalisation, probe-log classification (every text of
docs/sources.md#probe-log-texts, copied verbatim, plus reworded variants) and the ARM, CLI, $expand
and on-demand forms."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.common.errors import InputError
from shared.core.health import (
    HealthState,
    ProbeLogKind,
    ServerHealth,
    classify_probe_log,
    normalise_health,
    parse_backend_health,
)

EXAMPLES = Path(__file__).resolve().parent / "data" / "arm-examples"  # see tests/data/SOURCES.md
DATA = Path(__file__).parent / "data"
GW = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg1"
    "/providers/Microsoft.Network/applicationGateways/appgw"
)
K = ProbeLogKind


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Up", HealthState.HEALTHY),
        ("Healthy", HealthState.HEALTHY),
        ("HEALTHY", HealthState.HEALTHY),
        (" up ", HealthState.HEALTHY),
        ("Down", HealthState.UNHEALTHY),
        ("Unhealthy", HealthState.UNHEALTHY),
        ("unhealthy", HealthState.UNHEALTHY),
        ("Partial", HealthState.PARTIAL),
        ("Draining", HealthState.DRAINING),
        ("draining", HealthState.DRAINING),
        ("Unknown", HealthState.UNKNOWN),
        (None, HealthState.UNKNOWN),
        ("", HealthState.UNKNOWN),
        ("Invalid CA", HealthState.UNKNOWN),
        (1, HealthState.UNKNOWN),
        (["Up"], HealthState.UNKNOWN),
    ],
)
def test_normalise_health(value: object, expected: HealthState) -> None:
    assert normalise_health(value) is expected


# Every message of docs/sources.md#probe-log-texts, byte for byte as the docs quote it.
REFERENCE_TEXTS = [
    # v1
    ("Backend server certificate is not whitelisted with Application Gateway.", K.NOT_ALLOWLISTED),
    ("Backend server certificate isn't allow-listed with Application Gateway.", K.NOT_ALLOWLISTED),
    (
        "Backend server certificate is not whitelisted with Application Gateway. Make sure that "
        "the certificate uploaded to Application Gateway matches with the certificate configured "
        "in your backend server. To learn more visit - https://aka.ms/authcertificatemismatch",
        K.NOT_ALLOWLISTED,
    ),
    ("The Common Name (CN) of the backend certificate doesn\u2019t match.", K.CN_MISMATCH),
    (
        "Backend certificate has been marked invalid. Either the certificate is not within its "
        "validity period, or it has been revoked by the issuing authority, or there is a problem "
        "with the certificate chain.",
        K.INVALID_CERTIFICATE,
    ),
    ("Invalid certificate - Invalid CA.", K.INVALID_CERTIFICATE),
    ("Invalid certificate - Invalid CN.", K.CN_MISMATCH),
    (
        "HTTPS probe connection error. Check if backend server certificate is whitelisted. "
        "Check for backend certificate validity.",
        K.VERIFICATION_FAILED,
    ),
    ("Backend server certificate expired. Please upload a valid certificate.", K.EXPIRED),
    # v2, current texts
    (
        "The Common Name of the leaf certificate presented by the backend server does not match "
        "the Probe or Backend Setting hostname of the application gateway.",
        K.CN_MISMATCH,
    ),
    (
        'Backend certificate is invalid. Current date isn\'t within the "Valid from" and '
        '"Valid to" date range on the certificate.',
        K.EXPIRED,
    ),
    (
        'Backend certificate is invalid. Current date is not within the "Valid from" and '
        '"Valid to" date range on the certificate.',
        K.EXPIRED,
    ),
    (
        "The Intermediate certificate is missing from the certificate chain presented by the "
        "backend server. Ensure the certificate chain is complete and correctly ordered on the "
        "backend server.",
        K.INTERMEDIATE_MISSING,
    ),
    (
        "The Leaf certificate is missing from the certificate chain presented by the backend "
        "server. Ensure the chain is complete and correctly ordered on the backend server.",
        K.LEAF_MISSING,
    ),
    (
        "The backend Server certificate isn't signed by a well-known Certificate Authority (CA). "
        "To use unknown CA certificates, its Root certificate must be uploaded to the Backend "
        "Setting of the application gateway.",
        K.NOT_WELL_KNOWN_CA,
    ),
    (
        "The Intermediate certificate isn't signed by a well-known Certificate Authority (CA). "
        "Ensure the certificate chain is complete and correctly ordered on the backend server.",
        K.NOT_WELL_KNOWN_CA,
    ),
    (
        "The Intermediate certificate not signed by any Root certificates uploaded to the "
        "application gateway. Ensure the certificate chain is complete and correctly ordered on "
        "the backend server.",
        K.ROOT_MISMATCH,
    ),
    (
        "The root certificate of the server certificate used by the backend doesn't match the "
        "trusted root certificate added to the application gateway. Ensure that you add the "
        "correct root certificate to allowlist the backend.",
        K.ROOT_MISMATCH,
    ),
    (
        "The Leaf certificate isn't the topmost certificate in the chain presented by the backend "
        "server. Ensure the certificate chain is correctly ordered on the backend server.",
        K.LEAF_NOT_TOPMOST,
    ),
    (
        "The validity of the backend certificate could not be verified. To find out the reason, "
        "check OpenSSL diagnostics for the message associated with error code {errorCode}",
        K.VERIFICATION_FAILED,
    ),
    (
        "Verify that the backend server is set up to accept the Proxy protocol header sent by "
        "the probes.",
        K.PROXY_PROTOCOL,
    ),
    (
        "The backend server is presenting an incomplete certificate chain, including only the "
        "leaf certificate. Please ensure that the certificate chain is fully configured with all "
        "necessary certificates in the correct order.",
        K.INTERMEDIATE_MISSING,
    ),
    # older v2 texts
    (
        "The server certificate used by the backend is not signed by a well-known Certificate "
        "Authority (CA). Allow the backend on the Application Gateway by uploading the root "
        "certificate of the server certificate used by the backend.",
        K.NOT_WELL_KNOWN_CA,
    ),
    (
        "The root certificate of the server certificate used by the backend does not match the "
        "trusted root certificate added to the application gateway. Ensure that you add the "
        "correct root certificate to whitelist the backend",
        K.ROOT_MISMATCH,
    ),
    (
        "The Common Name (CN) of the backend certificate does not match the host header of the "
        "probe.",
        K.CN_MISMATCH,
    ),
    (
        "The Common Name (CN) of the backend certificate does not match the host header entered "
        "in the health probe configuration",
        K.CN_MISMATCH,
    ),
    ("Invalid CA", K.INVALID_CERTIFICATE),
    # non-certificate and Unknown
    (
        "Time taken by the backend to respond to application gateway's health probe is more than "
        "the timeout threshold in the probe setting.",
        K.TIMEOUT,
    ),
    (
        "Application Gateway could not create a probe for this backend. This usually happens "
        "when the FQDN of the backend is not entered correctly.",
        K.PROBE_NOT_CREATED,
    ),
    (
        "Application Gateway could not create a probe for this backend. This usually happens "
        "when the FQDN of the backend has not been entered correctly.",
        K.PROBE_NOT_CREATED,
    ),
    (
        "Application Gateway could not connect to the backend. Check that the backend responds on "
        "the port used for the probe. Also check whether any NSG/UDR/Firewall is blocking access "
        "to the Ip and port of this backend.",
        K.CONNECTION_FAILED,
    ),
    (
        "Status code of the backend's HTTP response did not match the probe setting. "
        "Expected:{HTTPStatusCode0} Received:{HTTPStatusCode1}.",
        K.STATUS_MISMATCH,
    ),
    (
        "Body of the backend's HTTP response did not match the probe setting. Received response "
        "body doesn't contain {string}.",
        K.BODY_MISMATCH,
    ),
    (
        "The backend health status could not be retrieved. This happens when an NSG/UDR/Firewall "
        "on the application gateway subnet is blocking traffic on ports 65503-65534 in case of v1 "
        "SKU, and ports 65200-65535 in case of the v2 SKU or if the FQDN configured in the "
        "backend pool could not be resolved to an IP address. To learn more visit - "
        "https://aka.ms/UnknownBackendHealth.",
        K.HEALTH_UNKNOWN,
    ),
    ("Success. Received 200 status code", K.SUCCESS),
    ("Success. Received 301 status code", K.SUCCESS),
]


@pytest.mark.parametrize(
    ("text", "kind"), REFERENCE_TEXTS, ids=[t[:50] for t, _ in REFERENCE_TEXTS]
)
def test_reference_texts(text: str, kind: ProbeLogKind) -> None:
    assert classify_probe_log(text) is kind


REWORDED = [
    ("backend server certificate is not allow-listed with application gateway", K.NOT_ALLOWLISTED),
    (
        "Backend server certificate isn\u2019t allowlisted with Application Gateway.",
        K.NOT_ALLOWLISTED,
    ),
    ("Backend server certificate is not allowlisted with Application Gateway.", K.NOT_ALLOWLISTED),
    ("BACKEND SERVER CERTIFICATE IS NOT WHITE-LISTED WITH APPLICATION GATEWAY.", K.NOT_ALLOWLISTED),
    (
        "  Backend server certificate\n\tis   not whitelisted  with Application Gateway. ",
        K.NOT_ALLOWLISTED,
    ),
    ("The Common Name (CN) of the backend certificate does not match.", K.CN_MISMATCH),
    ("The Common Name (CN) of the backend certificate doesn't match.", K.CN_MISMATCH),
    ("The Common Name (CN) of the backend certificate doesn`t match.", K.CN_MISMATCH),
    (
        "The Common Name of the leaf certificate presented by the backend server "
        "doesn\u2019t match the Probe or Backend Setting hostname of the application gateway.",
        K.CN_MISMATCH,
    ),
    (
        "Backend certificate is invalid. Current date isn\u2019t within the \u201cValid from\u201d "
        "and \u201cValid to\u201d date range on the certificate.",
        K.EXPIRED,
    ),
    (
        "The backend server certificate is not signed by a well known Certificate Authority (CA).",
        K.NOT_WELL_KNOWN_CA,
    ),
    (
        "The root certificate of the server certificate used by the backend doesn\u2019t match "
        "the trusted root certificate added to the application gateway. Ensure that you add the "
        "correct root certificate to allow-list the backend.",
        K.ROOT_MISMATCH,
    ),
    ("The Leaf certificate is not the topmost certificate in the chain.", K.LEAF_NOT_TOPMOST),
    ("Application Gateway couldn't connect to the backend.", K.CONNECTION_FAILED),
    ("Application Gateway couldn\u2019t create a probe for this backend.", K.PROBE_NOT_CREATED),
    ("The backend health status couldn't be retrieved.", K.HEALTH_UNKNOWN),
    (
        "Status code of the backend\u2019s HTTP response didn't match the probe setting. "
        "Expected:200-399 Received:404.",
        K.STATUS_MISMATCH,
    ),
    # The body text is echoed: certificate words inside it must not mislead the classifier.
    (
        "Body of the backend's HTTP response did not match the probe setting. Received response "
        "body doesn't contain certificate is not whitelisted.",
        K.BODY_MISMATCH,
    ),
    ("success. received 200 status code", K.SUCCESS),
    (
        "The validity of the backend certificate could not be verified. To find out the reason, "
        "check OpenSSL diagnostics for the message associated with error code 20",
        K.VERIFICATION_FAILED,
    ),
]


@pytest.mark.parametrize(("text", "kind"), REWORDED, ids=[t[:50] for t, _ in REWORDED])
def test_reworded_texts(text: str, kind: ProbeLogKind) -> None:
    assert classify_probe_log(text) is kind


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, K.EMPTY),
        ("", K.EMPTY),
        ("   \n", K.EMPTY),
        ("Something new the service started saying.", K.OTHER),
        (42, K.OTHER),
        ({"text": "x"}, K.OTHER),
        (
            b"Backend server certificate is not whitelisted with Application Gateway.",
            K.NOT_ALLOWLISTED,
        ),
        (b"\xff\xfe", K.OTHER),
    ],
)
def test_odd_values(value: object, kind: ProbeLogKind) -> None:
    assert classify_probe_log(value) is kind


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


def test_arm_example() -> None:
    body = _load(EXAMPLES / "ApplicationGatewayBackendHealthGet.json")["responses"]["200"]["body"]
    servers = parse_backend_health(body)
    # Pool ids keep the example's `backendaddressPools` spelling (SOURCES.md).
    analytics = f"{GW}/backendaddressPools/MFAnalyticsPool"
    pool = f"{GW}/backendaddressPools/MFPool"
    settings = f"{GW}/backendHttpSettingsCollection/MFPoolSettings"
    assert servers == (
        ServerHealth(analytics, settings, "10.220.1.8", HealthState.HEALTHY, None),
        ServerHealth(pool, settings, "10.220.1.4", HealthState.HEALTHY, None),
        ServerHealth(pool, settings, "10.220.1.5", HealthState.HEALTHY, None),
    )


def test_on_demand_example() -> None:
    body = _load(EXAMPLES / "ApplicationGatewayBackendHealthTest.json")["responses"]["200"]["body"]
    servers = parse_backend_health(body)
    assert [s.address for s in servers] == ["10.220.1.4", "10.220.1.5"]
    assert {s.pool_id for s in servers} == {f"{GW}/backendaddressPools/MFAnalyticsPool"}
    assert {s.settings_id for s in servers} == {
        f"{GW}/backendHttpSettingsCollection/MFPoolSettings"
    }
    assert all(s.health is HealthState.HEALTHY for s in servers)


def test_example_wrapper_is_refused() -> None:
    with pytest.raises(InputError, match="example"):
        parse_backend_health(_load(EXAMPLES / "ApplicationGatewayBackendHealthGet.json"))


def test_cli_form() -> None:
    servers = parse_backend_health(_load(DATA / "cli_backend_health.json"))
    assert [(s.address, s.health, classify_probe_log(s.probe_log)) for s in servers] == [
        ("10.1.5.11", HealthState.UNHEALTHY, K.NOT_ALLOWLISTED),
        ("10.1.5.11", HealthState.UNKNOWN, K.HEALTH_UNKNOWN),
        ("api.internal.contoso.com", HealthState.HEALTHY, K.SUCCESS),
    ]
    assert servers[0].settings_id.endswith("/backendHttpSettingsCollection/ase-https")
    assert servers[1].settings_id.endswith("/backendHttpSettingsCollection/ase-https-8443")


def test_lower_cased_ids_match_the_gateway() -> None:
    from shared.core.gateway import parse_gateway

    gw = parse_gateway(_load(DATA / "cli_gateway_v1.json"))
    servers = parse_backend_health(_load(DATA / "lowercase_ids_backend_health.json"))
    assert servers[0].pool_id == servers[0].pool_id.lower()
    pairs = [(gw.pool_by_id(s.pool_id), gw.settings_by_id(s.settings_id)) for s in servers]
    assert [(p.name, s.name) for p, s in pairs if p and s] == [
        ("ase-pool", "ase-https"),
        ("ase-pool", "ase-https-8443"),
        ("api-pool", "api-https"),
    ]


def test_expanded_form() -> None:
    # $expand puts the whole pool and settings resources in place of the {id} references.
    doc = {
        "backendAddressPools": [
            {
                "backendAddressPool": {
                    "id": f"{GW}/backendAddressPools/p",
                    "name": "p",
                    "etag": 'W/"1"',
                    "properties": {"backendAddresses": [{"ipAddress": "10.0.0.4"}]},
                },
                "backendHttpSettingsCollection": [
                    {
                        "backendHttpSettings": {
                            "id": f"{GW}/backendHttpSettingsCollection/s",
                            "name": "s",
                            "properties": {"port": 443, "protocol": "Https"},
                        },
                        "servers": [
                            {
                                "address": "10.0.0.4",
                                "health": "Down",
                                "healthProbeLog": "Invalid certificate - Invalid CA.",
                                "ipConfiguration": None,
                            }
                        ],
                    }
                ],
            }
        ]
    }
    (server,) = parse_backend_health(doc)
    assert server == ServerHealth(
        f"{GW}/backendAddressPools/p",
        f"{GW}/backendHttpSettingsCollection/s",
        "10.0.0.4",
        HealthState.UNHEALTHY,
        "Invalid certificate - Invalid CA.",
    )


def test_powershell_pascal_case() -> None:
    doc = {
        "BackendAddressPools": [
            {
                "BackendAddressPool": {"Id": f"{GW}/backendAddressPools/p"},
                "BackendHttpSettingsCollection": [
                    {
                        "BackendHttpSettings": {"Id": f"{GW}/backendHttpSettingsCollection/s"},
                        "Servers": [
                            {"Address": "10.0.0.4", "Health": "Healthy", "HealthProbeLog": ""}
                        ],
                    }
                ],
            }
        ]
    }
    (server,) = parse_backend_health(doc)
    assert (server.address, server.health, server.probe_log) == (
        "10.0.0.4",
        HealthState.HEALTHY,
        None,
    )


def test_malformed_entries_are_skipped() -> None:
    settings = {"id": f"{GW}/backendHttpSettingsCollection/s"}
    doc = {
        "backendAddressPools": [
            "junk",
            {"backendHttpSettingsCollection": []},  # no pool reference
            {
                "backendAddressPool": {"id": f"{GW}/backendAddressPools/p"},
                "backendHttpSettingsCollection": [
                    {"servers": [{"address": "10.0.0.1"}]},  # no settings reference
                    {"backendHttpSettings": settings, "servers": "nope"},
                    {
                        "backendHttpSettings": settings,
                        "servers": [
                            {"health": "Up"},  # no address
                            {"address": "10.0.0.2", "health": 3, "healthProbeLog": 5},
                            {"ipConfiguration": {"id": "/nic/ipconfig1"}, "health": "Up"},
                        ],
                    },
                ],
            },
        ]
    }
    servers = parse_backend_health(doc)
    assert [(s.address, s.health, s.probe_log) for s in servers] == [
        ("10.0.0.2", HealthState.UNKNOWN, None),
        ("/nic/ipconfig1", HealthState.HEALTHY, None),
    ]
    assert parse_backend_health({"backendAddressPools": []}) == ()


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"value": []},
        {"backendAddressPools": {"a": 1}},
        {"backendAddressPool": {"id": "x"}},  # on-demand without settings
        {"backendAddressPool": {}, "backendHealthHttpSettings": {"servers": []}},
        [],
        "backend health",
        None,
    ],
)
def test_not_backend_health(doc: Any) -> None:
    with pytest.raises(InputError, match="backend-health"):
        parse_backend_health(doc)


def test_a_gateway_is_not_backend_health() -> None:
    with pytest.raises(InputError, match="backend-health"):
        parse_backend_health(_load(DATA / "cli_gateway_v1.json"))
    arm = _load(EXAMPLES / "ApplicationGatewayGet.json")["responses"]["200"]["body"]
    with pytest.raises(InputError, match="gateway itself"):
        parse_backend_health(arm)
    with pytest.raises(InputError, match="backendAddressPool"):
        parse_backend_health({"backendAddressPools": [{"name": "p", "backendAddresses": []}]})
