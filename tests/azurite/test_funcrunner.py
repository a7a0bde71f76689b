"""sandbox.funcrunner serving a throwaway FunctionApp over real HTTP, fed from real Azurite."""

from __future__ import annotations

import base64
import http.client
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func
import pytest
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from sandbox.easyauth import APPROVER, OPERATOR, SECOND_APPROVER, EasyAuth, principal_headers
from sandbox.funcrunner import FunctionRunner, compile_route

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
SEEN: list[tuple[str, int]] = []
TIMER_RUNS: list[bool] = []
_seen_lock = threading.Lock()


@app.route(route="alerts", methods=["POST"])
@app.queue_output(arg_name="jobs", queue_name="%JOBS_QUEUE%", connection="AzureWebJobsStorage")
def alerts(req: func.HttpRequest, jobs: func.Out[str]) -> func.HttpResponse:
    job = {"job_id": req.get_json()["id"]}
    jobs.set(json.dumps(job))
    return func.HttpResponse(json.dumps(job), status_code=202, mimetype="application/json")


@app.route(route="gateways/{subscription}/{resourceGroup}/{name}/diagnose", methods=["POST"])
def diagnose(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(dict(req.route_params)), mimetype="application/json")


@app.route(route="proposals/{id}/{action:regex(^(approve|reject)$)}", methods=["POST"])
def decide(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"{req.route_params['action']} {req.route_params['id']}")


