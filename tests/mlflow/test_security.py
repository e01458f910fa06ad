"""MLflow's published tracking-server holes (reference/mlflow.md §5.2), sent to the MLflow
routes of a real runyard server: each is refused, nothing outside the workspace is read or
written, no client-supplied URI is ever opened, and every route needs a token."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from tests.live_server import serve_workspace
from tests.server.test_bad_input import raw_request

from runyard.records import NewRun
from runyard.server.mlflow._rpc import ROUTES

SECRET = "TOPSECRET-" + uuid.uuid4().hex


@pytest.fixture
def served(tmp_path):
    (tmp_path / "secret.txt").write_text(SECRET)
    with serve_workspace(str(tmp_path / "ws"), auth=True) as (url, store):
        tokens = {r: store.create_token(f"t-{r}", r)[1] for r in ("reader", "contributor", "admin")}
        experiment = store.get_or_create_experiment("exp")
        (run,) = store.create_runs(experiment.id, [NewRun(id="r" + "0" * 31)])

        def call(method, target, body=None, role="admin", content_type="application/json"):
            headers = {"Authorization": f"Bearer {tokens[role]}"} if role else {}
            if body is not None:
                headers["Content-Type"] = content_type
                if not isinstance(body, bytes):
                    body = json.dumps(body).encode()
            status, parsed, data = raw_request(url, method, target, body, headers=headers)
            assert SECRET.encode() not in data and b"root:x:0:0" not in data, data[:300]
            return status, parsed

        yield call, experiment.id, run.id, tmp_path


def _tree(root):
    return {os.path.join(d, n) for d, dirs, files in os.walk(root) for n in dirs + files}


def _targets():
    for method, path, role, _ in ROUTES:
        yield method, path.replace("{model_id}", "m-1").replace("{tag_key}", "k"), role
    base = "/mlflow-artifacts/artifacts"
    yield "GET", base, "reader"
    # CVE-2026-2651: multipart endpoints without resource authorization
    for action in ("create", "complete", "abort"):
        yield "POST", f"/mlflow-artifacts/mpu/{action}/0/r/artifacts/x", "contributor"
    for method, role in (("GET", "reader"), ("PUT", "contributor"), ("DELETE", "contributor")):
        yield method, f"{base}/0/r/artifacts/a.txt", role


@pytest.mark.parametrize("prefix", ["/api/2.0", "/ajax-api/2.0"])
def test_every_mlflow_route_needs_a_token_and_its_role(served, prefix):
    call, *_ = served
    ranks = ["reader", "contributor", "admin"]
    for method, path, role in _targets():
        body = b"{}" if method in ("POST", "PATCH", "PUT") else None
        status, parsed = call(method, prefix + path, body, role=None)
        assert status == 401 and parsed["error_code"] == "UNAUTHENTICATED", (method, path)
        for lower in ranks[: ranks.index(role)]:
            status, parsed = call(method, prefix + path, body, role=lower)
            assert status == 403 and parsed["error_code"] == "PERMISSION_DENIED", (path, lower)


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        # CVE-2023-1177 and its bypasses: registered models, model versions with a `source`
        ("POST", "/api/2.0/mlflow/registered-models/create", {"name": "m"}),
        ("POST", "/api/2.0/mlflow/model-versions/create", {"name": "m", "source": "file:///etc/"}),
        ("POST", "/api/2.0/mlflow/model-versions/create", {"name": "m", "source": "//proc/self/"}),
        ("GET", "/model-versions/get-artifact?path=passwd&name=m&version=1", None),
        ("GET", "/ajax-api/2.0/mlflow/model-versions/get-artifact?path=passwd&name=m", None),
        ("GET", "/get-artifact?run_id=r&path=../../../../etc/passwd", None),
        # CVE-2023-6014: accounts created without authentication
        ("POST", "/api/2.0/mlflow/users/create", {"username": "x", "password": "y"}),
        # CVE-2026-0545: job execution through routes that skipped auth
        ("POST", "/ajax-api/3.0/jobs/", {"job_name": "run_task", "params": {"command": "id"}}),
        ("POST", "/v1/traces", {}),
        ("POST", "/graphql", {"query": "{ __schema { types { name } } }"}),
    ],
)
@pytest.mark.parametrize("role", [None, "admin"])
def test_routes_runyard_does_not_have_are_404_with_or_without_a_token(
    served, method, target, body, role
):
    call, *_ = served
    status, _ = call(method, target, body, role=role)
    assert status in (401, 404), (target, status)
    if role is not None:
        assert status == 404


LOCATIONS = [
    "file:///etc/",
    "/etc",
    "http:///?/../../../../etc/",  # CVE-2023-6909
    "http:///#/../../../../etc/",  # CVE-2024-2928
    "http:///#../../../../secret.txt",  # CVE-2024-3848, CVE-2024-1483
    "s3://attacker-bucket/x",
    "http://127.0.0.1:1/steal",  # SSRF through get-artifact (an unconfirmed report)
    "runs:/r/artifacts",
    "file:" + "A" * 3000,
]


@pytest.mark.parametrize("location", LOCATIONS)
def test_an_experiments_artifact_location_is_never_used(served, location):
    call, _, _, tmp_path = served
    before = _tree(tmp_path)
    status, parsed = call(
        "POST",
        "/api/2.0/mlflow/experiments/create",
        {"name": "e-" + uuid.uuid4().hex, "artifact_location": location},
    )
    assert status == 200, parsed
    experiment_id = parsed["experiment_id"]
    status, parsed = call("GET", f"/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}")
    assert parsed["experiment"]["artifact_location"] == f"mlflow-artifacts:/{experiment_id}"
    status, parsed = call("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": experiment_id})
    run = parsed["run"]["info"]
    assert run["artifact_uri"] == f"mlflow-artifacts:/{experiment_id}/{run['run_id']}/artifacts"
    target = f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run['run_id']}/artifacts/a.txt"
    status, _ = call("PUT", target, b"data", content_type="application/octet-stream")
    assert status == 200
    listed = call("GET", f"/api/2.0/mlflow/artifacts/list?run_id={run['run_id']}")[1]
    assert [f["path"] for f in listed["files"]] == ["a.txt"]
    created = {p for p in _tree(tmp_path) - before if not p.startswith(str(tmp_path / "ws"))}
    assert not created


PATHS = [
    "../../secret.txt",
    "0/r/../../../secret.txt",
    "%2e%2e%2f%2e%2e%2fsecret.txt",
    "%252E%252E%252F%252E%252E%252Fsecret.txt",  # CVE-2023-6831, double-encoded
    "%25252E%25252E%25252Fsecret.txt",  # CVE-2024-1560, decoded once more
    "{exp}/{run}/artifacts/..%2f..%2f..%2f..%2fsecret.txt",
    "{exp}/{run}/artifacts/..;/..;/..;/secret.txt",  # CVE-2024-1593
    "{exp}/{run}/artifacts/..\\..\\..\\secret.txt",
    "{exp}/{run}/artifacts/a%00b",
    "{exp}/{run}/artifacts/%2fetc%2fpasswd",
    "{exp}/{run}/artifacts/x#/../../../../secret.txt",
    "/etc/passwd",
    "{exp}/{run}/artifacts/" + "a/" * 1200 + "b",
    "{exp}/../../etc/artifacts/passwd",
]


@pytest.mark.parametrize("raw", PATHS)
def test_traversal_on_the_artifact_proxy_is_refused(served, raw):
    call, experiment_id, run_id, tmp_path = served
    path = raw.format(exp=experiment_id, run=run_id)
    before = _tree(tmp_path)
    for prefix in ("/api/2.0", "/ajax-api/2.0"):
        base = f"{prefix}/mlflow-artifacts/artifacts"
        for method, body in (("GET", None), ("PUT", b"x"), ("DELETE", None)):
            status, parsed = call(method, f"{base}/{path}", body, content_type="text/plain")
            if "#" in path and status == 200:
                continue  # the HTTP parser drops a fragment: this is the run's file "x"
            assert status in (400, 404), (method, path, status, parsed)
        status, parsed = call("GET", f"{base}?path={path}")
        assert status in (400, 404) or parsed == {"files": []}, (path, status, parsed)
        status, parsed = call("GET", f"{prefix}/mlflow/artifacts/list?run_id={run_id}&path={path}")
        assert status in (400, 404) or parsed.get("files") in (None, []), (path, parsed)
    new = {p for p in _tree(tmp_path) - before if os.path.basename(p) != "x"}
    assert not new or ("#" in path and all(str(tmp_path / "ws") in p for p in new)), new
    assert (tmp_path / "secret.txt").read_text() == SECRET


@pytest.mark.parametrize("run_id", ["..", "../../etc", "/etc/passwd", "a\\..\\b", "%2e%2e"])
def test_ids_that_look_like_paths_find_nothing(served, run_id):
    call, *_ = served
    for target in (
        f"/api/2.0/mlflow/runs/get?run_id={run_id}",
        f"/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=x",
        f"/api/2.0/mlflow/artifacts/list?run_id={run_id}",
        f"/api/2.0/mlflow/logged-models/{run_id}",
    ):
        status, parsed = call("GET", target)
        assert status in (400, 404) and parsed["error_code"], (target, status)
