"""Session Azurite (in memory, free ports, loopback only), per-test unique storage names, and the
`bot_app` fixture: function_app served by the local runner (sandbox/funcrunner.py) over Azurite,
talking to a sandbox, with helpers to post alerts, follow jobs and count ARM writes. Shared by the
function-app acceptance tests and the safety suites (issue #7)."""

from __future__ import annotations

import importlib
import json
import ssl
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import function_app  # noqa: E402
from sandbox.azurite import AzuriteHandle, start_azurite  # noqa: E402
from sandbox.funcrunner import REPO_ROOT, FunctionRunner  # noqa: E402
from sandbox.runtime import SandboxHandle  # noqa: E402
from shared.common.ids import parse_gateway_id  # noqa: E402
from shared.core.health import HealthState, parse_backend_health  # noqa: E402
from shared.service.storage import Storage, StorageNames  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.azurite)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteHandle]:
    handle = start_azurite(tmp_path_factory.mktemp("azurite"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def azurite_connection(azurite: AzuriteHandle) -> str:
    return azurite.connection_string


@pytest.fixture
def unique() -> str:
    """A short name unique to this test, valid for tables, queues and containers."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def storage_names(unique: str) -> StorageNames:
    return StorageNames(
        ledger_table=f"ledger{unique}",
        jobs_queue=f"jobs-{unique}",
        evidence_container=f"evidence-{unique}",
        lock_container=f"locks-{unique}",
    )


@pytest.fixture
def storage(azurite_connection: str, storage_names: StorageNames) -> Storage:
    return Storage.from_connection_string(azurite_connection, storage_names)


# ---- the function app on a sandbox (bot_app) --------------------------------------------------

KEY = "test-host-key"
WAIT = 60.0  # generous upper bound for one job on a 2-core machine (not a timed assertion)
_HOST_JSON = json.loads((REPO_ROOT / "host.json").read_text())


def host_json(max_dequeue_count: int = 5) -> dict[str, Any]:
    """The app's host.json with a failed message visible again at once (fast redelivery)."""
    data = json.loads(json.dumps(_HOST_JSON))
    queues = data["extensions"]["queues"]
    queues.update({"visibilityTimeout": "00:00:00", "maxDequeueCount": max_dequeue_count})
    return data


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    cafile: str | None = None,
) -> Reply:
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, dict(err.headers), err.read())


