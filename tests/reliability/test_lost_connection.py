"""A lost PostgreSQL connection never duplicates, loses or half-applies a write.

The connection is cut for real: by the server (``pg_terminate_backend``) or by a TCP proxy
between runyard and PostgreSQL that lets COMMIT through and then drops the connection
before the answer comes back, so the client cannot know whether the write was stored.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from runyard import Experiment, Workspace
from runyard._logging_buffer import flush_all
from runyard.errors import Conflict, StoreError
from runyard.records import NewRun, SeriesAppend
from runyard.store import open_store

pytestmark = pytest.mark.postgres


class DroppingProxy:
    """Forwards TCP to PostgreSQL; once armed, cuts the connection after a statement passes."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed_on: bytes | None = None
        self.deliver = True
        self.half_open = False
        self.hold_reply = 0.0
        self._held_until = 0.0
        self.cuts = 0
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def delay_reply(self, statement: bytes, seconds: float) -> None:
        """Pass ``statement`` on, and hold the server's answer back for ``seconds``."""
        self.hold_reply = seconds
        self.armed_on = statement

    def arm(self, statement: bytes, deliver: bool = True, half_open: bool = False) -> None:
        """Cut the next connection that sends ``statement``, after the server got it (or,
        with ``deliver=False``, instead of passing it on). ``half_open`` cuts the client's
        side only, as a network partition does: the server's session waits on."""
        self.armed_on = statement
        self.deliver = deliver
        self.half_open = half_open

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            self._pairs.append((client, server))
            cut = threading.Event()
            for src, dst, upstream in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._pipe, args=(src, dst, upstream, cut), daemon=True
                ).start()

    def _pipe(
        self, src: socket.socket, dst: socket.socket, upstream: bool, cut: threading.Event
    ) -> None:
        keep: socket.socket | None = None
        try:
            while data := src.recv(1 << 16):
                if cut.is_set():
                    return
                if not upstream and time.monotonic() < self._held_until:
                    time.sleep(self._held_until - time.monotonic())
                armed = upstream and self.armed_on is not None and self.armed_on in data
                if armed and self.hold_reply:
                    self.armed_on, self._held_until = None, time.monotonic() + self.hold_reply
                    self.hold_reply = 0.0
                    armed = False
                if armed:
                    self.armed_on = None
                    self.cuts += 1
                    cut.set()  # from now on, nothing the server says reaches the client
                if not armed or self.deliver:
                    dst.sendall(data)
                if armed:
                    time.sleep(0.3 if self.deliver else 0)  # the server executes it
                    keep = dst if self.half_open else None
                    for sock in (src, dst):
                        with contextlib.suppress(OSError):
                            if sock is not keep:
                                sock.shutdown(socket.SHUT_RDWR)
                    return
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    if sock is not keep:
                        sock.shutdown(socket.SHUT_RDWR)  # close() alone sends no FIN
                        sock.close()  # while the other direction's thread waits on it

    def close(self) -> None:
        self.listener.close()
        for pair in self._pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.close()


def _via(uri: str, port: int) -> str:
    parts = urlsplit(uri)
    netloc = parts.netloc.rsplit(":", 1)[0] if ":" in parts.netloc.split("@")[-1] else parts.netloc
    return urlunsplit(parts._replace(netloc=f"{netloc}:{port}"))


@pytest.fixture
def proxy(pg_uri):
    target = urlsplit(pg_uri).port or 5432
    proxy = DroppingProxy(target)
    yield proxy, _via(pg_uri, proxy.port)
    proxy.close()


def _series(values):
    return SeriesAppend("loss", "scalar", [None] * len(values), values, [time.time()] * len(values))


def test_connection_cut_after_commit_is_sent_stores_the_batch_once(proxy):
    proxy, uri = proxy
    store = open_store(uri)
    exp = store.get_or_create_experiment("cut")
    store.create_runs(exp.id, [NewRun(id="r")])
    store.log_batch("r", [_series([1.0])])
    proxy.arm(b"COMMIT")
    store.log_batch("r", [_series([2.0, 3.0])])  # committed, answer lost: not again
    assert proxy.cuts == 1
    assert store.get_history("r", "loss").values == [1.0, 2.0, 3.0]
    store.close()


