"""Three ``runyard serve`` processes on one PostgreSQL database and one artifact store,
as behind a load balancer: each request of a user may reach any of them.

A run created through one server is logged to through another and read through a third;
a batch retried against another server is stored once; heartbeat expiry, token
revocation, studio sessions, event streams and the studio's sampled series agree
whichever server answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from runyard import Experiment, Workspace
from runyard.errors import Unauthenticated
from runyard.records import NewRun, SeriesAppend
from runyard.store.rest import RestStore
from tests.conftest import pg_schema_uri
from tests.reliability.test_server_faults import ServeProcess, clean_env, free_port
from tests.s3_server import start_moto
from tests.s3_server import stop as stop_moto

pytestmark = pytest.mark.postgres

NOT_RESPONDING_SECONDS = 1.0
FAILED_SECONDS = 4.0
LIVENESS = {
    "RUNYARD_HEARTBEAT_SECONDS": "0.2",
    "RUNYARD_NOT_RESPONDING_SECONDS": str(NOT_RESPONDING_SECONDS),
    "RUNYARD_FAILED_SECONDS": str(FAILED_SECONDS),
}
ELSEWHERE = "0123456789ab-4242-started"  # a supervisor on a machine none of them is on
PROXIED_HOST = "runyard.example"  # the Host a load balancer passes to every server


class Servers:
    """The running servers, the admin token one of them printed, the artifact folder."""

    def __init__(self, servers: list[ServeProcess], token: str, artifacts: str) -> None:
        self.servers = servers
        self.urls = [s.url for s in servers]
        self.token = token
        self.artifacts = artifacts

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}


@pytest.fixture(scope="module", params=["shared-folder", "bucket"])
def servers(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Servers]:
    """Three servers (the second with two workers) started at once on one fresh schema,
    their files in one shared folder or in one bucket of a real S3-protocol server."""
    with contextlib.ExitStack() as stack:
        env = clean_env(**LIVENESS)
        if request.param == "bucket":
            s3 = start_moto()
            stack.callback(stop_moto, s3)
            artifacts = f"s3://{s3.new_bucket()}/team/runyard"
            env.update(s3.env(), AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
            for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
                env.pop(name, None)
        else:
            artifacts = str(tmp_path_factory.mktemp("artifacts"))
        uri = stack.enter_context(contextlib.contextmanager(pg_schema_uri)())
        started = [
            ServeProcess(uri, free_port(), "--artifacts", artifacts, env=env),
            ServeProcess(uri, free_port(), "--artifacts", artifacts, "--workers", "2", env=env),
            ServeProcess(uri, free_port(), "--artifacts", artifacts, env=env),
        ]
        for server in started:
            stack.callback(server.kill)
        threads = [threading.Thread(target=s.start, kwargs={"timeout": 60}) for s in started]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for server in started:  # a start that failed says why
            assert server.proc is not None and server.proc.poll() is None, server.text
            _wait_answers(server.url)
        tokens = [t for t in (s.token() for s in started) if t]
        assert len(tokens) == 1, [s.text for s in started]  # one admin token, made once
        yield Servers(started, tokens[0], artifacts)


def _wait_answers(url: str) -> None:
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/api/health", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, url
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def _as_a_user(servers: Servers, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("RUNYARD_TOKEN", servers.token)
    monkeypatch.setenv("RUNYARD_SPOOL_DIR", str(tmp_path / "spool"))
    for name, value in LIVENESS.items():  # the SDK applies the same rule as the servers
        monkeypatch.setenv(name, value)
    for name in ("RUNYARD_URI", "RUNYARD_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_a_run_created_through_one_is_logged_through_another_and_read_through_a_third(
    servers, tmp_path
):
    one, two, three = (Workspace(url) for url in servers.urls)
    created = Experiment(one, "several").start_logging(snapshot_directory=None, outputs=False)

    run = two.get_run(created.id)
    for i in range(500):
        run.log("loss", 1 / (i + 1), step=i)
    run.log_list("sizes", [1, 2, 3])
    run.set_tags({"team": "vision"})
    run.add_properties({"seed": "7"})
    (tmp_path / "notes.txt").write_text("written through the second server")
    run.upload_file("outputs/notes.txt", str(tmp_path / "notes.txt"))
    child = run.child_run("part")
    child.log("part", 1.0)
    child.complete()
    run.flush()

    seen = three.get_run(created.id)
    metrics = seen.get_metrics()
    assert metrics["loss"] == [1 / (i + 1) for i in range(500)]
    assert metrics["sizes"] == [1, 2, 3]
    assert seen.get_tags()["team"] == "vision" and seen.get_properties()["seed"] == "7"
    assert "outputs/notes.txt" in seen.get_file_names()
    seen.download_file("outputs/notes.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_text() == "written through the second server"
    assert [c.id for c in seen.get_children()] == [child.id]

    run.complete()
    for ws in (one, two, three):
        assert ws.get_run(created.id).get_status() == "Completed"
    found = Experiment(three, "several").get_runs(tags={"team": "vision"})
    assert [r.id for r in found] == [created.id]


def _batch(values: list[float]) -> list[SeriesAppend]:
    now = time.time()
    steps = list(range(len(values)))
    return [SeriesAppend("retried", "scalar", steps, values, [now] * len(values))]


def test_a_batch_retried_against_another_server_is_stored_once(servers):
    stores = [RestStore(url, servers.token) for url in servers.urls]
    try:
        experiment = stores[0].get_or_create_experiment("batches")
        run_id = f"batch_{uuid.uuid4().hex[:8]}"
        stores[0].create_runs(experiment.id, [NewRun(run_id)])

        key = uuid.uuid4().hex
        assert stores[1].log_batch(run_id, _batch([1.0, 2.0]), key=key) is True
        assert stores[2].log_batch(run_id, _batch([1.0, 2.0]), key=key) is False  # the retry
        assert stores[0].log_batch(run_id, _batch([1.0, 2.0]), key=key) is False

        # the same key sent to all three at once (each to its own server): stored once
        racing = uuid.uuid4().hex

        def send(store: RestStore) -> bool:
            return store.log_batch(run_id, _batch([3.0]), key=racing)

        with ThreadPoolExecutor(6) as pool:
            stored = list(pool.map(send, stores * 2))
        assert sorted(stored) == [False] * 5 + [True]
        assert list(stores[2].get_history(run_id, "retried").values) == [1.0, 2.0, 3.0]
    finally:
        for store in stores:
            store.close()


def test_heartbeat_expiry_is_the_same_through_every_server(servers):
    stores = [RestStore(url, servers.token) for url in servers.urls]
    try:
        experiment = stores[0].get_or_create_experiment("liveness")
        run_id = f"beat_{uuid.uuid4().hex[:8]}"
        stores[0].create_runs(experiment.id, [NewRun(run_id, heartbeat=True)])
        stores[1].heartbeat(run_id, "Running", supervisor=ELSEWHERE)
        assert {s.get_run(run_id).status for s in stores} == {"Running"}

        time.sleep(NOT_RESPONDING_SECONDS + 0.5)  # silent: whichever server is asked says so
        assert [s.get_run(run_id).status for s in reversed(stores)] == ["NotResponding"] * 3

        stores[2].heartbeat(run_id, "Running")  # it beats again, through another server
        assert [s.get_run(run_id).status for s in stores] == ["Running"] * 3

        time.sleep(FAILED_SECONDS + 0.5)
        ends = [stores[1].get_run(run_id)] + [s.get_run(run_id) for s in (stores[0], stores[2])]
        assert {r.status for r in ends} == {"Failed"}
        assert len({(r.end, json.dumps(r.error, sort_keys=True)) for r in ends}) == 1
        assert ends[0].end is not None and ends[0].heartbeat is not None
        assert ends[0].end >= ends[0].heartbeat
    finally:
        for store in stores:
            store.close()


def test_a_token_revoked_through_one_server_is_refused_by_every_other_at_once(servers):
    one, two, three = servers.urls
    made = httpx.post(f"{one}/api/v1/tokens", json={"name": f"alice-{uuid.uuid4().hex[:6]}",
                      "role": "contributor"}, headers=servers.auth())  # fmt: skip
    assert made.status_code == 201, made.text
    name, secret = made.json()["name"], made.json()["token"]
    store = RestStore(one, secret)
    try:
        experiment = store.get_or_create_experiment("revoked")
        run = store.create_runs(experiment.id, [NewRun(f"rev_{uuid.uuid4().hex[:8]}")])[0]
    finally:
        store.close()
    minted = httpx.post(f"{two}/api/v1/runs/{run.id}/token", headers=servers.auth(secret))
    assert minted.status_code == 201, minted.text
    run_secret = minted.json()["token"]
    for url in servers.urls:
        assert httpx.get(f"{url}/api/v1/whoami", headers=servers.auth(secret)).status_code == 200

    # a stream opened with the token on the third server, before the revocation
    ended = threading.Event()

    def follow() -> None:
        with httpx.stream("GET", f"{three}/api/v1/runs/{run.id}/events",
                          headers=servers.auth(secret), timeout=30) as answer:  # fmt: skip
            for _ in answer.iter_lines():
                pass
        ended.set()

    streaming = threading.Thread(target=follow, daemon=True)
    streaming.start()
    time.sleep(0.5)

    revoked = httpx.delete(f"{two}/api/v1/tokens/{name}", headers=servers.auth())
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    for url in (one, three, two, two, two):  # every server, both workers of the second
        for token in (secret, run_secret):
            answer = httpx.get(f"{url}/api/v1/whoami", headers=servers.auth(token))
            assert answer.status_code == 401, (url, answer.text)
            assert "revoked" in answer.json()["error"]["message"]
    with pytest.raises(Unauthenticated, match="revoked"):
        RestStore(three, secret).get_run(run.id)
    # the open stream stops within the documented bound (its token is checked every 5 s)
    assert ended.wait(10), "the event stream of a revoked token went on"


def test_a_studio_session_signed_in_on_one_server_works_on_another(servers):
    one, two, three = servers.urls
    proxied = {"Host": PROXIED_HOST}  # what a load balancer passes to each server
    signed = httpx.post(f"{one}/api/v1/session", json={"token": servers.token}, headers=proxied)
    assert signed.status_code == 200, signed.text
    cookies = dict(signed.cookies)
    assert set(cookies) == {"runyard_session", "runyard_csrf"}
    read = httpx.get(f"{two}/api/v1/whoami", headers=proxied, cookies=cookies)
    assert read.status_code == 200 and read.json()["role"] == "admin", read.text

    store = RestStore(one, servers.token)
    try:
        experiment = store.get_or_create_experiment("studio")
        run = store.create_runs(experiment.id, [NewRun(f"st_{uuid.uuid4().hex[:8]}")])[0]
    finally:
        store.close()
    change = {"set": {"from": "the studio"}}
    csrf = {
        **proxied,
        "X-Runyard-CSRF": cookies["runyard_csrf"],
        "Origin": f"http://{PROXIED_HOST}",
    }
    tagged = httpx.patch(f"{three}/api/v1/runs/{run.id}/tags", json=change, headers=csrf,
                         cookies=cookies)  # fmt: skip
    assert tagged.status_code == 200, tagged.text
    forged = httpx.patch(f"{three}/api/v1/runs/{run.id}/tags", json=change, headers=proxied,
                         cookies=cookies)  # fmt: skip
    assert forged.status_code == 403  # a session needs its CSRF header on every server


def _events(url: str, run_id: str, token: str, into: list[tuple[str, Any]]) -> None:
    """Collect the events of a run's stream (with its std_log) until ``end``."""
    url = f"{url}/api/v1/runs/{run_id}/events"
    params = {"log": "user_logs/std_log.txt"}
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream("GET", url, params=params, headers=headers, timeout=60) as answer:
        kind = None
        for line in answer.iter_lines():
            if line.startswith("event: "):
                kind = line[len("event: ") :]
            elif line.startswith("data: ") and kind is not None:
                into.append((kind, json.loads(line[len("data: ") :])))
                if kind == "end":
                    return


