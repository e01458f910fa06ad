"""Bad input at a real server: traversal payloads in every id and name of a route (the
files routes are in test_files.py), oversized bodies (with and without Content-Length),
malformed metric batches, wrong content types and unknown fields. Each is a 4xx with a
message, never a 500, and leaves nothing stored and nothing on disk.

Requests go out over a raw socket, so the request target reaches the server byte for byte
(an HTTP client would normalise ``..`` segments and quote what it sends).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from runyard.records import NewRun, RunQuery, SeriesAppend
from runyard.store import wire
from tests.live_server import serve_workspace

LIMIT_JSON = 4096
LIMIT_BATCH = 8192
LIMIT_ARTIFACT = 16384
MARK = "ry-escape-" + uuid.uuid4().hex[:8]  # a name no payload may create anywhere


@dataclass
class Served:
    url: str
    store: Any
    secret: str
    root: str  # the test's folder: the workspace and its neighbours
    workspace: str
    experiment_id: str
    run_id: str

    def request(
        self,
        method: str,
        target: str | bytes,
        body: bytes | None = None,
        *,
        content_type: str | None = "application/json",
        chunked: bool = False,
        token: str | None = "default",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any] | None, bytes]:
        """Send one request as given; (status, the JSON body or None, raw body)."""
        extra = dict(headers or {})
        if token is not None:
            extra["Authorization"] = f"Bearer {self.secret if token == 'default' else token}"
        if content_type is not None and body is not None:
            extra.setdefault("Content-Type", content_type)
        return raw_request(self.url, method, target, body, headers=extra, chunked=chunked)


def raw_request(
    url: str,
    method: str,
    target: str | bytes,
    body: bytes | None = None,
    *,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
) -> tuple[int, dict[str, Any] | None, bytes]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    if isinstance(target, str):
        target = target.encode("utf-8", "surrogateescape")
    head = [method.encode() + b" " + target + b" HTTP/1.1", f"Host: {parts.netloc}".encode()]
    head.append(b"Connection: close")
    for name, value in (headers or {}).items():
        head.append(f"{name}: {value}".encode("latin-1"))
    if body is not None:
        if chunked:
            head.append(b"Transfer-Encoding: chunked")
        else:
            head.append(f"Content-Length: {len(body)}".encode())
    sock = socket.create_connection(
        (parts.hostname, parts.port), timeout=4
    )  # an event stream sends a keepalive every 5 s
    try:
        try:
            sock.sendall(b"\r\n".join(head) + b"\r\n\r\n")
            if body is not None and chunked:
                for i in range(0, len(body), 1000):
                    piece = body[i : i + 1000]
                    sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sock.sendall(b"0\r\n\r\n")
            elif body:
                sock.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (and closed) before the body was sent whole
        response = http.client.HTTPResponse(sock)
        response.begin()
        data = response.read()
    finally:
        sock.close()
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = None
    return response.status, parsed, data


@pytest.fixture
def served(tmp_path) -> Iterator[Served]:
    workspace = str(tmp_path / "ws")
    with serve_workspace(
        workspace,
        auth=True,
        max_json_bytes=LIMIT_JSON,
        max_batch_bytes=LIMIT_BATCH,
        max_artifact_bytes=LIMIT_ARTIFACT,
    ) as (url, store):
        _, secret = store.create_token("tester", "admin")
        experiment = store.get_or_create_experiment("exp")
        (run,) = store.create_runs(experiment.id, [NewRun(id="exp_1", status="Running")])
        yield Served(url, store, secret, str(tmp_path), workspace, experiment.id, run.id)


def _tree(root: str) -> set[str]:
    found = set()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(folder, name), root))
    return found


def _no_escape(served: Served, before: set[str]) -> None:
    """Nothing new outside the workspace, and the marker nowhere (nor in /tmp)."""
    after = _tree(served.root)
    outside = {p for p in after - before if not p.startswith("ws" + os.sep) and p != "ws"}
    assert not outside, f"created outside the workspace: {sorted(outside)}"
    assert not any(MARK in p for p in after), [p for p in after if MARK in p]
    assert not any(MARK in name for name in os.listdir("/tmp"))


# -- traversal payloads in ids and names ---------------------------------------------------
# as they appear in a request target (already percent-encoded where a client would)
PATH_PAYLOADS = {
    "dotdot": "..",
    "dot": ".",
    "dotdot-slash": f"..%2F..%2F{MARK}",
    "dotdot-raw-slash": f"../../{MARK}",
    "absolute": f"%2Ftmp%2F{MARK}",
    "backslash": f"..\\..\\{MARK}",
    "backslash-encoded": f"..%5C..%5C{MARK}",
    "nul-encoded": f"x%00{MARK}",
    "encoded-dots": f"%2e%2e%2f%2e%2e%2f{MARK}",
    "double-encoded": f"%252e%252e%252f%252e%252e%252f{MARK}",
    "drive": f"C:%5C{MARK}",
    "surrogate": "%ED%A0%80",
    "over-long": "a" * 5000,
    "over-long-dots": "..%2F" * 1000 + MARK,
}
# as a JSON body or a decoded query value holds them
TEXT_PAYLOADS = {
    "dotdot": "..",
    "dotdot-slash": f"../../{MARK}",
    "absolute": f"/tmp/{MARK}",
    "file-uri": f"file:///tmp/{MARK}",
    "backslash": f"..\\..\\{MARK}",
    "nul": f"x\x00{MARK}",
    "encoded-dots": f"%2e%2e%2f%2e%2e%2f{MARK}",
    "double-encoded": f"%252e%252e%252f{MARK}",
    "fragment": f"http:///#/../../{MARK}",
    "over-long": "a" * 3000,  # under the JSON limit of this server
}
BATCH = wire.encode_batch([SeriesAppend("loss", "scalar", [0, 1], [0.5, 0.25], [1.0, 2.0])])

# (method, target template, body): {id} is where the payload goes
ID_ROUTES = [
    ("GET", "/api/v1/runs/{id}", None),
    ("PATCH", "/api/v1/runs/{id}", b'{"description": "x"}'),
    ("POST", "/api/v1/runs/{id}/status", b'{"status": "Completed"}'),
    ("POST", "/api/v1/runs/{id}/heartbeat", b"{}"),
    ("PATCH", "/api/v1/runs/{id}/tags", b'{"set": {"a": "b"}}'),
    ("POST", "/api/v1/runs/{id}/properties", b'{"properties": {"a": "b"}}'),
    ("POST", "/api/v1/runs/{id}/metrics", BATCH),
    ("GET", "/api/v1/runs/{id}/events", None),
    ("POST", "/api/v1/runs/{id}/token", None),
    ("GET", "/api/v1/experiments/{id}", None),
    ("POST", "/api/v1/experiments/{id}/archive", None),
    ("POST", "/api/v1/experiments/{id}/reactivate", None),
    ("PATCH", "/api/v1/experiments/{id}/tags", b'{"set": {"a": "b"}}'),
    ("POST", "/api/v1/experiments/{id}/runs", b'{"runs": [{"id": "fine_1"}]}'),
    ("PUT", "/api/v1/snapshots/{id}", b"PK\x05\x06" + b"\0" * 18),
    ("GET", "/api/v1/snapshots/{id}", None),
    ("GET", "/api/v1/snapshots/{id}/exists", None),
    ("DELETE", "/api/v1/tokens/{id}", None),
]
QUERY_ROUTES = [
    ("GET", "/api/v1/runs/exp_1/events?log={id}"),
    ("GET", "/api/v1/experiments?name={id}"),
    ("GET", "/api/v1/supervised-runs?late_after=1&include={id}"),
]


def _content_type(target: str) -> str:
    if target.endswith("/metrics"):
        return wire.BATCH_TYPE
    if "/snapshots/" in target:
        return "application/octet-stream"
    return "application/json"


def _refused(status: int, parsed: Any, data: bytes, what: str) -> None:
    assert 400 <= status < 500, f"{what}: {status} {data[:300]!r}"
    assert parsed is not None and set(parsed) == {"error"}, f"{what}: {data[:300]!r}"
    assert parsed["error"]["message"], what


def _stored_unchanged(served: Served) -> None:
    store = served.store
    assert [r.id for r in store.search_runs(RunQuery(), limit=100)] == [served.run_id]
    run = store.get_run(served.run_id)
    assert (run.status, run.description, run.tags, run.properties) == ("Running", None, {}, {})
    assert [e.name for e in store.list_experiments("All")] == ["exp"]
    assert store.get_experiment(served.experiment_id).archived is None
    assert [t.name for t in store.list_tokens()] == ["tester"]
    assert store.list_series([served.run_id]) == []


@pytest.mark.parametrize("payload", list(PATH_PAYLOADS), ids=list(PATH_PAYLOADS))
def test_traversal_in_ids_is_refused(served, payload):
    before = _tree(served.root)
    raw = PATH_PAYLOADS[payload]
    for method, template, body in ID_ROUTES:
        target = template.replace("{id}", raw)
        status, parsed, data = served.request(
            method, target, body, content_type=_content_type(template)
        )
        _refused(status, parsed, data, f"{method} {target[:120]}")
    for method, template in QUERY_ROUTES:
        target = template.replace("{id}", raw)
        status, parsed, data = served.request(method, target)
        if "experiments?name" in template or "include=" in template:
            # a filter by name or id: nothing matches, nothing is opened (or refused)
            if status != 400:
                assert status == 200 and parsed == [], f"{target[:120]}: {data[:300]!r}"
        else:
            _refused(status, parsed, data, f"{method} {target[:120]}")
    _stored_unchanged(served)
    _no_escape(served, before)


def test_raw_control_bytes_in_the_target_are_refused(served):
    for target in (b"/api/v1/runs/x\x00y", b"/api/v1/runs/x\ny", b"/api/v1/runs/x y"):
        status, _, data = served.request("GET", target)
        assert status == 400, (target, data)


@pytest.mark.parametrize("payload", list(TEXT_PAYLOADS), ids=list(TEXT_PAYLOADS))
def test_traversal_in_body_ids_and_names_is_refused(served, payload):
    before = _tree(served.root)
    text = TEXT_PAYLOADS[payload]
    eid = served.experiment_id
    cases: list[tuple[str, str, Any]] = [
        ("POST", f"/api/v1/experiments/{eid}/runs", {"runs": [{"id": text}]}),
        ("POST", f"/api/v1/experiments/{eid}/runs", {"runs": [{"id": "ok_1", "parent_id": text}]}),
        (
            "POST",
            f"/api/v1/experiments/{eid}/runs",
            {"runs": [{"id": "ok_2", "snapshot_id": text}]},
        ),
        ("POST", "/api/v1/tokens", {"name": text, "role": "reader"}),
        ("PATCH", "/api/v1/runs/exp_1", {"snapshot_id": text}),
    ]
    for method, target, body in cases:
        status, parsed, data = served.request(method, target, json.dumps(body).encode())
        _refused(status, parsed, data, f"{method} {target} {body!r:.120}")
    # reads naming such ids find nothing and open nothing
    for target, body in (
        ("/api/v1/series", {"run_ids": [text]}),
        ("/api/v1/runs/search", {"query": {"root_id": text}}),
    ):
        status, parsed, data = served.request("POST", target, json.dumps(body).encode())
        assert status == 200 and parsed == [], (target, data[:300])
    status, _, data = served.request(
        "POST", "/api/v1/histories", json.dumps({"run_ids": [text]}).encode()
    )
    assert status in (200, 400, 404), data[:300]
    _stored_unchanged(served)
    # an experiment name is text, never a path: one such as ".." or "/tmp/x" may be taken
    # (as MLflow takes it), and nothing is created outside the store for it
    status, parsed, data = served.request(
        "POST", "/api/v1/experiments", json.dumps({"name": text}).encode()
    )
    if status == 200:
        assert parsed["name"] == text
    else:
        _refused(status, parsed, data, f"experiment name {text!r:.120}")
    _no_escape(served, before)


# -- oversized, malformed and mistyped bodies ----------------------------------------------
def _batch(points: int, name: str = "loss") -> bytes:
    import random

    rng = random.Random(1)
    values = [rng.random() for _ in range(points)]
    times = [1e9 + rng.random() for _ in range(points)]
    return wire.encode_batch([SeriesAppend(name, "scalar", list(range(points)), values, times)])


def _files_named(root: str, name: str) -> list[str]:
    return [p for p in _tree(root) if os.path.basename(p).startswith(name)]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversized_bodies_are_413_with_the_limit(served, chunked):
    eid = served.experiment_id
    big_run = {"runs": [{"id": "big_1", "description": "x" * (LIMIT_JSON + 10)}]}
    cases = [
        ("POST", f"/api/v1/experiments/{eid}/runs", json.dumps(big_run).encode(), None, LIMIT_JSON),
        ("PATCH", "/api/v1/runs/exp_1/tags", b'{"set": {"a": "%s"}}' % (b"y" * LIMIT_JSON), None,
         LIMIT_JSON),
        ("POST", "/api/v1/runs/exp_1/metrics", _batch(2000), wire.BATCH_TYPE, LIMIT_BATCH),
        ("PUT", "/api/v1/runs/exp_1/files/big.bin", os.urandom(LIMIT_ARTIFACT + 1),
         "application/octet-stream", LIMIT_ARTIFACT),
        ("PUT", "/api/v1/snapshots/" + "0" * 32, os.urandom(LIMIT_ARTIFACT + 1),
         "application/octet-stream", LIMIT_ARTIFACT),
    ]  # fmt: skip
    assert len(cases[2][2]) > LIMIT_BATCH
    for method, target, body, kind, limit in cases:
        status, parsed, data = served.request(
            method, target, body, content_type=kind or "application/json", chunked=chunked
        )
        assert status == 413, (target, status, data[:300])
        assert parsed["error"]["code"] == "TooLarge"
        assert f"at most {limit} bytes" in parsed["error"]["message"], parsed
    _stored_unchanged(served)
    assert served.store.list_artifacts("exp_1") == []
    assert not served.store.has_snapshot("0" * 32)
    assert _files_named(served.root, "big.bin") == []


def test_a_batch_just_under_the_limit_is_stored(served):
    body = _batch(300)
    assert len(body) < LIMIT_BATCH
    status, parsed, _ = served.request(
        "POST", "/api/v1/runs/exp_1/metrics", body, content_type=wire.BATCH_TYPE, chunked=True
    )
    assert (status, parsed) == (200, {"stored": True})
    assert served.store.list_series(["exp_1"])[0].count == 300


def _malformed_batches() -> dict[str, bytes]:
    good = wire.encode_batch(
        [
            SeriesAppend("a", "scalar", [0, 1], [1.0, 2.0], [1.0, 2.0]),
            SeriesAppend("b", "scalar", [0, 1], [1.0, 2.0], [1.0, 2.0]),
        ]
    )
    count_at = 5  # magic, version, then the series count
    return {
        "empty": b"",
        "garbage": b"not a batch at all",
        "json": b'{"series": []}',
        "wrong-magic": b"RYH1" + good[4:],
        "wrong-version": good[:4] + b"\x09" + good[5:],
        "truncated": good[:-3],
        "truncated-in-second-series": good[: len(good) // 2 + 10],
        "trailing-bytes": good + b"\x00junk",
        "huge-series-count": good[:count_at] + b"\xff\xff\xff\xff" + good[count_at + 4 :],
        "zero-series-then-junk": good[:count_at] + b"\x00\x00\x00\x00" + b"\x01" * 40,
        "bit-flips": bytes(b ^ 0x5A if i % 7 == 3 else b for i, b in enumerate(good)),
    }


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_malformed_batches_are_400_and_store_nothing(served, chunked):
    for label, body in _malformed_batches().items():
        status, parsed, data = served.request(
            "POST", "/api/v1/runs/exp_1/metrics", body, content_type=wire.BATCH_TYPE,
            chunked=chunked, headers={"Idempotency-Key": f"k-{label}"},
        )  # fmt: skip
        assert status == 400, (label, status, data[:300])
        assert parsed["error"]["code"] == "UserError" and parsed["error"]["message"], label
    assert served.store.list_series(["exp_1"]) == []
    # the keys of refused batches were not kept: the same key with a good batch is stored
    status, parsed, _ = served.request(
        "POST", "/api/v1/runs/exp_1/metrics", _batch(3), content_type=wire.BATCH_TYPE,
        headers={"Idempotency-Key": "k-truncated"},
    )  # fmt: skip
    assert (status, parsed) == (200, {"stored": True})


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_wrong_content_types_are_400(served, chunked):
    eid = served.experiment_id
    run = json.dumps({"runs": [{"id": "typed_1"}]}).encode()
    cases = [
        ("POST", "/api/v1/runs/exp_1/metrics", _batch(3), "application/json"),
        ("POST", "/api/v1/runs/exp_1/metrics", _batch(3), "application/octet-stream"),
        ("POST", "/api/v1/runs/exp_1/metrics", _batch(3), None),
        ("POST", f"/api/v1/experiments/{eid}/runs", run, "text/plain"),
        ("POST", f"/api/v1/experiments/{eid}/runs", run, wire.BATCH_TYPE),
        ("POST", f"/api/v1/experiments/{eid}/runs", run, "multipart/form-data; boundary=x"),
        ("POST", f"/api/v1/experiments/{eid}/runs", run, "application/x-www-form-urlencoded"),
    ]
    for method, target, body, kind in cases:
        status, parsed, data = served.request(
            method, target, body, content_type=kind, chunked=chunked
        )
        assert status == 400, (target, kind, status, data[:300])
        assert parsed["error"]["message"], (target, kind)
    _stored_unchanged(served)


def test_unknown_fields_are_400_naming_the_field(served):
    eid = served.experiment_id
    cases = [
        ("POST", "/api/v1/experiments", {"name": "e2", "colour": "red"}),
        ("POST", f"/api/v1/experiments/{eid}/runs", {"runs": [{"id": "u_1", "colour": 1}]}),
        ("POST", f"/api/v1/experiments/{eid}/runs", {"runs": [], "colour": 1}),
        ("PATCH", f"/api/v1/experiments/{eid}/tags", {"set": {}, "colour": 1}),
        ("PATCH", "/api/v1/runs/exp_1", {"description": "d", "colour": 1}),
        ("POST", "/api/v1/runs/exp_1/status", {"status": "Completed", "colour": 1}),
        ("POST", "/api/v1/runs/exp_1/heartbeat", {"colour": 1}),
        ("PATCH", "/api/v1/runs/exp_1/tags", {"set": {"a": "b"}, "colour": 1}),
        ("POST", "/api/v1/runs/exp_1/properties", {"properties": {"a": "b"}, "colour": 1}),
        ("POST", "/api/v1/runs/search", {"query": {"colour": 1}}),
        ("POST", "/api/v1/runs/expire-silent", {"not_responding_after": 1, "fail_after": 2,
                                                 "colour": 1}),
        ("POST", "/api/v1/series", {"run_ids": ["exp_1"], "colour": 1}),
        ("POST", "/api/v1/histories", {"run_ids": ["exp_1"], "colour": 1}),
        ("POST", "/api/v1/tokens", {"name": "t2", "role": "reader", "colour": 1}),
    ]  # fmt: skip
    for method, target, body in cases:
        status, parsed, data = served.request(method, target, json.dumps(body).encode())
        assert status == 400, (target, status, data[:300])
        assert "colour" in parsed["error"]["message"], (target, parsed)
    _stored_unchanged(served)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_malformed_json_is_400_never_500(served, chunked):
    eid = served.experiment_id
    target = f"/api/v1/experiments/{eid}/runs"
    bodies = {
        "not-json": b"{runs: [",
        "truncated": b'{"runs": [{"id": "m_1"',
        "list": b'[{"id": "m_1"}]',
        "string": b'"runs"',
        "null": b"null",
        "empty": b"",
        "bad-utf8": b'{"runs": [{"id": "m_\xff"}]}',
        "nul-in-string": b'{"runs": [{"id": "m_1", "description": "a\\u0000b"}]}',
        "surrogate": b'{"runs": [{"id": "m_1", "description": "\\ud800"}]}',
        "deeply-nested": b'{"runs": [{"id": "m_1", "run_definition": {"a": '
        + b"[" * 1500
        + b"]" * 1500
        + b"}}]}",
        "second-invalid": b'{"runs": [{"id": "m_1"}, {"id": ".."}]}',
        "second-unknown-parent": b'{"runs": [{"id": "m_1"}, {"id": "m_2", "parent_id": "no"}]}',
        "wrong-types": b'{"runs": [{"id": 5, "tags": [1], "heartbeat": "maybe"}]}',
        "duplicate-ids": b'{"runs": [{"id": "m_1"}, {"id": "m_1"}]}',
    }
    for label, body in bodies.items():
        status, parsed, data = served.request("POST", target, body, chunked=chunked)
        assert 400 <= status < 500, (label, status, data[:300])
        assert parsed["error"]["message"], label
    _stored_unchanged(served)


def test_invalid_content_length_is_400(served):
    for value in ("abc", "-1", "1e3"):
        status, _, data = served.request(
            "POST", "/api/v1/experiments", None, headers={"Content-Length": value}
        )
        assert status == 400, (value, data[:300])