def test_commit_lost_on_its_way_runs_the_write_again_once(proxy):
    """COMMIT never reaches the server: it rolls back, and the write runs again (the
    error is not raised although the connection that reported it has been replaced)."""
    proxy, uri = proxy
    store = open_store(uri)
    exp = store.get_or_create_experiment("cut")
    store.create_runs(exp.id, [NewRun(id="r")])
    store.log_batch("r", [_series([1.0])])
    proxy.arm(b"COMMIT", deliver=False)
    store.log_batch("r", [_series([2.0, 3.0])])
    assert proxy.cuts == 1
    assert store.get_history("r", "loss").values == [1.0, 2.0, 3.0]
    store.close()


def test_commit_lost_in_a_network_partition_ends_the_waiting_session(proxy, monkeypatch):
    """The client's side is cut before COMMIT arrives, the server's side stays open: the
    server's session would wait (holding its locks) for as long as TCP lets it. runyard
    ends that session, learns that the transaction was rolled back, and writes again."""
    from runyard.store.sql import database

    monkeypatch.setattr(database, "RETRY_SECONDS", 10.0)  # was: waited out, then failed
    proxy, uri = proxy
    store = open_store(uri)
    exp = store.get_or_create_experiment("cut")
    store.create_runs(exp.id, [NewRun(id="r")])
    proxy.arm(b"COMMIT", deliver=False, half_open=True)
    store.log_batch("r", [_series([1.0, 2.0])])
    assert proxy.cuts == 1
    assert store.get_history("r", "loss").values == [1.0, 2.0]
    store.close()


def test_connection_cut_before_commit_runs_the_write_again_once(proxy, pg_uri):
    proxy, uri = proxy
    store = open_store(uri)
    exp = store.get_or_create_experiment("cut")
    store.create_runs(exp.id, [NewRun(id="r")])
    proxy.arm(b"INSERT INTO metric_chunks")  # cut mid-transaction: the server rolls back
    store.log_batch("r", [_series([1.0, 2.0])])
    assert proxy.cuts == 1
    assert store.get_history("r", "loss").values == [1.0, 2.0]
    with psycopg.connect(pg_uri) as conn:  # nothing left half-open on the server
        idle = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'"
        ).fetchone()[0]
    assert idle == 0
    store.close()


def test_creating_a_run_over_a_cut_commit_creates_it_once(proxy):
    proxy, uri = proxy
    store = open_store(uri)
    exp = store.get_or_create_experiment("cut")
    proxy.arm(b"COMMIT")
    (record,) = store.create_runs(exp.id, [NewRun(id="once")])  # no Conflict with itself
    assert record.number == 1
    assert proxy.cuts == 1
    assert [r.id for r in store.search_runs(_query(exp.id))] == ["once"]
    store.close()


def _query(experiment_id):
    from runyard.records import RunQuery

    return RunQuery(experiment_id=experiment_id)


def test_backends_killed_while_logging_lose_and_duplicate_nothing(pg_uri, tmp_path):
    sep = "&" if "?" in pg_uri else "?"
    victim = f"{pg_uri}{sep}application_name=runyard_victim"
    ws = Workspace(victim, artifacts=str(tmp_path / "artifacts"))
    run = Experiment(ws, "killed").start_logging(snapshot_directory=None, outputs=False)
    stop = threading.Event()
    kills = 0

    def killer():
        nonlocal kills
        with psycopg.connect(pg_uri, autocommit=True) as conn:
            while not stop.wait(0.05):
                kills += conn.execute(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM "
                    "pg_stat_activity WHERE application_name = 'runyard_victim' "
                    "AND pid <> pg_backend_pid()) k"
                ).fetchone()[0]

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    logged = 0
    deadline = time.monotonic() + 3.0
    try:
        while time.monotonic() < deadline:
            for _ in range(2000):
                run.log("x", float(logged), step=logged)
                logged += 1
            with contextlib.suppress(Exception):  # a flush may give up; the points stay queued
                run.flush()
    finally:
        stop.set()
        thread.join()
    run.complete()
    assert kills > 5
    history = Workspace(pg_uri, artifacts=str(tmp_path / "artifacts")).get_run(run.id)
    steps = history.get_metric_history("x").steps
    assert len(steps) == logged
    assert steps == list(range(logged))


