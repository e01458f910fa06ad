"""A hostile caller against a real server: each test is an attack that once got through.

Run tokens reaching outside their run tree, readers refused their reads, event streams
outliving their token's revocation, bodies that crashed the server, errors naming the
server's database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.live_server import serve_workspace

from runyard import Experiment, Workspace
from runyard.records import NewRun, RunQuery
from runyard.server.api import events


class Served:
    def __init__(self, url: str, store: Any, root: str) -> None:
        self.url = url
        self.store = store
        self.root = root
        self.secrets: dict[str, str] = {}
        for role in ("reader", "contributor", "admin"):
            _, self.secrets[role] = store.create_token(f"the-{role}", role)
        self.eid = store.get_or_create_experiment("attacks").id

    def call(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def run_token(self, run_id: str) -> str:
        answer = self.call("POST", f"/api/v1/runs/{run_id}/token", self.secrets["contributor"])
        assert answer.status_code == 201, answer.text
        token: str = answer.json()["token"]
        return token


@pytest.fixture
def served(tmp_path) -> Iterator[Served]:
    root = str(tmp_path / "ws")
    with serve_workspace(root, auth=True, public_url="https://runyard.example") as (url, store):
        yield Served(url, store, root)


def _silent_elsewhere(store: Any, run_id: str) -> None:
    """``run_id`` becomes a supervised run of another machine that stopped beating."""
    store.heartbeat(run_id, "Running", supervisor="elsewhere-4242-1")


def test_a_run_token_cannot_fail_other_runs_through_expire_silent(served):
    store = served.store
    store.create_runs(served.eid, [NewRun(id="mine"), NewRun(id="theirs")])
    _silent_elsewhere(store, "theirs")
    token = served.run_token("mine")
    time.sleep(0.05)
    body = {"not_responding_after": 0.001, "fail_after": 0.002}
    for _ in range(2):
        answer = served.call("POST", "/api/v1/runs/expire-silent", token, json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"expired": 0}
    assert store.get_run("theirs").status == "Running"
    # a contributor who may change every run is asked as before
    answer = served.call("POST", "/api/v1/runs/expire-silent", served.secrets["admin"], json=body)
    assert answer.json() == {"expired": 1}


def test_a_reader_reads_runs_while_a_supervised_run_is_late(served, monkeypatch, tmp_path):
    store = served.store
    store.create_runs(served.eid, [NewRun(id="late")])
    _silent_elsewhere(store, "late")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNYARD_TOKEN", served.secrets["reader"])
    monkeypatch.setenv("RUNYARD_NOT_RESPONDING_SECONDS", "0.05")
    time.sleep(0.2)
    workspace = Workspace(served.url)
    try:
        # (this server shares the test's environment: its own rule says NotResponding too)
        assert workspace.get_run("late").get_status() == "NotResponding"
        experiment = Experiment(workspace, "attacks", _create_in_cloud=False)
        assert [r.id for r in experiment.get_runs()] == ["late"]
    finally:
        workspace._store.close()


def test_an_open_event_stream_ends_when_its_token_is_revoked(served, monkeypatch):
    monkeypatch.setattr(events, "AUTH_CHECK_SECONDS", 0.3)
    store = served.store
    store.create_runs(served.eid, [NewRun(id="watched")])
    _, secret = store.create_token("watcher", "reader")
    lines: list[str] = []
    done = threading.Event()

    def follow() -> None:
        headers = {"Authorization": f"Bearer {secret}"}
        url = served.url + "/api/v1/runs/watched/events"
        try:
            with httpx.stream("GET", url, headers=headers, timeout=30) as response:
                for line in response.iter_lines():
                    lines.append(line)
        finally:
            done.set()

    threading.Thread(target=follow, daemon=True).start()
    deadline = time.monotonic() + 10
    while not lines and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lines and lines[0] == "event: status"
    store.revoke_token("watcher")
    assert done.wait(5), "the stream of a revoked token went on"
    seen = len(lines)
    store.update_run("watched", description="after the revocation")
    time.sleep(0.3)
    assert len(lines) == seen
    assert not any("after the revocation" in line for line in lines)


@pytest.mark.parametrize("depth", [300, 900])
def test_deeply_nested_json_is_a_400_not_a_500(served, depth):
    admin = served.secrets["admin"]
    nested = "[" * depth + "]" * depth
    body = '{"runs": [{"id": "deep", "run_definition": {"a": ' + nested + "}}]}"
    answer = served.call(
        "POST", f"/api/v1/experiments/{served.eid}/runs", admin,
        content=body, headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert answer.status_code == 400, answer.text
    assert "nested more than" in answer.json()["error"]["message"]
    served.store.create_runs(served.eid, [NewRun(id="r")])
    for path, method, payload in (
        ("/api/v1/runs/r", "PATCH", '{"error": {"a": ' + nested + "}}"),
        ("/api/v1/runs/r/status", "POST", '{"status": "Failed", "error": {"a": ' + nested + "}}"),
    ):
        answer = served.call(
            method, path, admin, content=payload, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 400, answer.text
    assert served.store.get_run("r").status == "Running"  # nothing half-done


@pytest.mark.parametrize("number", ["1" + "0" * 30, "-99999999999999999999"])
def test_a_huge_page_marker_is_a_400_that_names_no_database_path(served, number):
    answer = served.call(
        "POST", "/api/v1/runs/search", served.secrets["reader"],
        content='{"after": [1.0, ' + number + "]}", headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert answer.status_code == 400, answer.text
    assert served.root not in answer.text


def test_database_errors_name_the_public_url_not_the_database(served):
    from runyard.errors import StoreError

    database = served.store.db
    with pytest.raises(StoreError) as caught:
        database.read("SELECT * FROM no_such_table")
    assert served.root not in str(caught.value)
    assert "https://runyard.example" in str(caught.value)


def test_a_reader_opens_an_existing_experiment_but_cannot_make_one(served, monkeypatch):
    monkeypatch.setenv("RUNYARD_TOKEN", served.secrets["reader"])
    ws = Workspace(served.url)
    assert Experiment(ws, "attacks").id == served.eid  # was: Forbidden (get-or-create)
    from runyard.errors import Forbidden

    with pytest.raises(Forbidden, match="needs contributor"):
        Experiment(ws, "brand-new")
    assert served.store.find_experiment("brand-new") is None


def test_a_run_token_makes_descendants_but_nothing_outside_its_tree(served):
    served.store.create_runs(served.eid, [NewRun(id="mine")])
    token = served.run_token("mine")
    path = f"/api/v1/experiments/{served.eid}/runs"
    for kid, parent in (("kid", "mine"), ("grandkid", "kid")):
        answer = served.call("POST", path, token, json={"runs": [{"id": kid, "parent_id": parent}]})
        assert answer.status_code == 200, answer.text
    assert served.store.get_run("grandkid").root_id == "mine"
    for runs in (
        [{"id": "top"}],  # a top-level run
        [{"id": "a", "parent_id": "b"}, {"id": "b", "parent_id": "a"}],  # a loop
        [{"id": "c", "parent_id": "d"}, {"id": "d"}],  # a new top-level run as its parent
    ):
        answer = served.call("POST", path, token, json={"runs": runs})
        assert answer.status_code in (403, 404), answer.text
    assert [r.id for r in served.store.search_runs(RunQuery(top_level_only=True))] == ["mine"]
    assert len(served.store.search_runs(RunQuery())) == 3


@pytest.mark.parametrize("where", ["create", "status", "heartbeat", "only_from"])
def test_a_status_that_is_not_one_is_refused(served, where):
    """A run in a made-up status never ends: every wait for it would hang."""
    served.store.create_runs(served.eid, [NewRun(id="victim")])
    admin = served.secrets["admin"]
    calls = {
        "create": ("POST", f"/api/v1/experiments/{served.eid}/runs",
                   {"runs": [{"id": "other", "status": "Pwned"}]}),
        "status": ("POST", "/api/v1/runs/victim/status", {"status": "Pwned"}),
        "heartbeat": ("POST", "/api/v1/runs/victim/heartbeat", {"status": "Pwned"}),
        "only_from": ("POST", "/api/v1/runs/victim/status",
                      {"status": "Completed", "only_from": ["Pwned"]}),
    }  # fmt: skip
    method, path, body = calls[where]
    answer = served.call(method, path, admin, json=body)
    assert answer.status_code == 400 and "unknown status 'Pwned'" in answer.text
    assert served.store.get_run("victim").status == "Running"
    assert [r.id for r in served.store.search_runs(RunQuery())] == ["victim"]
