"""Conformance of the ARM emulator to recorded real Azure traffic (tests/data/recorded/).

Each test replays, over the emulator's real HTTPS endpoint with a bearer token, the request a
recording made and compares what matters to a client: status codes, which LRO headers are present
or absent, async-operation status bodies over time, provisioningState transitions, ETag format,
certificate data visibility and error shapes. Volatile values (ids, GUIDs, dates, signatures) are
never compared. The recorded gateway bodies are loaded into the emulator as seeds, so the requests
target the same resource ids the recordings used.

Every test names its recording, `file: interaction` (`idx N` = position in the upstream cassette,
otherwise the recorded `date`); tests/data/recorded/SOURCES.md describes each file. Where the
truth is not in a recording, the docstring names the public source instead.

Recorder caveats (SOURCES.md, "Recorders"): the azure-cli recordings drop `retry-after` and the
request-id headers, and the Java recording writes `Retry-After: 0` over every response and keeps
no request bodies, so no test here compares those; headers and bodies their recorders keep
(`location`, `azure-asyncoperation`, `etag`, response bodies) are compared.
tests/sandbox/conformance/ compares Retry-After, the health `null` bodies and the final
`Location`, back-references and api-versions against recordings that keep them.
This file: GET and the PUT's status, headers and body; certificate data, overlapping writes and
backend health: test_conformance_certificates.py; the seeded emulator and helpers over recorded
bodies: tests/sandbox/conformance_helpers.py.
"""

from __future__ import annotations

import json

import pytest

from tests.sandbox import conformance_helpers
from tests.sandbox.conformance_helpers import (
    AUTH,
    AUTH_404,
    AUTH_GET,
    JAVA,
    ROOT,
    ROOT_GET,
    ROOT_PUT,
    SEEDS,
    SUB,
    WEAK_ETAG,
    Arm,
    async_operation,
    children,
    fresh_body,
    gateway_uri,
    interaction,
    path_of,
    recorded_cert_data,
    recording,
    states,
    wait_done,
    with_cert,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]

arm = conformance_helpers.arm


# ---- GET -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seed",
    [
        pytest.param("root", id="cli_ag_root_cert_v2.json: GET 05:25:57"),
        pytest.param("auth", id="cli_ag_auth_cert_v1.json: idx 7"),
        pytest.param("kv", id="cli_ag_root_cert_kv_400.json: idx 26"),
        pytest.param("health", id="cli_ag_backend_health_v2.json: GET 00:43:09"),
    ],
)
def test_get_has_weak_etag_header_equal_to_body_and_children(arm: Arm, seed: str) -> None:
    """GET 200 carries an `ETag: W/"<guid>"` header equal to the body's `etag`, and every child
    carries the parent's etag (all four recordings' gateway GETs)."""
    recorded = SEEDS[seed]
    reply = arm.get(gateway_uri(recorded))
    assert reply.status == recorded["response"]["status"] == 200
    assert WEAK_ETAG.match(recorded["response"]["headers"]["etag"])  # the recorded shape
    assert WEAK_ETAG.match(reply.headers.get("etag", "")), reply.headers
    body = reply.body
    assert body["etag"] == reply.headers["etag"]
    assert {child["etag"] for _, child in children(body)} == {body["etag"]}
    assert reply.headers["content-type"].startswith("application/json")
    assert states(body) == {"Succeeded"}