@dataclass
class BotApp:
    """The function app running on a sandbox: HTTP helpers, storage and ARM counters."""

    runner: FunctionRunner
    sandbox: SandboxHandle
    storage: Storage
    env: dict[str, str]

    @property
    def gateway_id(self) -> str:
        return self.sandbox.gateway_ids[0]

    def call(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        key: str | None = KEY,
        headers: Mapping[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        sent = {"Content-Type": "application/json", **(headers or {})}
        if key is not None:
            sent["x-functions-key"] = key
        body = raw if raw is not None else None if payload is None else json.dumps(payload).encode()
        return http(method, f"{self.runner.url}/api/{path}", body, sent)

    def post_alert(self, payload: Any, **kwargs: Any) -> Reply:
        return self.call("POST", "alerts", payload, **kwargs)

    def gateway_path(self, action: str) -> str:
        gid = parse_gateway_id(self.gateway_id)
        return f"gateways/{gid.subscription}/{gid.resource_group}/{gid.name}/{action}"

    def wait_job(self, job_id: str, timeout: float = WAIT) -> dict[str, Any]:
        """GET /api/jobs/{id} until the job is finished (succeeded, failed or proposed)."""
        deadline = time.monotonic() + timeout
        while True:
            reply = self.call("GET", f"jobs/{job_id}")
            assert reply.status == 200, reply.body
            job = reply.json()
            if job["state"] in {"succeeded", "failed", "proposed"}:
                return dict(job)
            if time.monotonic() > deadline:
                pytest.fail(f"job {job_id} still {job['state']} after {timeout:.0f} s")
            time.sleep(0.2)

    def control(self, method: str, path: str, payload: Any = None) -> Reply:
        """The sandbox's control endpoint (HTTPS under the sandbox CA)."""
        body = None if payload is None else json.dumps(payload).encode()
        url = f"{self.sandbox.env['SANDBOX_CONTROL_URL']}/{path}"
        return http(method, url, body, cafile=self.sandbox.env["REQUESTS_CA_BUNDLE"])

    def arm_requests(self) -> list[dict[str, Any]]:
        return list(self.control("GET", "requests").json())

    def puts(self) -> list[dict[str, Any]]:
        return [r for r in self.arm_requests() if r["method"] == "PUT"]

    def add_faults(self, rules: list[dict[str, Any]]) -> None:
        reply = self.control("POST", "faults", rules)
        assert reply.status == 200, reply.body

    def rows(self, partition: str) -> list[dict[str, Any]]:
        """Ledger rows of one kind ("job", "alert", "active"); see shared/service/storage/."""
        self.storage.ensure()
        table = self.storage.table_service.get_table_client(self.storage.names.ledger_table)
        return list(table.query_entities("PartitionKey eq @pk", parameters={"pk": partition}))

    def jobs(self) -> list[dict[str, Any]]:
        return self.rows("job")

    def alert_rows(self) -> list[dict[str, Any]]:
        return self.rows("alert")

    def queued_messages(self) -> int:
        self.storage.ensure()
        queue = self.storage.queue_service.get_queue_client(self.storage.names.jobs_queue)
        return int(queue.get_queue_properties().approximate_message_count or 0)

    def evidence(self, job_id: str) -> list[str]:
        container = self.storage.container(self.storage.names.evidence_container)
        return sorted(b.name for b in container.list_blobs(name_starts_with=f"{job_id}/"))

    def lease_state(self, gateway_id: str | None = None) -> str:
        """The gateway lease blob's lease state ("available", "leased", "expired", "broken"…),
        or "absent" when no job ever took the lease."""
        from azure.core.exceptions import ResourceNotFoundError

        from shared.service.lease import lock_name

        container = self.storage.container(self.storage.names.lock_container)
        blob = container.get_blob_client(lock_name(gateway_id or self.gateway_id))
        try:
            return str(blob.get_blob_properties().lease.state)
        except ResourceNotFoundError:
            return "absent"

    def context(self) -> Any:
        """The AppContext the runner's functions use (built from the same os.environ)."""
        from shared.service.app import get_context

        return get_context()

    def health(self) -> list[HealthState]:
        from shared.cloud.arm import ArmClient
        from shared.common.settings import load_settings

        arm = ArmClient(load_settings(self.env))
        raw = arm.backend_health(parse_gateway_id(self.gateway_id))
        return [h.health for h in parse_backend_health(raw)]


Factory = Callable[..., BotApp]


@pytest.fixture
def bot_app(
    sandbox_factory: Callable[[str], SandboxHandle],
    azurite_connection: str,
    storage_names: StorageNames,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Factory]:
    """start(scenario, connection=None, easy_auth=False, max_dequeue_count=5, worker=True,
    sandbox=None, **settings) -> BotApp. Every runner is stopped after the test."""
    with ExitStack() as stack:

        def start(
            scenario: str = "ilb-ase-v1",
            *,
            connection: str | None = None,
            easy_auth: bool = False,
            max_dequeue_count: int = 5,
            worker: bool = True,
            sandbox: SandboxHandle | None = None,
            **settings: str,
        ) -> BotApp:
            handle = sandbox or sandbox_factory(scenario)
            conn = connection or azurite_connection
            env = {
                **handle.env,
                "LEDGER_TABLE": storage_names.ledger_table,
                "JOBS_QUEUE": storage_names.jobs_queue,
                "EVIDENCE_CONTAINER": storage_names.evidence_container,
                "LOCK_CONTAINER": storage_names.lock_container,
                "VERIFY_DEADLINE_SECONDS": "20",
                "ARM_POLLING_INTERVAL": "0",
                "COOLDOWN_MINUTES": "0",
                **settings,
            }
            if not worker:  # the host's way to switch one function off (docs/sources.md#functions)
                env["AzureWebJobs.worker.Disabled"] = "true"
            runner = FunctionRunner(
                load_app(storage_names.jobs_queue, monkeypatch),
                env=env,
                connection=conn,
                keys={"default": KEY},
                easy_auth=easy_auth,
                host_json=host_json(max_dequeue_count),
                poll_interval=0.05,
            )
            stack.enter_context(runner)
            storage = Storage.from_connection_string(conn, storage_names)
            return BotApp(runner, handle, storage, {**env, "AzureWebJobsStorage": conn})

        yield start


def load_app(queue: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """function_app.app with its queue triggers on `queue`: the module reads JOBS_QUEUE when
    imported (as the host indexes it), so it is imported again with the setting in place."""
    monkeypatch.setenv("JOBS_QUEUE", queue)
    return importlib.reload(function_app).app
