"""A server whose clock is wrong decides as every other server of its database does.

Several ``runyard serve`` processes on several machines share one database; their clocks
differ by whatever NTP left (or by hours, on a machine that lost its time). Token expiry,
a run token's end and a silent run's end go by the database's clock, so they do not
depend on which server a request reaches. Here the process's own clock is set hours off
(``time.time`` of this process); the database keeps the true time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from runyard.records import NewRun
from runyard.server.app import ServerSettings, create_app
from runyard.store import open_workspace

TRUE_TIME = time.time
HOURS = 3600.0


@pytest.fixture
def served(ws_uri) -> Iterator[tuple[TestClient, object]]:
    uri, artifacts = ws_uri
    opened = open_workspace(uri, artifacts)
    app = create_app(opened.store, opened.artifacts, ServerSettings(auth=True))
    try:
        with TestClient(app) as client:
            yield client, opened.store
    finally:
        opened.store.close()


def _clock_off_by(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    monkeypatch.setattr(time, "time", lambda: TRUE_TIME() + seconds)


def _whoami(client: TestClient, secret: str) -> tuple[int, str]:
    answer = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"})
    return answer.status_code, answer.text


def test_a_server_whose_clock_runs_ahead_still_takes_a_token_that_has_not_expired(
    served, monkeypatch
):
    client, store = served
    _, secret = store.create_token("for-an-hour", "reader", expires=TRUE_TIME() + HOURS)
    _clock_off_by(monkeypatch, 2 * HOURS)  # this server's clock: two hours ahead
    assert _whoami(client, secret)[0] == 200
    _, admin = store.create_token("admin", "admin")
    listed = client.get("/api/v1/tokens", headers={"Authorization": f"Bearer {admin}"}).json()
    assert {t["name"]: t["state"] for t in listed}["for-an-hour"] == "active"


def test_a_server_whose_clock_runs_behind_refuses_a_token_that_has_expired(served, monkeypatch):
    client, store = served
    _, secret = store.create_token("brief", "reader", expires=TRUE_TIME() + 0.3)
    time.sleep(0.5)
    _clock_off_by(monkeypatch, -2 * HOURS)  # two hours behind: the token looks young
    status, text = _whoami(client, secret)
    assert status == 401 and "expired" in text


def test_tokens_a_skewed_server_creates_expire_by_the_databases_clock(served, monkeypatch):
    client, store = served
    _, admin = store.create_token("admin", "admin")
    run = store.create_runs(store.get_or_create_experiment("e").id, [NewRun("r1")])[0]
    _clock_off_by(monkeypatch, -2 * HOURS)
    auth = {"Authorization": f"Bearer {admin}"}
    day = {"name": "day", "role": "reader", "expires_in_seconds": 86400}
    made = client.post("/api/v1/tokens", json=day, headers=auth)
    assert made.status_code == 201, made.text
    assert made.json()["expires"] == pytest.approx(TRUE_TIME() + 86400, abs=60)
    minted = client.post(f"/api/v1/runs/{run.id}/token", headers=auth)
    assert minted.status_code == 201, minted.text
    assert minted.json()["expires"] == pytest.approx(TRUE_TIME() + 30 * 86400, abs=60)


def test_a_run_token_ends_an_hour_after_its_run_by_the_databases_clock(served, monkeypatch):
    client, store = served
    run = store.create_runs(store.get_or_create_experiment("e").id, [NewRun("r1")])[0]
    secret = store.create_run_token(run.id, "alice")
    store.set_status(run.id, "Completed")
    _clock_off_by(monkeypatch, 2 * HOURS)  # the run looks ended two hours ago
    assert _whoami(client, secret)[0] == 200


def test_a_silent_run_failed_by_a_server_behind_in_time_ends_after_its_last_heartbeat(
    served, monkeypatch
):
    _, store = served
    run = store.create_runs(store.get_or_create_experiment("e").id, [NewRun("r1")])[0]
    store.set_status(run.id, "Running")
    store.heartbeat(run.id, supervisor="0123456789ab-4242-elsewhere")
    time.sleep(0.3)
    _clock_off_by(monkeypatch, -2 * HOURS)
    assert store.expire_silent_runs(0.05, 0.1) == 1
    failed = store.get_run(run.id)
    assert failed.status == "Failed"
    assert failed.end is not None and failed.heartbeat is not None
    assert failed.end >= failed.heartbeat