def test_get_of_missing_gateway_is_resource_not_found(arm: Arm) -> None:
    """cli_ag_auth_cert_v1.json idx 3: GET of a gateway that does not exist (in an existing
    resource group) -> 404 `{"error": {"code": "ResourceNotFound", "message": "The Resource
    'Microsoft.Network/applicationGateways/<name>' under resource group '<rg>' was not found..."}}`,
    no `details`."""
    recorded = AUTH_404["response"]
    uri = gateway_uri(AUTH_GET).replace("/applicationGateways/ag1", "/applicationGateways/nope")
    reply = arm.get(uri)
    assert reply.status == recorded["status"] == 404
    assert set(reply.body) == set(recorded["body"]) == {"error"}
    assert set(reply.body["error"]) == set(recorded["body"]["error"]) == {"code", "message"}
    assert reply.body["error"]["code"] == "ResourceNotFound"
    rg = path_of(uri).split("/")[4]
    expected = recorded["body"]["error"]["message"].replace("ag1", "nope")
    assert expected.startswith("The Resource 'Microsoft.Network/applicationGateways/nope'")
    assert reply.body["error"]["message"].startswith(expected[:-1]), reply.body  # may add a URL
    assert f"under resource group '{rg}'" in reply.body["error"]["message"]


# ---- PUT: status, headers, body ------------------------------------------------------------------


def test_update_put_is_200_with_async_operation_only(arm: Arm) -> None:
    """cli_ag_root_cert_v2.json PUT 05:25:58 (also cli_ag_auth_cert_v1.json idx 9/11/13/15): an
    update PUT -> 200 with Azure-AsyncOperation (.../locations/{loc}/operations/{id}, same
    api-version); no Location, no ETag header. (Retry-After: azure-cli's recorder drops it, so
    these recordings cannot say; tests/sandbox/conformance/test_recorded_headers.py compares it
    with a recording that keeps it.)"""
    recorded = ROOT_PUT["response"]
    before = fresh_body(arm, ROOT_GET)
    data = recorded_cert_data(ROOT_PUT, "trustedRootCertificates")
    reply = arm.put(
        gateway_uri(ROOT_PUT), with_cert(before, "trustedRootCertificates", "cert1", data)
    )
    assert reply.status == recorded["status"] == 200, reply.body
    async_operation(reply, gateway_uri(ROOT_PUT))
    for header in ("location", "etag"):
        assert header not in recorded["headers"]
        assert header not in reply.headers, f"{header}: {reply.headers.get(header)}"


def test_create_put_is_201_with_async_operation(arm: Arm) -> None:
    """java_ag_kv_sslcert_identity.json PUT 201 (06:13:42) and cli_ag_root_cert_kv_400.json
    idx 7: creating a resource through NRP -> 201 Created with Azure-AsyncOperation, no Location,
    body Updating."""
    java_put = recording(JAVA)["interactions"][0]
    assert java_put["request"]["method"] == "PUT" and java_put["response"]["status"] == 201
    source = json.dumps(fresh_body(arm, ROOT_GET))
    body = json.loads(
        source.replace(
            "/resourceGroups/cli_test_ag_root_cert000001/",
            "/resourceGroups/cli_test_ag_create000001/",
        )
        .replace("/applicationGateways/ag1", "/applicationGateways/agnew")
        .replace(
            "/resourcegroups/cli_test_ag_root_cert000001/",
            "/resourcegroups/cli_test_ag_create000001/",
        )
    )
    for key in ("etag", "id", "name", "type"):
        body.pop(key, None)
    body["properties"].pop("resourceGuid", None)
    uri = (
        f"/subscriptions/{SUB}/resourceGroups/cli_test_ag_create000001/providers/"
        "Microsoft.Network/applicationGateways/agnew?api-version=2020-08-01"
    )
    reply = arm.put(uri, body)
    assert reply.status == 201, reply.body
    async_operation(reply, uri)
    assert "location" not in java_put["response"]["headers"] and "location" not in reply.headers
    assert "etag" not in reply.headers
    assert states(reply.body) == {"Updating"}