def test_a_lost_connection_while_sorting_out_a_refused_batch_keeps_the_other_points(
    proxy, tmp_path, monkeypatch
):
    """A batch refused for one series is written series by series; if the connection is
    lost then (and not recovered), the other series' points wait for the next flush."""
    from runyard.store.sql import database

    proxy, uri = proxy
    ws = Workspace(uri, artifacts=str(tmp_path / "artifacts"))
    first = Experiment(ws, "cut").start_logging(snapshot_directory=None, outputs=False)
    second = ws.get_run(first.id)
    first.log("x", 1.0)
    second.log_list("x", [1.0, 2.0])  # refused: x holds scalars
    second.log("y", 5.0)
    first.flush()
    monkeypatch.setattr(database, "LOST_CONNECTION_RETRIES", 0)
    proxy.arm(b"INSERT INTO metric_chunks")  # y's own write, after x was refused
    with (
        pytest.warns(RuntimeWarning, match="dropped 2 points of metric 'x'"),
        pytest.raises(Conflict, match="'x'"),  # the refusal is what the call reports
    ):
        second.flush()
    assert proxy.cuts == 1
    monkeypatch.setattr(database, "LOST_CONNECTION_RETRIES", 3)
    flush_all(second.id, raise_errors=False)  # the flusher thread's next round
    assert second.get_metrics() == {"x": 1.0, "y": 5.0}


def test_a_failed_upload_never_removes_the_bytes_of_the_writer_that_took_the_name(
    proxy, tmp_path, monkeypatch, pg_uri
):
    """Upload A places its bytes, its COMMIT is lost and rolled back; before A cleans up,
    upload B of the same name succeeds. A's cleanup must leave B's bytes (it deleted them:
    B's record then named a missing file)."""
    import io

    from runyard.store.sql import database

    proxy, uri = proxy
    artifacts = str(tmp_path / "artifacts")
    run_a = Experiment(Workspace(uri, artifacts=artifacts), "race").start_logging(
        snapshot_directory=None, outputs=False
    )
    run_b = Workspace(pg_uri, artifacts=artifacts).get_run(run_a.id)
    outcome = database.PostgresDatabase._outcome

    def rolled_back_then_b_wins(self, xid, backend):
        found = outcome(self, xid, backend)
        run_b.upload_file("outputs/model.bin", io.BytesIO(b"B" * 1000))
        return found

    monkeypatch.setattr(database.PostgresDatabase, "_outcome", rolled_back_then_b_wins)
    monkeypatch.setattr(database, "LOST_CONNECTION_RETRIES", 0)
    proxy.arm(b"COMMIT", deliver=False)
    with pytest.raises(StoreError):
        run_a.upload_file("outputs/model.bin", io.BytesIO(b"A" * 1000))
    assert proxy.cuts == 1
    with run_b._artifacts.open(run_b.id, "outputs/model.bin") as fh:
        assert fh.read() == b"B" * 1000


def test_ctrl_c_during_a_flush_commit_stays_ctrl_c_and_never_stores_twice(proxy, tmp_path):
    """Ctrl-C while a flush's COMMIT is on its way: the interrupt reaches the user as
    KeyboardInterrupt (it became a RunyardError), and points whose COMMIT went through are
    not kept to be written again (the next flush stored them a second time)."""
    import os
    import signal

    proxy, uri = proxy
    ws = Workspace(uri, artifacts=str(tmp_path / "artifacts"))
    run = Experiment(ws, "ctrl-c").start_logging(snapshot_directory=None, outputs=False)
    run.log("x", 1.0)
    run.flush()
    run.log("x", 2.0)
    proxy.delay_reply(b"COMMIT", 1.0)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run.flush()
    finally:
        timer.join()
    run.flush()
    assert run.get_metric_history("x").values == [1.0, 2.0]
