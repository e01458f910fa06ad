"""Auth at a real server: each route group against each kind of caller.

Callers: no token, a wrong token, a revoked one, an expired one, reader, contributor,
admin, and a run's token (scoped to run ``in_1``) changing runs inside and outside its
tree. Missing, wrong, revoked and expired tokens are 401 with a message saying which; a
role too low is 403 naming the role needed; anything else gets through auth (2xx).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from runyard.records import NewRun, SeriesAppend
from runyard.store import wire
from tests.live_server import serve_workspace

_counter = itertools.count()


def _unique() -> str:
    return f"n{next(_counter)}"


@dataclass(frozen=True)
class Route:
    group: str
    method: str
    path: str  # {run} is the run changed or read, {eid} the experiment
    role: str  # the least role that may call it
    body: Callable[[str], Any] | None = None  # (run) -> JSON body, or bytes
    content_type: str | None = None
    run_change: bool = False  # a run's token may do this only inside its run tree


BATCH = wire.encode_batch([SeriesAppend("loss", "scalar", [0], [0.5], [1.0])])
ROUTES = [
    Route("experiments read", "GET", "/api/v1/experiments", "reader"),
    Route("experiments read", "GET", "/api/v1/experiments/{eid}", "reader"),
    Route("experiments write", "POST", "/api/v1/experiments", "contributor",
          lambda run: {"name": "e" + _unique()}),
    Route("experiments write", "PATCH", "/api/v1/experiments/{eid}/tags", "contributor",
          lambda run: {"set": {"k": "v"}}),
    Route("runs read", "GET", "/api/v1/runs/{run}", "reader"),
    Route("runs read", "POST", "/api/v1/runs/search", "reader", lambda run: {}),
    Route("runs read", "GET", "/api/v1/supervised-runs?late_after=10", "reader"),
    Route("runs write", "POST", "/api/v1/experiments/{eid}/runs", "contributor",
          lambda run: {"runs": [{"id": "r" + _unique(), "parent_id": run}]}, run_change=True),
    Route("runs write", "PATCH", "/api/v1/runs/{run}", "contributor",
          lambda run: {"description": "d"}, run_change=True),
    Route("runs write", "PATCH", "/api/v1/runs/{run}/tags", "contributor",
          lambda run: {"set": {"k": "v"}}, run_change=True),
    Route("runs write", "POST", "/api/v1/runs/{run}/properties", "contributor",
          lambda run: {"properties": {"p" + _unique(): "v"}}, run_change=True),
    Route("runs status", "POST", "/api/v1/runs/{run}/status", "contributor",
          lambda run: {"status": "Running"}, run_change=True),
    Route("runs heartbeat", "POST", "/api/v1/runs/{run}/heartbeat", "contributor",
          lambda run: {}, run_change=True),
    Route("metrics write", "POST", "/api/v1/runs/{run}/metrics", "contributor",
          lambda run: BATCH, wire.BATCH_TYPE, run_change=True),
    Route("metrics read", "POST", "/api/v1/series", "reader", lambda run: {"run_ids": [run]}),
    Route("metrics read", "POST", "/api/v1/histories", "reader",
          lambda run: {"run_ids": [run]}),
    Route("files upload", "PUT", "/api/v1/runs/{run}/files/f{unique}.txt", "contributor",
          lambda run: b"bytes", "application/octet-stream", run_change=True),
    Route("files upload", "POST", "/api/v1/runs/{run}/logs/logs/out.txt?offset=-1",
          "contributor", lambda run: b"", "application/octet-stream", run_change=True),
    Route("files download", "GET", "/api/v1/runs/{run}/files/a.txt", "reader"),
    Route("files download", "GET", "/api/v1/runs/{run}/artifacts", "reader"),
    Route("events", "GET", "/api/v1/runs/{run}/events", "reader"),
    Route("run token", "POST", "/api/v1/runs/{run}/token", "contributor", run_change=True),
    Route("whoami", "GET", "/api/v1/whoami", "reader"),
    Route("tokens admin", "GET", "/api/v1/tokens", "admin"),
    Route("tokens admin", "POST", "/api/v1/tokens", "admin",
          lambda run: {"name": "t" + _unique(), "role": "reader"}),
    Route("tokens admin", "DELETE", "/api/v1/tokens/victim{unique}", "admin"),
    Route("archive admin", "POST", "/api/v1/experiments/{arch}/archive", "admin"),
    Route("archive admin", "POST", "/api/v1/experiments/{arch}/reactivate", "admin"),
]  # fmt: skip

CALLERS = [
    "none", "wrong", "revoked", "expired", "reader", "contributor", "admin",
    "run-inside", "run-outside",
]  # fmt: skip
UNAUTHENTICATED = {
    "none": "needs a token",
    "wrong": "not known to this runyard server",
    "revoked": "was revoked",
    "expired": "expired at",
}


@dataclass
class Server:
    url: str
    store: Any
    secrets: dict[str, str]
    eid: str
    arch: str

    def call(
        self, method: str, path: str, body: Any = None, *, token: str | None = None,
        content_type: str | None = None,
    ) -> tuple[int, Any]:  # fmt: skip
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        kwargs: dict[str, Any] = {}
        if isinstance(body, bytes):
            kwargs["content"] = body
            headers["Content-Type"] = content_type or "application/octet-stream"
        elif body is not None:
            kwargs["json"] = body
        with httpx.stream(
            method, self.url + path, headers=headers, timeout=20, **kwargs
        ) as response:
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                return response.status_code, None  # a live stream: its status is enough
            response.read()
            try:
                return response.status_code, response.json()
            except ValueError:
                return response.status_code, None


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("auth")
    with serve_workspace(str(root / "ws"), auth=True) as (url, store):
        secrets = {}
        for role in ("reader", "contributor", "admin"):
            _, secrets[role] = store.create_token(role + "-1", role)
        _, secrets["revoked"] = store.create_token("gone", "admin")
        store.revoke_token("gone")
        _, secrets["expired"] = store.create_token("old", "admin", expires=time.time() + 0.5)
        secrets["wrong"] = "ry_" + "x" * 43
        exp = store.get_or_create_experiment("exp")
        arch = store.get_or_create_experiment("arch")
        store.create_runs(exp.id, [NewRun(id="in_1"), NewRun(id="out_1")])
        store.create_runs(exp.id, [NewRun(id="in_2", parent_id="in_1")])
        _, secrets["run"] = store.create_token("run-in-1", "contributor", scope_run_id="in_1")
        served = Server(url, store, secrets, exp.id, arch.id)
        for run in ("in_2", "out_1"):
            status, _ = served.call(
                "PUT", f"/api/v1/runs/{run}/files/a.txt", b"abc", token=secrets["admin"]
            )
            assert status == 200
        time.sleep(max(0.0, store.get_token("old").expires - time.time()) + 0.05)
        yield served


def _token(server: Server, caller: str) -> str | None:
    if caller == "none":
        return None
    if caller.startswith("run-"):
        return server.secrets["run"]
    return server.secrets[caller]


def _expected(route: Route, caller: str) -> tuple[int, str | None]:
    """(status class, text the error message must hold): 200 means any 2xx."""
    if caller in UNAUTHENTICATED:
        return 401, UNAUTHENTICATED[caller]
    role = "contributor" if caller.startswith("run-") else caller
    order = ["reader", "contributor", "admin"]
    if order.index(role) < order.index(route.role):
        return 403, f"this request needs {route.role}"
    if caller == "run-outside" and route.run_change:
        return 403, "belongs to run in_1"
    return 200, None


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(
    "route", ROUTES, ids=[f"{r.group}:{r.method} {r.path.split('?')[0]}" for r in ROUTES]
)
def test_each_caller_against_each_route(server, route, caller):
    run = "out_1" if caller == "run-outside" else "in_2"
    unique = _unique()
    if route.path.startswith("/api/v1/tokens/victim"):
        server.store.create_token(f"victim{unique}", "reader")
    path = route.path.format(run=run, eid=server.eid, arch=server.arch, unique=unique)
    body = route.body(run) if route.body else None
    status, answer = server.call(
        route.method, path, body, token=_token(server, caller), content_type=route.content_type
    )
    expected, text = _expected(route, caller)
    if expected == 200:
        assert 200 <= status < 300, (status, answer)
        return
    assert status == expected, (status, answer)
    code = {401: "Unauthenticated", 403: "Forbidden"}[expected]
    assert answer["error"]["code"] == code, answer
    assert text in answer["error"]["message"], answer


def test_a_run_token_creates_runs_only_inside_its_tree(server):
    token = server.secrets["run"]
    path = f"/api/v1/experiments/{server.eid}/runs"
    status, answer = server.call("POST", path, {"runs": [{"id": "top_1"}]}, token=token)
    assert status == 403 and "not top-level runs" in answer["error"]["message"]
    status, answer = server.call(
        "POST", path, {"runs": [{"id": "deep_1", "parent_id": "in_2"}]}, token=token
    )
    assert status == 200 and answer[0]["root_id"] == "in_1"


def test_every_route_of_the_schema_needs_a_token(server):
    """Every operation the server documents, except the health check, is a 401 without a
    token: a router added without auth fails here."""
    assert httpx.get(server.url + "/api/openapi.json").status_code == 401  # the schema too
    reader = {"Authorization": f"Bearer {server.secrets['reader']}"}
    schema = httpx.get(server.url + "/api/openapi.json", headers=reader).json()
    checked = 0
    for path, operations in schema["paths"].items():
        for method in operations:
            if path == "/api/health" or (path, method) == ("/api/v1/session", "post"):
                continue  # signing in takes the token in its body (tested in test_studio_api)
            filled = path
            while "{" in filled:
                start, end = filled.index("{"), filled.index("}")
                filled = filled[:start] + "x1" + filled[end + 1 :]
            status, answer = server.call(method.upper(), filled)
            assert status == 401, (method, path, status, answer)
            assert "needs a token" in answer["error"]["message"]
            checked += 1
    assert checked >= 30
    status, answer = server.call("GET", "/api/health")
    assert status == 200 and answer["status"] == "ok"


def test_revocation_takes_effect_on_the_next_request(server):
    admin = server.secrets["admin"]
    status, created = server.call(
        "POST", "/api/v1/tokens", {"name": "short-lived", "role": "contributor"}, token=admin
    )
    assert status == 201
    secret = created["token"]
    assert server.call("GET", "/api/v1/whoami", token=secret) == (
        200, {"name": "short-lived", "role": "contributor", "scope_run_id": None},
    )  # fmt: skip
    status, _ = server.call("DELETE", "/api/v1/tokens/short-lived", token=admin)
    assert status == 200
    status, answer = server.call("GET", "/api/v1/whoami", token=secret)
    assert status == 401 and "'short-lived' was revoked" in answer["error"]["message"]


def test_a_run_records_who_submitted_it(server):
    _, alice = server.store.create_token("alice", "contributor")
    path = f"/api/v1/experiments/{server.eid}/runs"
    status, runs = server.call("POST", path, {"runs": [{"id": "alices_1"}]}, token=alice)
    assert status == 200 and runs[0]["submitted_by"] == "alice"
    status, run = server.call("GET", "/api/v1/runs/alices_1", token=server.secrets["reader"])
    assert run["submitted_by"] == "alice"
    # the run's own token (its script) submits children in alice's name
    status, minted = server.call("POST", "/api/v1/runs/alices_1/token", token=alice)
    assert status == 201
    status, runs = server.call(
        "POST", path, {"runs": [{"id": "alices_2", "parent_id": "alices_1"}]},
        token=minted["token"],
    )  # fmt: skip
    assert status == 200 and runs[0]["submitted_by"] == "alice"
    assert server.store.get_run("alices_2").submitted_by == "alice"
