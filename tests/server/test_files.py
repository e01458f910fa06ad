"""Artifact bytes over HTTP: uploads and downloads streamed, ranges, digests, write-once,
growing logs, snapshots checked against their id, every traversal payload refused, limits.

A real server (uvicorn in a thread, over a real SQLite workspace) is driven with httpx,
with raw ``http.client`` requests (paths sent exactly as written) and with the client
side, ``RemoteArtifactStore``.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import threading
import time
import tracemalloc
import warnings
import zipfile
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import httpx
import pytest

from runyard._run_files import store_artifact
from runyard._snapshot import MAX_BYTES, content_id, take_snapshot, zip_content_id
from runyard.artifacts.local import LocalArtifactStore
from runyard.artifacts.remote import RemoteArtifactStore, RemoteLog
from runyard.errors import Conflict, NotFound, ServerUnreachable, UserError
from runyard.records import NewRun
from runyard.store import open_store
from runyard.store._http import HttpClient

RUN = "r1"
API = "/api/v1"


@pytest.fixture
def srv(tmp_path, live_server):
    art = tmp_path / "art"
    url = live_server(str(tmp_path / "ws"), artifacts=str(art))
    experiment = url.store.get_or_create_experiment("files")
    url.store.create_runs(experiment.id, [NewRun(RUN)])
    http = HttpClient(url, None, retry_seconds=3)
    client = httpx.Client(base_url=url + API, timeout=60)
    yield SimpleNamespace(
        url=url,
        store=url.store,
        art=art,
        tmp=tmp_path,
        http=http,
        remote=RemoteArtifactStore(http),
        client=client,
    )
    client.close()
    http.close()


def _files_under(folder) -> set[str]:
    found = set()
    for root, _, files in os.walk(folder):
        for name in files:
            found.add(os.path.relpath(os.path.join(root, name), folder))
    return found


def _stored(srv) -> set[str]:
    """Files under the artifact root, the staging area included."""
    return _files_under(srv.art)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- uploads and downloads ---------------------------------------------------------------
def test_round_trip_of_50_mb_keeps_memory_bounded(srv):
    size = 50 * 1024 * 1024
    source = srv.tmp / "big.bin"
    block = os.urandom(1 << 20)
    with open(source, "wb") as fh:
        for i in range(size // len(block)):
            fh.write(block[i:] + block[:i])
    tracemalloc.start()
    try:
        with open(source, "rb") as fh:
            staged, staged_size, digest = srv.remote.stage(fh)
        srv.remote.commit(staged, RUN, "outputs/big.bin")
        target = srv.tmp / "back.bin"
        with srv.remote.open(RUN, "outputs/big.bin") as src, open(target, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # client and server both run in this process: neither held the file
    assert peak < 12 * 1024 * 1024, peak
    assert staged_size == size
    assert not os.path.exists(staged)
    record = srv.store.get_artifact(RUN, "outputs/big.bin")
    assert (record.size, record.digest, record.streaming) == (size, digest, False)
    with open(target, "rb") as fh:
        back = hashlib.sha256()
        while chunk := fh.read(1 << 20):
            back.update(chunk)
    assert back.hexdigest() == digest
    assert os.path.getsize(srv.art / "runs" / RUN / "outputs" / "big.bin") == size


def test_store_artifact_through_the_remote_store_and_a_url(srv):
    class PlaceOnly:  # what RestStore.add_artifact does with a place
        def add_artifact(self, record, place=None):
            place()

    record = store_artifact(PlaceOnly(), srv.remote, RUN, "outputs/a.txt", io.BytesIO(b"abc"))
    assert srv.store.get_artifact(RUN, "outputs/a.txt").digest == record.digest == _sha(b"abc")
    assert (
        srv.remote.url(RUN, "outputs/a b.txt") == f"{srv.url}{API}/runs/r1/files/outputs/a%20b.txt"
    )
    with pytest.raises(Conflict):
        store_artifact(PlaceOnly(), srv.remote, RUN, "outputs/a.txt", io.BytesIO(b"other"))
    assert srv.remote.local_path(RUN, "outputs/a.txt") is None
    response = srv.client.get("/runs/r1/files/outputs/a.txt")
    assert response.content == b"abc"
    assert response.headers["x-content-sha256"] == _sha(b"abc")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-disposition"].startswith("attachment")


def test_ranges(srv):
    data = bytes(range(256)) * 40
    put = srv.client.put("/runs/r1/files/outputs/r.bin", content=data)
    assert put.status_code == 200, put.text
    part = srv.client.get("/runs/r1/files/outputs/r.bin", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert part.content == data[10:20]
    tail = srv.client.get("/runs/r1/files/outputs/r.bin", headers={"Range": "bytes=-100"})
    assert (tail.status_code, tail.content) == (206, data[-100:])
    rest = srv.client.get("/runs/r1/files/outputs/r.bin", headers={"Range": "bytes=10000-"})
    assert (rest.status_code, rest.content) == (206, data[10000:])
    over = srv.client.get("/runs/r1/files/outputs/r.bin", headers={"Range": "bytes=99999-"})
    assert over.status_code == 416
    assert over.headers["content-range"] == f"bytes */{len(data)}"
    whole = srv.client.get("/runs/r1/files/outputs/r.bin")
    assert (whole.status_code, whole.content) == (200, data)


def test_download_of_a_missing_artifact_or_run_is_not_found(srv):
    with pytest.raises(NotFound):
        srv.remote.open(RUN, "outputs/none.txt")
    assert srv.client.get("/runs/r1/files/outputs/none.txt").status_code == 404
    assert srv.client.get("/runs/r1/artifacts/outputs/none.txt").status_code == 404
    assert srv.client.get("/runs/nope/artifacts").status_code in (200, 404)
    assert srv.client.put("/runs/nope/files/a.txt", content=b"x").status_code == 404


def test_digest_mismatch_is_refused_and_nothing_stored(srv):
    before = _stored(srv)
    response = srv.client.put(
        "/runs/r1/files/outputs/bad.bin",
        content=b"the bytes",
        headers={"X-Content-SHA256": _sha(b"other bytes")},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "UserError"
    assert "nothing was stored" in response.json()["error"]["message"]
    assert _stored(srv) == before
    with pytest.raises(NotFound):
        srv.store.get_artifact(RUN, "outputs/bad.bin")
    bad = srv.client.put(
        "/runs/r1/files/outputs/bad.bin", content=b"x", headers={"X-Content-SHA256": "zz"}
    )
    assert bad.status_code == 400


def test_write_once_and_streaming_replacement(srv):
    assert srv.client.put("/runs/r1/files/outputs/once.txt", content=b"one").status_code == 200
    again = srv.client.put("/runs/r1/files/outputs/once.txt", content=b"two")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "Conflict"
    assert srv.client.get("/runs/r1/files/outputs/once.txt").content == b"one"
    # a file and a folder cannot share a name
    assert srv.client.put("/runs/r1/files/outputs/once.txt/x", content=b"z").status_code == 409
    # a log sent as streaming may be replaced
    streaming = {"X-Runyard-Streaming": "1"}
    first = srv.client.put("/runs/r1/files/logs/a.log", content=b"v1", headers=streaming)
    assert first.json()["streaming"] is True
    second = srv.client.put("/runs/r1/files/logs/a.log", content=b"v2 longer", headers=streaming)
    assert second.status_code == 200
    record = srv.store.get_artifact(RUN, "logs/a.log")
    assert (record.size, record.digest) == (9, _sha(b"v2 longer"))
    # but not as a regular file, and a regular file never as a log
    assert srv.client.put("/runs/r1/files/logs/a.log", content=b"x").status_code == 409
    once_log = srv.client.put("/runs/r1/files/outputs/once.txt", content=b"x", headers=streaming)
    assert once_log.status_code == 409


def test_retried_upload_that_was_stored_is_no_conflict(srv, monkeypatch):
    """The connection breaks after the server stored the upload: the retry's Conflict is
    recognised (same digest) and the upload succeeds."""
    real = srv.http.client.request
    calls = []

    def flaky(method, url, **kwargs):
        response = real(method, url, **kwargs)
        calls.append(method)
        if method == "PUT" and len(calls) == 1:
            raise httpx.ReadError("connection reset after the upload")
        return response

    monkeypatch.setattr(srv.http.client, "request", flaky)
    staged, _, digest = srv.remote.stage(io.BytesIO(b"payload"))
    srv.remote.commit(staged, RUN, "outputs/retried.bin")
    assert calls.count("PUT") == 2
    assert srv.store.get_artifact(RUN, "outputs/retried.bin").digest == digest
    staged, _, _ = srv.remote.stage(io.BytesIO(b"different"))
    with pytest.raises(Conflict):
        srv.remote.commit(staged, RUN, "outputs/retried.bin")
    srv.remote.discard(staged)
    assert not os.path.exists(staged)


def test_list_and_get_records(srv):
    for name in ("outputs/a.txt", "outputs/sub/b.txt", "logs/c.txt"):
        assert srv.client.put(f"/runs/r1/files/{name}", content=name.encode()).status_code == 200
    listed = srv.client.get("/runs/r1/artifacts").json()
    assert [a["path"] for a in listed] == ["logs/c.txt", "outputs/a.txt", "outputs/sub/b.txt"]
    outputs = srv.client.get("/runs/r1/artifacts", params={"prefix": "outputs"}).json()
    assert [a["path"] for a in outputs] == ["outputs/a.txt", "outputs/sub/b.txt"]
    one = srv.client.get("/runs/r1/artifacts/outputs/sub/b.txt").json()
    assert one["digest"] == _sha(b"outputs/sub/b.txt")


# -- growing logs ------------------------------------------------------------------------
def _append(srv, offset, body, **params):
    return srv.client.post(
        "/runs/r1/logs/user_logs/std_log.txt", params={"offset": offset, **params}, content=body
    )


def test_log_appends_skip_retries_and_refuse_gaps(srv):
    assert _append(srv, 0, b"hello ").json() == {"size": 6}
    assert _append(srv, 0, b"hello ").json() == {"size": 6}  # a retry that arrived twice
    assert _append(srv, 3, b"lo ").json() == {"size": 6}  # a piece the server has
    assert _append(srv, 3, b"lo wor").json() == {"size": 9}  # overlapping: only the new end
    gap = _append(srv, 20, b"later")  # arrived before what precedes it
    assert gap.status_code == 409
    assert "ends at byte 9" in gap.json()["error"]["message"]
    assert _append(srv, 9, b"ld").json() == {"size": 11}
    assert _append(srv, -1, b"").json() == {"size": 11}  # where does it end?
    done = _append(srv, 11, b"!", final="true")
    assert done.json() == {"size": 12}
    record = srv.store.get_artifact(RUN, "user_logs/std_log.txt")
    assert (record.size, record.digest, record.streaming) == (12, _sha(b"hello world!"), True)
    path = srv.art / "runs" / RUN / "user_logs" / "std_log.txt"
    assert path.read_bytes() == b"hello world!"


def test_log_append_to_a_regular_file_is_refused(srv):
    srv.client.put("/runs/r1/files/outputs/f.txt", content=b"x")
    response = srv.client.post("/runs/r1/logs/outputs/f.txt", params={"offset": 1}, content=b"y")
    assert response.status_code == 409
    assert srv.client.get("/runs/r1/files/outputs/f.txt").content == b"x"


def test_record_only_call_records_an_empty_log(srv):
    response = srv.client.post(
        "/runs/r1/logs/logs/empty.txt", params={"offset": -1, "final": "true"}
    )
    assert response.json() == {"size": 0}
    record = srv.store.get_artifact(RUN, "logs/empty.txt")
    assert (record.size, record.digest, record.streaming) == (0, "", True)


def test_remote_log_from_threads_then_final_record(srv, monkeypatch):
    monkeypatch.setattr(RemoteLog, "FLUSH_BYTES", 1000)
    log = srv.remote.open_append(RUN, "user_logs/std_log.txt")
    lines = {i: [f"thread {i} line {n}\n".encode() for n in range(300)] for i in range(4)}

    def writer(i):
        for line in lines[i]:
            log.write(line)
            log.flush()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(0.7)  # the sender sends within FLUSH_SECONDS, while the run goes
    path = srv.art / "runs" / RUN / "user_logs" / "std_log.txt"
    assert path.stat().st_size > 0
    log.close()
    data = path.read_bytes()
    for i in range(4):  # each thread's lines arrived whole and in order
        mine = [
            line for line in data.splitlines(keepends=True) if line.startswith(b"thread %d " % i)
        ]
        assert mine == lines[i]
    record = srv.store.get_artifact(RUN, "user_logs/std_log.txt")
    assert (record.size, record.digest, record.streaming) == (len(data), _sha(data), True)
    with pytest.raises(ValueError):
        log.write(b"after close")


def test_remote_log_through_a_text_layer_and_an_existing_file(srv):
    """The supervisor and StreamCapture wrap the writer in a TextIOWrapper; a log that
    exists already is appended to, as a local one."""
    assert _append(srv, 0, b"before\n").status_code == 200
    log = srv.remote.open_append(RUN, "user_logs/std_log.txt")
    text = io.TextIOWrapper(log, encoding="utf-8", line_buffering=True)
    text.write("caf\u00e9\n")
    text.close()
    path = srv.art / "runs" / RUN / "user_logs" / "std_log.txt"
    assert path.read_bytes() == "before\ncaf\u00e9\n".encode()


def test_remote_log_survives_a_server_away_for_a_while(srv, monkeypatch):
    """While the server cannot be reached, bytes wait; once it answers they arrive in
    order, once; ``write`` never raises meanwhile."""
    real = srv.http.request
    away = {"until": time.monotonic() + 1.5}

    def down(method, path, **kwargs):
        if time.monotonic() < away["until"]:
            raise ServerUnreachable("the server is away")
        return real(method, path, **kwargs)

    monkeypatch.setattr(srv.http, "request", down)
    log = srv.remote.open_append(RUN, "logs/away.txt")
    sent = b"".join(f"line {n}\n".encode() for n in range(2000))
    for n in range(2000):
        log.write(f"line {n}\n".encode())
    log.close()
    path = srv.art / "runs" / RUN / "logs" / "away.txt"
    assert path.read_bytes() == sent
    assert srv.store.get_artifact(RUN, "logs/away.txt").size == len(sent)


def test_remote_log_buffer_is_bounded(srv, monkeypatch):
    monkeypatch.setattr(RemoteLog, "MAX_BUFFER", 1000)
    real = srv.http.request
    away = {"until": time.monotonic() + 1.0}

    def down(method, path, **kwargs):
        if time.monotonic() < away["until"]:
            raise ServerUnreachable("the server is away")
        return real(method, path, **kwargs)

    monkeypatch.setattr(srv.http, "request", down)
    log = srv.remote.open_append(RUN, "logs/bounded.txt")
    for _ in range(100):
        assert log.write(b"x" * 100) == 100
    path = srv.art / "runs" / RUN / "logs" / "bounded.txt"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the server is back: the buffer drains, notice too
        if path.exists() and b"were dropped" in path.read_bytes():
            break
        time.sleep(0.05)
    log.write(b"after\n")
    log.close()
    data = (srv.art / "runs" / RUN / "logs" / "bounded.txt").read_bytes()
    assert data.startswith(b"x" * 1000)
    assert b"[runyard: 9000 bytes of this log were dropped while the server was away]" in data
    assert data.endswith(b"after\n")


def test_remote_log_resends_after_the_server_lost_bytes(srv):
    log = srv.remote.open_append(RUN, "logs/lost.txt")
    log.write(b"first\n")
    log.flush()
    deadline = time.monotonic() + 5
    path = srv.art / "runs" / RUN / "logs" / "lost.txt"
    while (not path.exists() or path.stat().st_size < 6) and time.monotonic() < deadline:
        time.sleep(0.05)
    path.write_bytes(b"fir")  # the server's copy lost its end
    log.write(b"second\n")
    log.close()
    assert (
        path.read_bytes()
        == b"fir\n[runyard: 3 bytes of this log were lost on the server]\nsecond\n"
    )


def test_remote_log_refused_is_said_once_and_never_raises(srv, capsys):
    srv.client.put("/runs/r1/files/outputs/regular.txt", content=b"x")
    log = srv.remote.open_append(RUN, "outputs/regular.txt")
    for _ in range(5):
        log.write(b"y\n")
        log.flush()
    time.sleep(0.8)
    log.close()
    assert srv.client.get("/runs/r1/files/outputs/regular.txt").content == b"x"


# -- snapshots ---------------------------------------------------------------------------
def _snapshot_zip(tmp_path, files: dict[str, bytes]) -> tuple[str, str]:
    """A snapshot taken as a run does (in a local workspace); (its id, its zip)."""
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    local_store = open_store(str(tmp_path / "local-ws"))
    local_art = LocalArtifactStore(str(tmp_path / "local-art"))
    snapshot_id = take_snapshot(str(src), local_store, local_art)
    local_store.close()
    return snapshot_id, str(tmp_path / "local-art" / "snapshots" / f"{snapshot_id}.zip")


def test_snapshot_up_and_down(srv):
    snapshot_id, zip_path = _snapshot_zip(srv.tmp, {"train.py": b"print(1)\n", "a/b.txt": b"b"})
    assert zip_content_id(zip_path)[0] == snapshot_id
    exists = srv.client.get(f"/snapshots/{snapshot_id}/exists").json()
    assert exists == {"id": snapshot_id, "exists": False}
    with open(zip_path, "rb") as fh:
        staged, _, _ = srv.remote.stage(fh)
    srv.remote.put_snapshot(snapshot_id, staged)
    assert not os.path.exists(staged)
    assert srv.store.has_snapshot(snapshot_id)
    assert srv.client.get(f"/snapshots/{snapshot_id}/exists").json()["exists"] is True
    with srv.remote.open_snapshot(snapshot_id) as fh:
        assert fh.read() == Path(zip_path).read_bytes()
    # sent again: no error, stored once
    with open(zip_path, "rb") as fh:
        staged, _, _ = srv.remote.stage(fh)
    srv.remote.put_snapshot(snapshot_id, staged)
    with pytest.raises(NotFound):
        srv.remote.open_snapshot("0" * 32)


def test_poisoned_snapshot_is_refused(srv):
    snapshot_id, zip_path = _snapshot_zip(srv.tmp, {"train.py": b"print(1)\n"})
    poisoned = srv.tmp / "poisoned.zip"
    with zipfile.ZipFile(poisoned, "w") as zf:
        zf.writestr("train.py", b"import os; os.system('evil')\n")
    before = _stored(srv)
    response = srv.client.put(f"/snapshots/{snapshot_id}", content=poisoned.read_bytes())
    assert response.status_code == 400
    assert "not " + snapshot_id in response.json()["error"]["message"]
    assert not srv.store.has_snapshot(snapshot_id)
    assert _stored(srv) == before
    # and the genuine zip still goes in afterwards
    good = srv.client.put(f"/snapshots/{snapshot_id}", content=Path(zip_path).read_bytes())
    assert good.status_code == 200


@pytest.mark.parametrize(
    "entries",
    [
        [("../evil.py", b"x")],
        [("/abs.py", b"x")],
        [("a\\b.py", b"x")],
        [("dup.py", b"1"), ("dup.py", b"1")],
        [("folder/", b"")],
    ],
)
def test_snapshot_with_unsafe_entries_is_refused(srv, entries):
    bad = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(bad, "w") as zf:
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name
        for name, data in entries:
            zf.writestr(name, data)

    claimed = content_id([(n, _sha(d), False) for n, d in entries])
    response = srv.client.put(f"/snapshots/{claimed}", content=bad.getvalue())
    assert response.status_code == 400, response.text
    assert not srv.store.has_snapshot(claimed)


def test_zip_bomb_and_junk_are_refused(srv, monkeypatch):
    import runyard.server.api.files as files_api

    monkeypatch.setattr(files_api, "MAX_BYTES", 1 << 20)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", b"\0" * (8 << 20))
    assert len(bomb.getvalue()) < 100_000
    claimed = content_id([("zeros.bin", _sha(b"\0" * (8 << 20)), False)])
    response = srv.client.put(f"/snapshots/{claimed}", content=bomb.getvalue())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "SnapshotError"
    junk = srv.client.put(f"/snapshots/{claimed}", content=b"not a zip at all")
    assert junk.status_code == 400
    assert not srv.store.has_snapshot(claimed)
    assert MAX_BYTES > 1 << 20  # the module's own limit is untouched


# -- traversal payloads on every path route ----------------------------------------------
PAYLOADS = [
    "..",
    "../x",
    "../../../../etc/passwd",
    "a/../../x",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "a\\b",
    "a%5cb",
    "..%5c..%5cx",
    "a%00b",
    "%2e%2e%2fx",
    "%2e%2e/x",
    "..%2fx",
    "%252e%252e%252fx",
    "%25252e%25252e%25252fx",
    "C:/x",
    "C:%5cx",
    "a%ED%A0%80b",
    "a%80b",
    "x" * 10_000,
    "a/" + "y" * 300 + "/b",
    "a%0ab",
]


def _raw(url: str, method: str, path: str, body: bytes | None = None):
    """Send ``path`` exactly as written (no client normalisation); (status, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.putheader("Content-Type", "application/octet-stream")
        conn.endheaders(body or b"")
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _everything(tmp_path) -> dict[str, int]:
    """Every file under the test's folder, with its size (the database files aside)."""
    found = {}
    for root, _, files in os.walk(tmp_path):
        for name in files:
            full = os.path.join(root, name)
            if "runyard.db" in name:
                continue
            found[full] = os.path.getsize(full)
    return found


def test_every_traversal_payload_on_every_path_route_is_refused(srv):
    (srv.tmp / "secret.txt").write_bytes(b"secret")
    before = _everything(srv.tmp)
    routes = [
        ("PUT", "/runs/r1/files/{p}", b"data"),
        ("POST", "/runs/r1/logs/{p}?offset=0", b"data"),
        ("POST", "/runs/r1/logs/{p}?offset=-1&final=true", b""),
        ("GET", "/runs/r1/files/{p}", None),
        ("GET", "/runs/r1/artifacts/{p}", None),
        ("GET", "/runs/r1/artifacts?prefix={p}", None),
        ("PUT", "/runs/{p}/files/a.txt", b"data"),
        ("GET", "/runs/{p}/files/a.txt", None),
        ("POST", "/runs/{p}/logs/a.txt?offset=0", b"data"),
        ("PUT", "/snapshots/{p}", b"PK"),
        ("GET", "/snapshots/{p}", None),
        ("GET", "/snapshots/{p}/exists", None),
    ]
    refused = []
    for method, template, body in routes:
        for payload in [*PAYLOADS, "../secret.txt", "..%2f..%2fsecret.txt"]:
            path = API + template.replace("{p}", payload)
            status, answer = _raw(srv.url, method, path, body)
            assert 400 <= status < 500, (method, path[:120], status, answer[:300])
            assert b"secret" not in answer.replace(b"secret.txt", b"")
            refused.append(status)
    assert _everything(srv.tmp) == before
    assert srv.store.list_artifacts(RUN) == []
    assert 400 in refused


def test_names_with_percent_and_unicode_are_plain_names(srv):
    """What decodes to nothing dangerous is a plain name, stored literally in its run."""
    for name in ("a%20b.txt", "caf\u00e9/\u00fcber.txt", "50%.txt"):
        staged, _, _ = srv.remote.stage(io.BytesIO(name.encode()))
        srv.remote.commit(staged, RUN, name)
        with srv.remote.open(RUN, name) as fh:
            assert fh.read() == name.encode()
    assert (srv.art / "runs" / RUN / "a%20b.txt").is_file()


# -- limits --------------------------------------------------------------------------------
def test_over_the_artifact_limit_is_413_and_nothing_stored(tmp_path, live_server):
    url = live_server(
        str(tmp_path / "ws"), artifacts=str(tmp_path / "art"), max_artifact_bytes=1000
    )
    experiment = url.store.get_or_create_experiment("files")
    url.store.create_runs(experiment.id, [NewRun(RUN)])
    before = _files_under(tmp_path / "art")
    with httpx.Client(base_url=url + API) as client:
        declared = client.put("/runs/r1/files/outputs/big.bin", content=b"x" * 5000)
        assert declared.status_code == 413
        assert "1000" in declared.json()["error"]["message"]

        def chunks():  # no Content-Length: refused as it arrives
            for _ in range(10):
                yield b"y" * 400

        streamed = client.put("/runs/r1/files/outputs/big2.bin", content=chunks())
        assert streamed.status_code == 413
        assert "1000" in streamed.json()["error"]["message"]
        assert client.put("/runs/r1/files/outputs/ok.bin", content=b"z" * 1000).status_code == 200
    assert url.store.list_artifacts(RUN)[0].path == "outputs/ok.bin"
    assert len(url.store.list_artifacts(RUN)) == 1
    assert _files_under(tmp_path / "art") - before == {
        os.path.join("runs", RUN, "outputs", "ok.bin")
    }
    http = HttpClient(url, None, retry_seconds=1)
    remote = RemoteArtifactStore(http)
    staged, _, _ = remote.stage(io.BytesIO(b"w" * 2000))
    with pytest.raises(UserError, match="1000"):
        remote.commit(staged, RUN, "outputs/big3.bin")
    remote.discard(staged)
    http.close()
