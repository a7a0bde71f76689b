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


def test_lease_outlives_its_duration_while_renewed(storage: Storage) -> None:
    with GatewayLease(storage, GW, duration=15, renew_every=2) as lease:
        # Wait past the 15 s lease duration: only renewal keeps it ours.
        time.sleep(17)
        assert lease.renewals >= 1 and not lease.lost
        with pytest.raises(LeaseUnavailable), GatewayLease(storage, GW, duration=15):
            pass


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
    # Release only once every loser has tried and given up.
    while not (wins and sum(t.is_alive() for t in threads) <= 1):
        time.sleep(0.01)
    hold.set()
    for t in threads:
        t.join()
    assert len(wins) == 1
