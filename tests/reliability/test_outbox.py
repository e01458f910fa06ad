"""The outbox keeps metric batches while the server is down; nothing is lost or stored twice.

The server here is a folder (it works across processes): a batch is stored as a file named
by its idempotency key, created exclusively, so a key is stored once however often it is
sent; every send is logged, so duplicates sent are counted too. A file ``down`` in the
folder makes it unreachable. The HTTP part is tested elsewhere.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from runyard.errors import ServerUnreachable, UserError
from runyard.store import _outbox
from runyard.store._outbox import Outbox, default_spool_dir, memory_limit_setting, replay_spools

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FileServer:
    """A runyard server as far as batches go: stores each key once, in order of arrival."""

    def __init__(self, folder: str, delay: float = 0.0) -> None:
        self.folder = folder
        self.delay = delay
        os.makedirs(os.path.join(folder, "keys"), exist_ok=True)

    @property
    def down(self) -> bool:
        return os.path.exists(os.path.join(self.folder, "down"))

    @down.setter
    def down(self, value: bool) -> None:
        flag = os.path.join(self.folder, "down")
        if value:
            open(flag, "w").close()
        elif os.path.exists(flag):
            os.unlink(flag)

    def send(self, run_id: str, key: str, payload: bytes) -> None:
        if self.delay:
            time.sleep(self.delay)
        if self.down:
            raise ServerUnreachable("the test server is down")
        if payload.startswith(b"bad"):
            raise UserError(f"batch {payload!r} is refused")
        self._append("sends", key)
        try:
            fd = os.open(os.path.join(self.folder, "keys", key), os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return  # seen before: skipped, like the real server
        os.close(fd)
        self._append("stored", f"{key} {run_id} {payload.decode()}")

    def _append(self, name: str, line: str) -> None:
        fd = os.open(os.path.join(self.folder, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def _lines(self, name: str) -> list[str]:
        try:
            with open(os.path.join(self.folder, name)) as fh:
                return fh.read().splitlines()
        except FileNotFoundError:
            return []

    def stored(self) -> list[str]:
        """Payloads stored, in order; fails if a key was stored twice."""
        rows = [line.split(" ", 2) for line in self._lines("stored")]
        keys = [key for key, _run, _payload in rows]
        assert len(keys) == len(set(keys)), "a key was stored twice"
        return [payload for _key, _run, payload in rows]

    def duplicates(self) -> int:
        sends = self._lines("sends")
        return len(sends) - len(set(sends))


@pytest.fixture
def server(tmp_path) -> FileServer:
    return FileServer(str(tmp_path / "server"))


@pytest.fixture
def spool(tmp_path) -> str:
    return str(tmp_path / "spool")


def _make(server: FileServer, spool: str, **kwargs) -> Outbox:
    kwargs.setdefault("max_backoff", 0.05)
    return Outbox(server.send, spool, **kwargs)


def _spools(folder: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(folder) if n.endswith(".spool"))
    except FileNotFoundError:
        return []


def _wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _child(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_delivered_at_once_when_the_server_answers(server, spool):
    outbox = _make(server, spool)
    for i in range(5):
        outbox.put("r", f"p{i}".encode())
    assert outbox.pending() == 0
    assert server.stored() == [f"p{i}" for i in range(5)]
    assert not os.path.exists(spool)  # no spool made when none is needed
    outbox.close()


def test_order_kept_across_memory_spool_memory(server, spool):
    outbox = _make(server, spool, memory_limit=100)
    server.down = True
    sent = []

    def put(n: int) -> None:
        for _ in range(n):
            payload = f"p{len(sent):03d}" + "x" * 16  # 20 bytes
            sent.append(payload)
            outbox.put("r", payload.encode())

    put(5)  # 100 bytes: all in memory
    assert outbox.memory_bytes == 100 and not _spools(spool)
    put(1)  # over the bound: everything pending moves to the spool, in order
    assert outbox.memory_bytes == 0 and len(_spools(spool)) == 1
    put(10)  # the spool holds pending batches: new ones follow them there
    assert outbox.memory_bytes == 0 and outbox.pending() == 16
    server.down = False
    assert outbox.drain(20)
    assert server.stored() == sent
    assert not _spools(spool)  # delivered: deleted

    server.down = True
    put(3)  # memory again
    assert outbox.memory_bytes == 60 and not _spools(spool)
    server.down = False
    assert outbox.drain(20)
    assert server.stored() == sent and server.duplicates() == 0
    outbox.close()


def test_memory_bound_is_respected(server, spool):
    outbox = _make(server, spool, memory_limit=1000)
    server.down = True
    for i in range(3):
        outbox.put("r", b"%03d" % i + b"m" * 297)
        assert outbox.memory_bytes == 300 * (i + 1)
    assert not _spools(spool)
    for i in range(3, 30):
        outbox.put("r", b"%03d" % i + b"m" * 297)
        assert outbox.memory_bytes <= 1000
    (name,) = _spools(spool)
    assert os.path.getsize(os.path.join(spool, name)) > 30 * 300
    assert stat.S_IMODE(os.stat(spool).st_mode) == 0o700
    assert outbox.pending() == 30
    server.down = False
    assert outbox.drain(20)
    assert [p[:3] for p in server.stored()] == [f"{i:03d}" for i in range(30)]
    outbox.close()


def test_memory_limit_zero_spools_every_pending_batch(server, spool):
    outbox = _make(server, spool, memory_limit=0)
    server.down = True
    outbox.put("r", b"a")
    assert outbox.memory_bytes == 0 and len(_spools(spool)) == 1
    server.down = False
    assert outbox.drain(20) and server.stored() == ["a"]
    outbox.close()


def test_put_never_waits_for_the_network(tmp_path, spool):
    slow = FileServer(str(tmp_path / "server"), delay=0.3)  # a slow network, then no answer
    slow.down = True
    outbox = _make(slow, spool)
    started = time.monotonic()
    outbox.put("r", b"first")  # the direct attempt: one slow send
    assert 0.25 < time.monotonic() - started < 2.0
    longest = 0.0
    for i in range(50):
        started = time.monotonic()
        outbox.put("r", b"n%d" % i)
        longest = max(longest, time.monotonic() - started)
    assert longest < 0.1  # the sender is stuck in `send` meanwhile; put only appends
    assert outbox.pending() == 51
    assert not outbox.drain(0.5)
    slow.delay = 0.0
    slow.down = False
    assert outbox.drain(30)
    assert slow.stored() == ["first"] + [f"n{i}" for i in range(50)]
    outbox.close()


def test_threads_while_the_server_comes_and_goes(server, spool):
    outbox = _make(server, spool, memory_limit=2000)
    stop = threading.Event()

    def flap() -> None:
        while not stop.is_set():
            server.down = not server.down
            time.sleep(0.02)
        server.down = False

    def log(writer: int) -> None:
        for i in range(200):
            outbox.put(f"run{writer}", f"w{writer}-{i:04d}".encode())

    flapper = threading.Thread(target=flap)
    flapper.start()
    writers = [threading.Thread(target=log, args=(w,)) for w in range(4)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    flapper.join()
    assert outbox.drain(30)
    stored = server.stored()
    assert len(stored) == 800
    for w in range(4):  # each writer's batches in its order
        mine = [p for p in stored if p.startswith(f"w{w}-")]
        assert mine == [f"w{w}-{i:04d}" for i in range(200)]
    outbox.close()


CHILD = """
import sys, time
from tests.reliability.test_outbox import FileServer
from runyard.store._outbox import Outbox
server = FileServer(sys.argv[1])
outbox = Outbox(server.send, sys.argv[2], memory_limit=int(sys.argv[3]), max_backoff=0.05)
for i in range(int(sys.argv[4])):
    outbox.put("r", b"k%03d" % i)
