"""The expiry watch and the overlap rotation through the sandbox (scenario `rotation-v2`).

Two v2 pool members present a certificate that ends in 20 days; its renewal, issued under a new
private root, and that root are in Key Vault. The bot reports the certificate as expiring, notifies
it once, adds the new root next to the old one in one write, and keeps both through the switch:
each backend moves to the new certificate mid-scenario and backend health, read after every step,
is never Unhealthy. Only once no backend presents the old certificate is its root's removal
proposed, and it leaves only when a second person approves it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox.runtime import SandboxHandle
from shared.cloud.arm import ArmClient
from shared.common.ids import parse_gateway_id
from shared.common.settings import load_settings
from shared.core.health import parse_backend_health
from shared.remediation.plan import TRUSTED_ROOTS, certificate_name
from tests.test_remediate_sandbox import (
    ALICE,
    BOB,
    Factory,
    cert_names,
    make_remediator,
    put_count,
    ref_names,
    settings_entry,
    stored,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]


def health(handle: SandboxHandle) -> dict[str, str]:
    """Backend health as ARM reports it: server address -> healthy/unhealthy/unknown."""
    client = ArmClient(load_settings(ARM_POLLING_INTERVAL="0"))
    servers = parse_backend_health(client.backend_health(parse_gateway_id(handle.gateway_ids[0])))
    return {s.address: s.health.value for s in servers}


def trusted(handle: SandboxHandle) -> list[str]:
    return ref_names(settings_entry(stored(handle), "web-https"), TRUSTED_ROOTS)


def test_overlap_rotation_keeps_both_roots_until_no_backend_presents_the_old_one(
    sandbox_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = sandbox_factory("rotation-v2")
    bot = make_remediator(handle, tmp_path, monkeypatch)
    events: list[tuple[str, dict[str, Any]]] = []
    bot._notify = lambda kind, event: events.append((kind, event))
    gid = handle.gateway_ids[0]
    new_root = certificate_name(handle.certs["new-root"].thumbprint())
    seen: list[dict[str, str]] = [health(handle)]
    assert set(seen[0].values()) == {"healthy"}

    # 1. The watch sees the leaf ending in 20 days; the renewal's root goes in next to the old.
    first = bot.fix(gid, requester="sweep")
    assert first.action == "applied", first.reason
    assert (first.arm_writes, put_count(handle)) == (1, 1) and first.verified is True
    assert trusted(handle) == ["contoso-root-2016", new_root]
    expiring = first.diagnosis["expiring"] if first.diagnosis else []
    leaf = handle.certs["app-2025"].thumbprint()
    assert [(e["where"], e["sha1"]) for e in expiring] == [("backend_leaf", leaf)]
    assert expiring[0]["days_left"] in (19, 20) and expiring[0]["not_after"].endswith("Z")
    assert next(e for k, e in events if k == "expiring")["thumbprint"] == leaf
    seen.append(health(handle))

    # 2. One backend switches: both roots trusted, nothing to retire, no second notice.
    handle.rotate_backend("web-1")
    seen.append(health(handle))
    second = bot.fix(gid, requester="sweep")
    assert second.action == "none" and second.arm_writes == 0, second.reason
    assert trusted(handle) == ["contoso-root-2016", new_root]
    assert [k for k, _ in events].count("expiring") == 1

    # 3. The last backend switches: the old root is presented by nobody; its removal is proposed.
    handle.rotate_backend("web-2")
    seen.append(health(handle))
    third = bot.fix(gid, requester="sweep")
    assert third.action == "proposed" and third.proposal, third.reason
    assert third.plan and third.plan["action"] == "remove_trusted_root_certificate"
    assert trusted(handle) == ["contoso-root-2016", new_root]  # a proposal writes nothing
    proposal = bot.proposals.get(third.proposal)
    assert proposal.certificate_cer is None  # nothing to add
    assert "stop trusting contoso-root-2016" in proposal.renderings["summary"]
    assert put_count(handle) == 1

    # 4. A second person approves: the old root leaves the settings and the gateway.
    done = bot.approve(third.proposal, BOB)
    assert done.action == "applied" and done.verified is True, done.reason
    assert trusted(handle) == [new_root]
    assert cert_names(stored(handle), TRUSTED_ROOTS) == [new_root]
    seen.append(health(handle))

    assert all(set(h.values()) == {"healthy"} for h in seen), seen
    assert all(len(h) == 2 for h in seen)


def test_next_certificate_from_the_operator_is_trusted_next_to_the_old_one(
    sandbox_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No Key Vault trusted source: the operator gives the renewal and its root in one file.
    handle = sandbox_factory("rotation-v2")
    bot = make_remediator(handle, tmp_path, monkeypatch, TRUSTED_CERT_NAMES="")
    gid = handle.gateway_ids[0]
    nxt = [handle.certs["app-2026"].der(), handle.certs["new-root"].der()]

    dry = bot.fix(gid, requester=ALICE, dry_run=True, next_certificates=nxt)
    assert dry.arm_writes == 0 and put_count(handle) == 0

    outcome = bot.fix(gid, requester=ALICE, next_certificates=nxt)
    # A v2 root is applied automatically only with a Key Vault trusted source: proposed.
    assert outcome.action == "proposed", outcome.reason
    assert outcome.plan and outcome.plan["replaces"] == "contoso-root-2016"
    done = bot.approve(str(outcome.proposal), BOB)
    assert done.action == "applied", done.reason
    new_root = certificate_name(handle.certs["new-root"].thumbprint())
    assert trusted(handle) == ["contoso-root-2016", new_root]
    handle.rotate_backend("web-1")
    handle.rotate_backend("web-2")
    assert set(health(handle).values()) == {"healthy"}