def test_put_body_is_updating_everywhere_and_get_follows_the_operation(arm: Arm) -> None:
    """provisioningState: the PUT response says Updating at top level and in every child
    (cli_ag_root_cert_v2.json PUT 05:25:58; cli_ag_auth_cert_v1.json idx 9); a GET while the
    operation runs says Updating (cli_ag_auth_cert_v1.json idx 16); after the operation
    Succeeded, GET says Succeeded everywhere (cli_ag_root_cert_v2.json GET 05:26:20)."""
    assert states(ROOT_PUT["response"]["body"]) == {"Updating"}
    assert states(AUTH_GET["response"]["body"]) == {"Updating"}
    after_recorded = interaction(ROOT, "date Fri, 06 Nov 2020 05:26:20 GMT (after")
    assert states(after_recorded["response"]["body"]) == {"Succeeded"}

    before = fresh_body(arm, ROOT_GET)
    data = recorded_cert_data(ROOT_PUT, "trustedRootCertificates")
    reply = arm.put(
        gateway_uri(ROOT_PUT), with_cert(before, "trustedRootCertificates", "cert1", data)
    )
    assert reply.status == 200
    assert states(reply.body) == {"Updating"}
    during = arm.get(gateway_uri(ROOT_GET))
    assert states(during.body) == {"Updating"}
    wait_done(arm, async_operation(reply, gateway_uri(ROOT_PUT)))
    after = arm.get(gateway_uri(ROOT_GET))
    assert states(after.body) == {"Succeeded"}
    assert after.headers["etag"] == after.body["etag"]


def test_async_operation_status_bodies_over_time(arm: Arm) -> None:
    """cli_ag_root_cert_v2.json polls 05:26:09 and 05:26:20: the operation URL answers 200
    `{"status": "InProgress"}` and then 200 `{"status": "Succeeded"}`, nothing else in the body,
    (Retry-After: see test_recorded_headers.py; azure-cli's recorder drops it.)"""
    polls = [
        interaction(ROOT, "date Fri, 06 Nov 2020 05:26:09 GMT"),
        interaction(ROOT, "date Fri, 06 Nov 2020 05:26:20 GMT"),
    ]
    assert [p["response"]["body"] for p in polls] == [
        {"status": "InProgress"},
        {"status": "Succeeded"},
    ]
    assert all(p["response"]["status"] == 200 for p in polls)

    before = fresh_body(arm, ROOT_GET)
    data = recorded_cert_data(ROOT_PUT, "trustedRootCertificates")
    reply = arm.put(
        gateway_uri(ROOT_PUT), with_cert(before, "trustedRootCertificates", "cert1", data)
    )
    replies = wait_done(arm, async_operation(reply, gateway_uri(ROOT_PUT)))
    bodies = [r.body for r in replies]
    assert all(r.status == 200 for r in replies)
    assert bodies[0] == {"status": "InProgress"}, bodies  # polled at once: still running
    assert bodies[-1] == {"status": "Succeeded"}, bodies
    assert set(map(json.dumps, bodies[:-1])) == {json.dumps({"status": "InProgress"})}


def test_etag_changes_on_every_put(arm: Arm) -> None:
    """cli_ag_auth_cert_v1.json idx 7 -> 9 -> 11 -> 13 -> 15 -> 16: every PUT response carries a new
    weak etag, different from the GET before it and from each other."""
    recorded = [interaction(AUTH, i)["response"]["body"]["etag"] for i in (7, 9, 11, 13, 15, 16)]
    assert len(set(recorded)) == len(recorded)

    seen = [fresh_body(arm, AUTH_GET)["etag"]]
    data = recorded_cert_data(interaction(AUTH, 9), "authenticationCertificates")
    for name in ("cert1", "cert2"):
        body = with_cert(fresh_body(arm, AUTH_GET), "authenticationCertificates", name, data)
        reply = arm.put(gateway_uri(AUTH_GET), body)
        assert reply.status == 200, reply.body
        assert WEAK_ETAG.match(reply.body["etag"])
        seen.append(reply.body["etag"])
        wait_done(arm, async_operation(reply, gateway_uri(AUTH_GET)))
        seen.append(arm.get(gateway_uri(AUTH_GET)).headers["etag"])
    put_etags = seen[1::2]
    assert len(set(put_etags)) == len(put_etags)
    assert seen[0] not in put_etags