@app.route(route="jobs/{id:int}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def job_by_number(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"number {req.route_params['id']}")


@app.route(route="jobs/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def job_by_name(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"name {req.route_params['id']}")


@app.route(route="whoami", methods=["GET"])
def whoami(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.headers.get("x-ms-client-principal-name") or "nobody")


@app.route(route="admin/thing", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def admin_thing(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin")


@app.route(route="boom", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("kaboom")


@app.queue_trigger(arg_name="msg", queue_name="%WORK_QUEUE%", connection="AzureWebJobsStorage")
def worker(msg: func.QueueMessage, context: func.Context) -> None:
    body = msg.get_body().decode()
    with _seen_lock:
        SEEN.append((body, msg.dequeue_count))
    assert context.function_name == "worker"
    if body.startswith("fail"):
        raise RuntimeError(f"cannot process {body}")


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", run_on_startup=False)
def sweep(timer: func.TimerRequest) -> None:
    TIMER_RUNS.append(timer.past_due)


KEYS = {"default": "host-key", "master": "master-key"}
HOST_JSON = {
    "version": "2.0",
    "extensions": {
        "queues": {"maxDequeueCount": 3, "visibilityTimeout": "00:00:00", "batchSize": 4},
        "http": {"routePrefix": "api"},
    },
}


def make_runner(
    connection: str, unique: str, *, easy_auth: bool = False, auth: EasyAuth | None = None
) -> FunctionRunner:
    env = {"JOBS_QUEUE": f"jobs-{unique}", "WORK_QUEUE": f"work-{unique}"}
    return FunctionRunner(
        app,
        env=env,
        connection=connection,
        keys=KEYS,
        function_keys={"whoami": {"mine": "whoami-key"}},
        easy_auth=easy_auth,
        auth=auth,
        host_json=HOST_JSON,
        poll_interval=0.05,
    )


@pytest.fixture
def runner(azurite_connection: str, unique: str) -> Iterator[FunctionRunner]:
    with make_runner(azurite_connection, unique) as running:
        yield running


def call(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_http_trigger_with_key_and_queue_output(runner: FunctionRunner, unique: str) -> None:
    status, body = call("POST", f"{runner.url}/api/alerts?code=host-key", {"id": "j-1"})
    assert (status, json.loads(body)) == (202, {"job_id": "j-1"})
    status, _ = call(
        "POST", f"{runner.url}/api/alerts", {"id": "j-2"}, {"x-functions-key": "master-key"}
    )
    assert status == 202
    queue = QueueClient.from_connection_string(runner.connection, f"jobs-{unique}")
    bodies = [
        json.loads(base64.b64decode(m.content)) for m in queue.receive_messages(max_messages=10)
    ]
    assert sorted(b["job_id"] for b in bodies) == ["j-1", "j-2"]  # base64, as the host writes


@pytest.mark.parametrize(
    "headers, query",
    [({}, ""), ({"x-functions-key": "wrong"}, ""), ({}, "?code=wrong"), ({}, "?code=")],
)
def test_missing_or_wrong_key_is_401(
    runner: FunctionRunner, headers: dict[str, str], query: str
) -> None:
    status, body = call("POST", f"{runner.url}/api/alerts{query}", {"id": "x"}, headers)
    assert status == 401 and body == b""


def test_admin_level_needs_the_master_key(runner: FunctionRunner) -> None:
    assert call("GET", f"{runner.url}/api/admin/thing?code=host-key")[0] == 401
    assert call("GET", f"{runner.url}/api/admin/thing?code=master-key") == (200, b"admin")


def test_function_specific_key(runner: FunctionRunner) -> None:
    assert call("GET", f"{runner.url}/api/whoami?code=whoami-key")[0] == 200
    assert call("POST", f"{runner.url}/api/alerts?code=whoami-key", {"id": "x"})[0] == 401


def test_route_params_constraints_and_precedence(runner: FunctionRunner) -> None:
    status, body = call(
        "POST", f"{runner.url}/api/gateways/sub-1/rg%20one/agw-1/diagnose?code=host-key"
    )
    assert status == 200
    assert json.loads(body) == {"subscription": "sub-1", "resourceGroup": "rg one", "name": "agw-1"}
    assert call("GET", f"{runner.url}/api/jobs/42") == (200, b"number 42")
    assert call("GET", f"{runner.url}/api/jobs/abc") == (200, b"name abc")
    assert call("POST", f"{runner.url}/api/proposals/p1/approve?code=host-key") == (
        200,
        b"approve p1",
    )
    assert call("POST", f"{runner.url}/api/proposals/p1/delete?code=host-key")[0] == 404
    assert call("GET", f"{runner.url}/api/nowhere")[0] == 404
    assert call("GET", f"{runner.url}/alerts")[0] == 404  # outside the route prefix
    assert call("DELETE", f"{runner.url}/api/jobs/42")[0] == 404  # method not declared


def test_function_error_is_500(runner: FunctionRunner) -> None:
    assert call("GET", f"{runner.url}/api/boom") == (500, b"")
    assert any(i.function == "boom" and not i.ok for i in runner.invocations)


def test_easy_auth_headers_stripped_unless_enabled(azurite_connection: str, unique: str) -> None:
    spoof = {"x-ms-client-principal-name": "mallory@example.com", "x-functions-key": "host-key"}
    with make_runner(azurite_connection, unique) as plain:
        assert call("GET", f"{plain.url}/api/whoami", headers=spoof) == (200, b"nobody")
    with make_runner(azurite_connection, unique, easy_auth=True) as with_auth:
        assert call("GET", f"{with_auth.url}/api/whoami", headers=spoof) == (
            200,
            b"mallory@example.com",
        )


def _raw(runner: FunctionRunner, path: str, headers: dict[str, str] | None = None) -> Any:
    """GET without following redirects: (status, headers, body)."""
    conn = http.client.HTTPConnection(urlsplit(runner.url).netloc, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_easy_auth_signs_in_by_object_id_and_strips_callers_principal_headers(
    azurite_connection: str, unique: str
) -> None:
    """sandbox/easyauth.py: /.auth/login/aad signs a sandbox user in (a session cookie) and
    redirects back on the same site; the app then sees the platform's principal headers for
    that user, and never the ones a caller sent."""
    spoof = {
        **principal_headers(SECOND_APPROVER),
        "x-ms-client-principal-name": "mallory@example.com",
        "x-functions-key": "host-key",
    }
    with make_runner(azurite_connection, unique, auth=EasyAuth(default_user=APPROVER)) as runner:
        assert _raw(runner, "/api/whoami", spoof)[2] == b"nobody"  # stripped, not signed in
        assert _raw(runner, "/.auth/me")[0] == 401
        status, headers, _ = _raw(runner, "/.auth/login/aad?post_login_redirect_uri=/api/whoami")
        assert (status, headers["Location"]) == (302, "/api/whoami")
        cookie = headers["Set-Cookie"].split(";", 1)[0]
        signed_in = {**spoof, "Cookie": cookie}
        assert _raw(runner, "/api/whoami", signed_in)[2] == APPROVER.name.encode()
        me = json.loads(_raw(runner, "/.auth/me", {"Cookie": cookie})[2])
        oid = "http://schemas.microsoft.com/identity/claims/objectidentifier"
        assert {c["typ"]: c["val"] for c in me[0]["user_claims"]}[oid] == APPROVER.object_id
        # A chosen user; a redirect off the site is refused (back to "/").
        picked = f"/.auth/login/aad?login_hint={OPERATOR.object_id}"
        status, headers, _ = _raw(runner, picked + "&post_login_redirect_uri=https://evil.test/")
        assert (status, headers["Location"]) == (302, "/")
        other = {"Cookie": headers["Set-Cookie"].split(";", 1)[0], "x-functions-key": "host-key"}
        assert _raw(runner, "/api/whoami", other)[2] == OPERATOR.name.encode()
        assert _raw(runner, "/.auth/logout", {"Cookie": cookie})[0] == 302
        assert _raw(runner, "/api/whoami", signed_in)[2] == b"nobody"


def _send(runner: FunctionRunner, unique: str, text: str) -> None:
    queue = QueueClient.from_connection_string(
        runner.connection, f"work-{unique}", message_encode_policy=TextBase64EncodePolicy()
    )
    queue.send_message(text)


def test_queue_trigger_processes_and_deletes(runner: FunctionRunner, unique: str) -> None:
    _send(runner, unique, f"ok-{unique}")
    assert runner.wait_for(
        lambda inv: any(i.function == "worker" and i.ok for i in inv), timeout=30
    )
    assert (f"ok-{unique}", 1) in SEEN
    queue = QueueClient.from_connection_string(runner.connection, f"work-{unique}")
    assert queue.get_queue_properties().approximate_message_count == 0


def test_failing_message_goes_to_poison_after_max_dequeue(
    runner: FunctionRunner, unique: str
) -> None:
    body = f"fail-{unique}"
    _send(runner, unique, body)
    assert runner.wait_for(lambda inv: any(i.poisoned for i in inv), timeout=60)
    assert [count for seen, count in SEEN if seen == body] == [1, 2, 3]  # maxDequeueCount 3
    poison = QueueClient.from_connection_string(runner.connection, f"work-{unique}-poison")
    messages = list(poison.receive_messages(max_messages=10))
    assert [base64.b64decode(m.content).decode() for m in messages] == [body]
    work = QueueClient.from_connection_string(runner.connection, f"work-{unique}")
    assert work.get_queue_properties().approximate_message_count == 0


def test_output_binding_feeds_a_queue_trigger(azurite_connection: str, unique: str) -> None:
    # Point the HTTP function's output at the worker's queue: HTTP → queue → worker.
    runner = make_runner(azurite_connection, unique)
    runner.env["JOBS_QUEUE"] = f"work-{unique}"
    with runner:
        assert call("POST", f"{runner.url}/api/alerts?code=host-key", {"id": unique})[0] == 202
        expected = json.dumps({"job_id": unique})
        assert runner.wait_for(
            lambda inv: any(i.function == "worker" and i.ok for i in inv), timeout=30
        )
        assert (expected, 1) in SEEN


def test_timer_runs_on_demand(runner: FunctionRunner) -> None:
    before = len(TIMER_RUNS)
    assert runner.run_timer("sweep").ok
    assert runner.run_timer("sweep", past_due=True).ok
    assert TIMER_RUNS[before:] == [False, True]
    with pytest.raises(KeyError):
        runner.run_timer("alerts")


def test_env_applied_while_running_and_restored(azurite_connection: str, unique: str) -> None:
    import os

    assert "WORK_QUEUE" not in os.environ
    with make_runner(azurite_connection, unique):
        assert os.environ["WORK_QUEUE"] == f"work-{unique}"
        assert os.environ["AzureWebJobsStorage"] == azurite_connection  # noqa: SIM112
    assert "WORK_QUEUE" not in os.environ


def test_unsupported_bindings_are_refused(azurite_connection: str) -> None:
    other = func.FunctionApp()

    @other.blob_trigger(arg_name="blob", path="c/{name}", connection="AzureWebJobsStorage")
    def on_blob(blob: func.InputStream) -> None:
        pass

    with pytest.raises(ValueError, match="not supported"):
        FunctionRunner(other, env={}, connection=azurite_connection, keys={})


@pytest.mark.parametrize(
    "template, path, params",
    [
        ("a/{x}", "/a/1", {"x": "1"}),
        ("a/{x?}", "/a", {"x": None}),
        ("a/{x:int}", "/a/b", None),
        ("a/{x:alpha:maxlength(3)}", "/a/abc", {"x": "abc"}),
        ("a/{x:alpha:maxlength(3)}", "/a/abcd", None),
        ("files/{*rest}", "/files/x/y.txt", {"rest": "x/y.txt"}),
        ("v{version:int}/items", "/v2/items", {"version": "2"}),
        ("A/B", "/a/b", {}),
    ],
)
def test_compile_route(template: str, path: str, params: dict[str, Any] | None) -> None:
    pattern, _ = compile_route(template)
    match = pattern.fullmatch(path)
    assert (match.groupdict() if match else None) == params