def _wait_for(check: Any, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not seen in time"
        time.sleep(0.05)


def test_a_stream_on_one_server_sees_status_and_log_written_through_others(servers):
    import base64

    one, two, three = servers.urls
    store = RestStore(one, servers.token)
    try:
        experiment = store.get_or_create_experiment("streams")
        run = store.create_runs(experiment.id, [NewRun(f"sse_{uuid.uuid4().hex[:8]}",
                                                       status="NotStarted")])[0]  # fmt: skip
    finally:
        store.close()
    seen: list[tuple[str, Any]] = []
    following = threading.Thread(target=_events, args=(three, run.id, servers.token, seen))
    following.start()
    _wait_for(lambda: ("status", "NotStarted") in [(k, d.get("status")) for k, d in seen])

    def logged() -> bytes:
        return b"".join(base64.b64decode(d["b64"]) for k, d in seen if k == "log")

    log = f"{one}/api/v1/runs/{run.id}/logs/user_logs/std_log.txt"
    first = httpx.post(log, params={"offset": 0}, content=b"epoch 1\n", headers=servers.auth())
    assert first.status_code == 200, first.text
    started = httpx.post(f"{two}/api/v1/runs/{run.id}/status", json={"status": "Running"},
                         headers=servers.auth())  # fmt: skip
    assert started.status_code == 200, started.text
    _wait_for(lambda: logged() == b"epoch 1\n")
    _wait_for(lambda: ("status", "Running") in [(k, d.get("status")) for k, d in seen])

    # the same append retried through another server is not written twice
    again = httpx.post(f"{two}/api/v1/runs/{run.id}/logs/user_logs/std_log.txt",
                       params={"offset": 0}, content=b"epoch 1\nepoch 2\n",
                       headers=servers.auth())  # fmt: skip
    assert again.json()["size"] == len(b"epoch 1\nepoch 2\n")
    _wait_for(lambda: logged() == b"epoch 1\nepoch 2\n")
    done = httpx.post(f"{one}/api/v1/runs/{run.id}/status", json={"status": "Completed"},
                      headers=servers.auth())  # fmt: skip
    assert done.status_code == 200, done.text
    following.join(30)
    assert not following.is_alive()
    statuses = [d.get("status") for k, d in seen if k == "status"]
    assert statuses == ["NotStarted", "Running", "Completed"] and seen[-1][0] == "end"


def test_wait_for_completion_through_one_server_sees_a_run_completed_through_another(servers):
    one, two, _ = (Workspace(url) for url in servers.urls)
    run = Experiment(one, "waiting").start_logging(snapshot_directory=None, outputs=False)
    threading.Timer(1.0, lambda: two.get_run(run.id).complete()).start()
    details = one.get_run(run.id).wait_for_completion()
    assert details["status"] == "Completed"


def test_sampled_series_on_one_server_shows_points_appended_through_another(servers):
    one, two, three = servers.urls
    store = RestStore(one, servers.token)
    try:
        experiment = store.get_or_create_experiment("charts")
        run_id = store.create_runs(experiment.id, [NewRun(f"ch_{uuid.uuid4().hex[:8]}")])[0].id
    finally:
        store.close()
    writer = RestStore(two, servers.token)
    try:
        first = [SeriesAppend("acc", "scalar", range(100), [i / 100 for i in range(100)],
                              [time.time()] * 100)]  # fmt: skip
        writer.log_batch(run_id, first, key=uuid.uuid4().hex)
        sampled = f"{three}/api/v1/runs/{run_id}/series/sampled"
        before = httpx.get(sampled, params={"name": "acc", "width": 50}, headers=servers.auth())
        assert before.json()["total"] == 100 and max(before.json()["values"]) == 0.99

        more = [SeriesAppend("acc", "scalar", range(100, 150), [2.0] * 50, [time.time()] * 50)]
        writer.log_batch(run_id, more, key=uuid.uuid4().hex)
        after = httpx.get(sampled, params={"name": "acc", "width": 50}, headers=servers.auth())
        assert after.json()["total"] == 150 and max(after.json()["values"]) == 2.0
    finally:
        writer.close()
