"""Per-gateway locks: the blob lease (renewed while held) and the CLI's file lock."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from azure.storage.blob import BlobLeaseClient

from shared.service.lease import GatewayLease, LeaseUnavailable, LocalGatewayLock, lock_name
from shared.service.storage import Storage

GW = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/applicationGateways/agw1"
OTHER = GW.replace("agw1", "agw2")


def test_lease_is_exclusive_per_gateway(storage: Storage) -> None:
    with GatewayLease(storage, GW, duration=15) as lease:
        assert lease.held and not lease.lost and lease.lease_id
        with pytest.raises(LeaseUnavailable), GatewayLease(storage, GW.upper(), duration=15):
            pass
        with GatewayLease(storage, OTHER, duration=15):  # another gateway is independent
            pass
    # Released on exit: the next holder gets it at once.
    with GatewayLease(storage, GW, duration=15) as again:
        assert again.held
    blob = storage.container(storage.names.lock_container).get_blob_client(lock_name(GW))
    assert blob.get_blob_properties().lease.state == "available"


def test_renewal_keeps_the_lease(storage: Storage) -> None:
    """Renewals succeed and the lease stays ours (that they outlast the duration: below)."""
    with GatewayLease(storage, GW, duration=15, renew_every=0.05) as lease:
        deadline = time.monotonic() + 10
        while lease.renewals < 3:
            assert not lease.lost, "a renewal failed"
            assert time.monotonic() < deadline, f"only {lease.renewals} renewals in 10 s"
            time.sleep(0.02)
        assert lease.held and not lease.lost
        with pytest.raises(LeaseUnavailable), GatewayLease(storage, GW, duration=15):
            pass


@pytest.mark.slow
def test_a_lease_lasts_its_duration_and_only_renewal_keeps_it(storage: Storage) -> None:
    """The one real wait of the lease tests: blob leases last 15 to 60 s (Azurite enforces it
    too), so this waits one 15 s lease. A lease nobody renews (a crashed worker's) frees the
    gateway when it expires; ours, taken earlier and renewed, is still ours then."""
    with GatewayLease(storage, GW, duration=15, renew_every=2) as renewed:
        blob = storage.container(storage.names.lock_container).get_blob_client(lock_name(OTHER))
        blob.upload_blob(b"a crashed worker's lock")
        taken = time.monotonic()
        BlobLeaseClient(blob).acquire(lease_duration=15)  # never renewed, never released
        with pytest.raises(LeaseUnavailable), GatewayLease(storage, OTHER, duration=15):
            pass
        while (state := blob.get_blob_properties().lease.state) == "leased":
            assert time.monotonic() - taken < 25, "the unrenewed lease never expired"
            time.sleep(0.1)
        assert state == "expired" and time.monotonic() - taken >= 14.5  # it lasted its 15 s
        # Our lease is older than the one that just expired: only renewal kept it.
        assert renewed.renewals >= 1 and renewed.held and not renewed.lost
        with pytest.raises(LeaseUnavailable), GatewayLease(storage, GW, duration=15):
            pass
    with GatewayLease(storage, OTHER, duration=15) as next_holder:  # the next worker gets it
        assert next_holder.held


def test_lost_is_set_when_renewal_fails(storage: Storage) -> None:
    with GatewayLease(storage, GW, duration=15, renew_every=0.1) as lease:
        blob = storage.container(storage.names.lock_container).get_blob_client(lock_name(GW))
        BlobLeaseClient(blob).break_lease(lease_break_period=0)
        # Someone else takes it over; our renewal must notice.
        thief = BlobLeaseClient(blob)
        thief.acquire(lease_duration=15)
        deadline = time.monotonic() + 20
        while not lease.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lease.lost and not lease.held
    thief.release()


def test_lease_duration_bounds(storage: Storage) -> None:
    with pytest.raises(ValueError):
        GatewayLease(storage, GW, duration=5)


def test_local_lock_is_exclusive(tmp_path: Path) -> None:
    with LocalGatewayLock(tmp_path, GW) as lock:
        assert lock.held and not lock.lost
        with pytest.raises(LeaseUnavailable), LocalGatewayLock(tmp_path, GW.lower()):
            pass
        with LocalGatewayLock(tmp_path, OTHER):
            pass
    assert not lock.held
    with LocalGatewayLock(tmp_path, GW):
        pass


def test_local_lock_between_threads(tmp_path: Path) -> None:
    """Only one of several concurrent takers wins."""
    wins: list[int] = []
    barrier = threading.Barrier(6)
    hold = threading.Event()

    def take(n: int) -> None:
        barrier.wait()
        try:
            with LocalGatewayLock(tmp_path, GW):
                wins.append(n)
                hold.wait(30)
        except LeaseUnavailable:
            pass

    threads = [threading.Thread(target=take, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    try:
        # Release only once every loser has tried and given up; two winners fail at once.
        deadline = time.monotonic() + 10
        while not (wins and sum(t.is_alive() for t in threads) <= 1):
            assert len(wins) <= 1, f"{len(wins)} threads hold the lock at once"
            assert time.monotonic() < deadline, "the takers did not finish within 10 s"
            time.sleep(0.01)
    finally:
        hold.set()
        for t in threads:
            t.join()
    assert len(wins) == 1