if sys.argv[5] == "persist":
    outbox.persist()
print("ready", outbox.pending(), flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("where", ["spool", "persist"])
def test_batches_survive_sigkill_and_replay_stores_them_once(server, spool, where):
    server.down = True
    limit = "0" if where == "spool" else str(2**20)  # in the spool as put, or by persist()
    child = _child(CHILD, server.folder, spool, limit, "20", where)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().split() == ["ready", "20"]
        server.down = False
        assert replay_spools(spool, server.send, log=lambda _m: None) == (0, 0)  # it lives
        assert len(_spools(spool)) == 1
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    # the child, killed, never sent anything more: what it had pending is in the spool
    messages: list[str] = []
    assert replay_spools(spool, server.send, log=messages.append) == (1, 20)
    assert server.stored() == [f"k{i:03d}" for i in range(20)]
    assert not _spools(spool) and any("20 batches" in m for m in messages)
    assert replay_spools(spool, server.send) == (0, 0)


REPLAY_AND_DIE = """
import os, signal, sys
from tests.reliability.test_outbox import FileServer
from runyard.store._outbox import replay_spools
server = FileServer(sys.argv[1])
count = 0
def send(run_id, key, payload):
    global count
    server.send(run_id, key, payload)
    count += 1
    if count == int(sys.argv[3]):  # stored, but killed before the spool says so
        os.kill(os.getpid(), signal.SIGKILL)
replay_spools(sys.argv[2], send)
"""


def _dead_spool(server: FileServer, spool: str, n: int, prefix: str = "k") -> str:
    """A spool of ``n`` batches whose writer is done with it (closed, lock released)."""
    server.down = True
    outbox = _make(server, spool, memory_limit=0)
    for i in range(n):
        outbox.put("r", f"{prefix}{i:03d}".encode())
    path = outbox.spool_path
    assert path is not None
    outbox.close()
    server.down = False
    return path


def test_a_crash_mid_replay_neither_loses_nor_stores_twice(server, spool):
    _dead_spool(server, spool, 20)
    child = _child(REPLAY_AND_DIE, server.folder, spool, "8")
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert server.stored() == [f"k{i:03d}" for i in range(8)]
    assert replay_spools(spool, server.send, log=lambda _m: None) == (1, 13)
    assert server.stored() == [f"k{i:03d}" for i in range(20)]  # each key once, in order
    sends = server._lines("sends")
    assert len(sends) == 21 and server.duplicates() == 1  # only the one in flight again


def test_a_truncated_last_record_is_skipped_and_the_rest_kept(server, spool):
    path = _dead_spool(server, spool, 5)
    with open(path, "ab") as fh:  # the writer died in the middle of an append
        fh.write(_outbox.RECORD.pack(5000, 0) + b"partial")
    messages: list[str] = []
    assert replay_spools(spool, server.send, log=messages.append) == (1, 5)
    assert server.stored() == [f"k{i:03d}" for i in range(5)]
    assert any("cut short" in m for m in messages)
    assert not _spools(spool)


def test_replay_stops_when_the_server_goes_away_and_goes_on_later(server, spool):
    _dead_spool(server, spool, 6)
    stored = []

    def flaky(run_id: str, key: str, payload: bytes) -> None:
        if len(stored) == 3:
            raise ServerUnreachable("gone again")
        server.send(run_id, key, payload)
        stored.append(key)

    messages: list[str] = []
    with pytest.raises(ServerUnreachable):
        replay_spools(spool, flaky, log=messages.append)
    assert "next sync" in messages[-1] and len(_spools(spool)) == 1
    assert replay_spools(spool, server.send, log=lambda _m: None) == (1, 3)
    assert server.stored() == [f"k{i:03d}" for i in range(6)] and server.duplicates() == 0


def test_a_refused_batch_in_a_replay_goes_to_rejected(server, spool):
    server.down = True
    outbox = _make(server, spool, memory_limit=0)
    for payload in (b"k0", b"bad1", b"k2"):
        outbox.put("r", payload)
    outbox.close()
    server.down = False
    messages: list[str] = []
    assert replay_spools(spool, server.send, log=messages.append) == (1, 2)
    assert server.stored() == ["k0", "k2"]
    assert any("refused" in m and "rejected/" in m for m in messages)
    (rejected,) = os.listdir(os.path.join(spool, "rejected"))
    with open(os.path.join(spool, "rejected", rejected), "rb") as fh:
        assert b"bad1" in fh.read()


def test_a_refusal_of_the_direct_attempt_is_raised_and_the_batch_not_kept(server, spool):
    outbox = _make(server, spool)
    with pytest.raises(UserError, match="bad"):
        outbox.put("r", b"bad")
    assert outbox.pending() == 0
    outbox.put("r", b"good")
    assert outbox.drain(1) and server.stored() == ["good"]
    outbox.close()


def test_a_background_refusal_is_reported_once(server, spool):
    outbox = _make(server, spool)
    server.down = True
    for payload in (b"a", b"bad", b"b"):
        outbox.put("r1", payload)
    server.down = False
    with pytest.raises(UserError, match="bad"):
        outbox.drain(20)
    assert outbox.drain(20)  # once only
    assert server.stored() == ["a", "b"]

    server.down = True
    outbox.put("r1", b"bad2")
    server.down = False
    _wait_for(lambda: outbox.pending() == 0)
    outbox.put("r2", b"other")  # another run's batch: not its refusal
    with pytest.raises(UserError, match="bad2"):
        outbox.put("r1", b"c")  # raised before taking "c": the caller keeps it
    assert outbox.pending() == 0 and "c" not in server.stored()
    outbox.put("r1", b"c")
    assert outbox.drain(1)
    assert server.stored() == ["a", "b", "other", "c"]
    outbox.close()


def test_a_forked_child_starts_empty_and_the_parent_keeps_its_batches(server, spool):
    outbox = _make(server, spool, memory_limit=5)
    server.down = True
    for i in range(5):
        outbox.put("r", f"p{i}".encode())
    assert outbox.pending() == 5 and outbox.spool_path is not None
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            ok = outbox.pending() == 0 and outbox.spool_path is None
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.close(read)
    os.waitpid(pid, 0)
    # the child closed its copy of the spool file: the parent still holds the lock
    assert replay_spools(spool, server.send, log=lambda _m: None) == (0, 0)
    assert outbox.pending() == 5
    server.down = False
    assert outbox.drain(20)
    assert server.stored() == [f"p{i}" for i in range(5)] and server.duplicates() == 0
    outbox.close()


def test_close_leaves_the_pending_batches_to_replay(server, spool):
    outbox = _make(server, spool)  # all in memory
    server.down = True
    outbox.put("r", b"a")
    outbox.put("r", b"b")
    outbox.close()
    outbox.put("r", b"c")  # after close: spooled at once for the replay
    server.down = False
    assert replay_spools(spool, server.send, log=lambda _m: None) == (2, 3)
    assert server.stored() == ["a", "b", "c"]


EXIT_WHILE_DOWN = """
import sys
from tests.reliability.test_outbox import FileServer
from runyard.store._outbox import Outbox
server = FileServer(sys.argv[1])
outbox = Outbox(server.send, sys.argv[2], max_backoff=0.05)
for i in range(3):
    outbox.put("r", b"e%d" % i)
"""


def test_normal_exit_while_the_server_is_down_spools_what_is_pending(server, spool):
    server.down = True
    child = _child(EXIT_WHILE_DOWN, server.folder, spool)
    child.wait(60)
    assert child.returncode == 0
    server.down = False
    assert replay_spools(spool, server.send, log=lambda _m: None) == (1, 3)
    assert server.stored() == ["e0", "e1", "e2"]


@pytest.mark.parametrize("raw", ["abc", "-1", "inf", "nan", ""])
def test_a_bad_memory_setting_is_a_user_error_naming_it(monkeypatch, spool, raw):
    monkeypatch.setenv("RUNYARD_SPOOL_MEMORY_MB", raw)
    with pytest.raises(UserError, match="RUNYARD_SPOOL_MEMORY_MB"):
        Outbox(lambda *_a: None, spool)


def test_the_memory_setting(monkeypatch, spool):
    monkeypatch.delenv("RUNYARD_SPOOL_MEMORY_MB", raising=False)
    assert memory_limit_setting() == 64 * 2**20
    monkeypatch.setenv("RUNYARD_SPOOL_MEMORY_MB", "0.5")
    assert Outbox(lambda *_a: None, spool).memory_limit == 2**19
    with pytest.raises(UserError):
        Outbox(lambda *_a: None, spool, memory_limit=-1)


def test_default_spool_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("RUNYARD_SPOOL_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    one = default_spool_dir("http://host:8600")
    assert one.startswith(str(tmp_path / "cache" / "runyard" / "spool") + os.sep)
    assert one == default_spool_dir("http://host:8600/")
    assert one != default_spool_dir("http://other:8600")
    monkeypatch.setenv("RUNYARD_SPOOL_DIR", str(tmp_path / "mine"))
    assert os.path.dirname(default_spool_dir("http://host:8600")) == str(tmp_path / "mine")
    monkeypatch.delenv("RUNYARD_SPOOL_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_spool_dir("http://h").startswith(str(tmp_path / "home" / ".cache"))
