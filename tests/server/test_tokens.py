"""Server tokens: the SqlStore methods (hashed at rest, names, expiry, run scope, the first
admin token raced by two processes) and the auth dependencies in a small app of their own."""

from __future__ import annotations

import multiprocessing
import time
from types import SimpleNamespace
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from runyard import Experiment, Workspace
from runyard.errors import Conflict, Forbidden, NotFound, RunyardError, UserError
from runyard.server import auth
from runyard.server.api import tokens as tokens_api
from runyard.server.auth import Principal, admin, contributor, reader, require_run
from runyard.store import open_store
from runyard.store.sql.tokens import digest_of


@pytest.fixture
def store(ws_uri):
    uri, _ = ws_uri
    s = open_store(uri)
    yield s
    s.close()


def _raw_rows(store) -> list[tuple]:
    return [tuple(r) for r in store.db.read("SELECT * FROM tokens")]


# -- the store ---------------------------------------------------------------------------
def test_create_find_list_revoke(store):
    record, secret = store.create_token("alice", "reader", created_by="ops")
    assert secret.startswith("ry_") and len(secret) > 40
    assert (record.name, record.role, record.created_by, record.state()) == (
        "alice", "reader", "ops", "active",
    )  # fmt: skip
    assert store.find_token(secret) == record
    assert store.find_token(secret + "x") is None
    assert store.find_token("") is None
    assert store.find_token("x" * 10_000) is None
    assert [t.name for t in store.list_tokens()] == ["alice"]
    assert store.count_tokens() == 1

    revoked = store.revoke_token("alice")
    assert revoked.state() == "revoked" and revoked.revoked is not None
    assert store.find_token(secret).state() == "revoked"  # found, so auth can say why
    assert store.revoke_token("alice").revoked == revoked.revoked  # again: unchanged
    with pytest.raises(NotFound, match="no token named 'bob'"):
        store.revoke_token("bob")


def test_secret_is_stored_only_as_its_digest(store):
    _, secret = store.create_token("alice", "admin")
    rows = _raw_rows(store)
    assert rows and all(secret not in str(value) for row in rows for value in row)
    assert digest_of(secret) in rows[0]
    listed = store.list_tokens()[0]
    assert digest_of(secret) not in repr(listed) and secret not in repr(listed)


def test_names_and_roles_are_checked(store):
    for bad in ["", "x" * 101, "a/b", "bad name", " lead", "nul\x00", "run:abc"]:
        with pytest.raises(UserError):
            store.create_token(bad, "reader")
    with pytest.raises(UserError, match="reader, contributor, admin"):
        store.create_token("alice", "owner")
    with pytest.raises(UserError, match="in the past"):
        store.create_token("alice", "reader", expires=time.time() - 1)
    store.create_token("alice@laptop.ci-1", "reader")
    assert store.count_tokens() == 1


def test_duplicate_active_name_is_a_conflict_but_a_revoked_name_is_reusable(store):
    _, first = store.create_token("alice", "reader")
    with pytest.raises(Conflict, match="exists already"):
        store.create_token("alice", "admin")
    store.revoke_token("alice")
    record, second = store.create_token("alice", "admin")
    assert record.role == "admin" and store.find_token(second).state() == "active"
    assert store.find_token(first) is None


def test_expiry(store):
    record, secret = store.create_token("short", "reader", expires=time.time() + 0.3)
    assert record.state() == "active"
    time.sleep(0.4)
    assert store.find_token(secret).state() == "expired"
    store.create_token("short", "reader")  # an expired token's name is free again


def test_run_tokens_can_be_minted_again_and_go_with_their_creator(store):
    one = store.create_run_token("run_1", "alice")
    two = store.create_run_token("run_1", "alice")
    a, b = store.find_token(one), store.find_token(two)
    assert a.name != b.name and a.name.startswith("run:run_1:")
    assert (a.role, a.scope_run_id, a.created_by) == ("contributor", "run_1", "alice")
    assert 29 * 86400 < a.expires - time.time() <= 30 * 86400
    grandchild = store.create_run_token("run_2", a.name)  # minted by a run token
    store.create_token("alice", "contributor")
    store.revoke_token("alice")
    for secret in (one, two, grandchild):
        assert store.find_token(secret).state() == "revoked"


def test_touch_token_is_throttled(store):
    _, secret = store.create_token("alice", "reader")
    store.touch_token("alice", now=1000.0 + time.time())
    first = store.find_token(secret).last_used
    store.touch_token("alice", now=first + 10)
    assert store.find_token(secret).last_used == first
    store.touch_token("alice", now=first + 61)
    assert store.find_token(secret).last_used == first + 61


def test_token_lookup_is_fast(tmp_path):
    store = open_store(str(tmp_path / "ws"))
    for i in range(300):
        store.create_token(f"user{i}", "reader")
    _, secret = store.create_token("alice", "reader")
    store.find_token(secret)
    n = 500
    start = time.perf_counter()
    for _ in range(n):
        store.find_token(secret)
    per_lookup = (time.perf_counter() - start) / n
    assert per_lookup < 0.001, f"{per_lookup * 1e6:.0f} µs per token lookup"


def _ensure(uri: str, barrier, results) -> None:
    store = open_store(uri)
    store.count_tokens()  # connected and migrated before the race
    barrier.wait()
    results.put(auth.ensure_admin_token(store))
    store.close()


def test_ensure_admin_token_from_two_processes_creates_one(ws_uri):
    uri, _ = ws_uri
    open_store(uri).close()
    ctx = multiprocessing.get_context("spawn")
    for _ in range(3):
        store = open_store(uri)
        store.db.write(lambda cur: cur.execute("DELETE FROM tokens"))
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_ensure, args=(uri, barrier, results)) for _ in range(2)]
        for p in procs:
            p.start()
        secrets = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
        created = [s for s in secrets if s is not None]
        assert len(created) == 1
        assert [(t.name, t.role) for t in store.list_tokens()] == [("admin", "admin")]
        assert store.find_token(created[0]).name == "admin"
        assert auth.ensure_admin_token(store) is None  # tokens exist: nothing more
        store.close()


# -- the auth dependencies, in an app of their own -----------------------------------------
def _app(store, auth_on: bool = True) -> TestClient:
    app = FastAPI()
    app.state.store = store
    app.state.settings = SimpleNamespace(auth=auth_on)

    @app.exception_handler(RunyardError)
    async def runyard_error(request: Request, exc: RunyardError) -> JSONResponse:
        body = {"error": {"code": exc.code, "message": str(exc)}}
        return JSONResponse(body, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        body = {"error": {"code": "UserError", "message": str(exc.errors())}}
        return JSONResponse(body, status_code=400)

    @app.get("/read")
    def read(who: Annotated[Principal, Depends(reader)]) -> dict:
        return {"name": who.name, "role": who.role}

    @app.post("/write")
    def write(who: Annotated[Principal, Depends(contributor)]) -> dict:
        return {"name": who.name}

    @app.post("/manage")
    def manage(who: Annotated[Principal, Depends(admin)]) -> dict:
        return {"name": who.name}

    @app.post("/runs/{run_id}/change")
    def change(run_id: str, who: Annotated[Principal, Depends(contributor)]) -> dict:
        require_run(who, store, run_id)
        return {"ok": True}

    app.include_router(tokens_api.router, prefix="/api/v1")
    return TestClient(app)


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _error(response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


def test_roles_and_their_errors(store):
    client = _app(store)
    secrets = {role: store.create_token(role, role)[1] for role in auth.ROLES}
    status, code, message = _error(client.get("/read"))
    assert (status, code) == (401, "Unauthenticated") and "RUNYARD_TOKEN" in message
    assert "runyard login" in message
    assert _error(client.get("/read", headers={"Authorization": "Basic abc"}))[0] == 401
    status, _, message = _error(client.get("/read", headers=_bearer("ry_wrong")))
    assert status == 401 and "not known" in message

    allowed = {"reader": {"/read"}, "contributor": {"/read", "/write"},
               "admin": {"/read", "/write", "/manage"}}  # fmt: skip
    for role, secret in secrets.items():
        for path, needs in (("/read", "reader"), ("/write", "contributor"), ("/manage", "admin")):
            method = client.get if path == "/read" else client.post
            response = method(path, headers=_bearer(secret))
            if path in allowed[role]:
                assert response.status_code == 200, response.text
                assert response.json()["name"] == role
            else:
                status, code, message = _error(response)
                assert (status, code) == (403, "Forbidden")
                assert message == f"token {role!r} has role {role}; this request needs {needs}"


def test_revocation_and_expiry_take_effect_on_the_next_request(store):
    client = _app(store)
    _, secret = store.create_token("alice", "contributor")
    assert client.post("/write", headers=_bearer(secret)).status_code == 200
    store.revoke_token("alice")
    status, _, message = _error(client.post("/write", headers=_bearer(secret)))
    assert status == 401 and "'alice' was revoked" in message

    _, short = store.create_token("brief", "reader", expires=time.time() + 0.3)
    assert client.get("/read", headers=_bearer(short)).status_code == 200
    time.sleep(0.4)
    status, _, message = _error(client.get("/read", headers=_bearer(short)))
    assert status == 401 and "'brief' expired at" in message


def test_use_is_noted_at_most_once_a_minute(store):
    client = _app(store)
    _, secret = store.create_token("alice", "reader")
    client.get("/read", headers=_bearer(secret))
    first = store.find_token(secret).last_used
    assert first is not None
    client.get("/read", headers=_bearer(secret))
    assert store.find_token(secret).last_used == first


def test_auth_off_answers_as_an_anonymous_admin(store):
    client = _app(store, auth_on=False)
    assert client.post("/manage").json() == {"name": "anonymous"}
    assert client.get("/api/v1/whoami").json() == {
        "name": "anonymous", "role": "admin", "scope_run_id": None,
    }  # fmt: skip


def test_run_tokens_are_limited_to_their_run_tree(ws_uri, tmp_path, monkeypatch):
    uri, artifacts = ws_uri
    monkeypatch.chdir(tmp_path)
    workspace = Workspace(uri, artifacts=artifacts)
    store = workspace._store
    exp = Experiment(workspace, "scope")
    parent = exp.start_logging(snapshot_directory=None, outputs=False)
    child = parent.child_run("kid")
    grandchild = child.child_run("grandkid")
    sibling = exp.start_logging(snapshot_directory=None, outputs=False)
    client = _app(store)
    _, owner = store.create_token("alice", "contributor")
    response = client.post(f"/api/v1/runs/{child.id}/token", headers=_bearer(owner))
    assert response.status_code == 201, response.text
    scoped = response.json()["token"]
    assert response.json()["name"].startswith(f"run:{child.id}:")
    assert client.get("/api/v1/whoami", headers=_bearer(scoped)).json() == {
        "name": response.json()["name"], "role": "contributor", "scope_run_id": child.id,
    }  # fmt: skip

    for run, allowed in ((child, True), (grandchild, True), (parent, False), (sibling, False)):
        response = client.post(f"/runs/{run.id}/change", headers=_bearer(scoped))
        if allowed:
            assert response.status_code == 200, response.text
        else:
            status, _, message = _error(response)
            assert status == 403 and f"belongs to run {child.id}" in message
    assert client.get("/read", headers=_bearer(scoped)).status_code == 200  # reads anything
    assert client.post("/manage", headers=_bearer(scoped)).status_code == 403
    # a run token mints only inside its tree
    assert (
        client.post(f"/api/v1/runs/{parent.id}/token", headers=_bearer(scoped)).status_code == 403
    )
    assert (
        client.post(f"/api/v1/runs/{grandchild.id}/token", headers=_bearer(scoped)).status_code
        == 201
    )
    assert client.post("/api/v1/runs/nope/token", headers=_bearer(owner)).status_code == 404

    # a run token creates runs only inside its tree: never a top-level one
    with pytest.raises(Forbidden, match="not top-level runs"):
        require_run(Principal("run:x", "contributor", child.id), store, None)
    require_run(Principal("alice", "contributor", None), store, None)

    # it stops working an hour after its run ended
    grandchild.complete()
    child.complete()
    assert client.post(f"/runs/{child.id}/change", headers=_bearer(scoped)).status_code == 200
    monkeypatch.setattr(auth, "SCOPE_GRACE_SECONDS", 0.0)
    status, _, message = _error(client.get("/read", headers=_bearer(scoped)))
    assert status == 401 and f"its run {child.id} ended (Completed)" in message
    parent.complete()
    sibling.complete()
    workspace._store.close()


def test_token_routes(store):
    client = _app(store)
    _, root = store.create_token("root", "admin")
    _, reading = store.create_token("viewer", "reader")
    h = _bearer(root)

    body = {"name": "ci", "role": "contributor", "expires_in_seconds": 3600}
    response = client.post("/api/v1/tokens", json=body, headers=h)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["created_by"] == "root" and created["state"] == "active"
    assert 3590 < created["expires"] - time.time() <= 3600
    assert client.get("/api/v1/whoami", headers=_bearer(created["token"])).json()["name"] == "ci"

    listed = client.get("/api/v1/tokens", headers=h).json()
    assert [t["name"] for t in listed] == ["root", "viewer", "ci"]
    assert all("token" not in t and "digest" not in t for t in listed)

    assert client.post("/api/v1/tokens", json={"name": "ci", "role": "admin"},
                       headers=h).status_code == 409  # fmt: skip
    for body in (
        {"name": "x", "role": "owner"},
        {"name": "x", "role": "reader", "extra": 1},
        {"name": "x", "role": "reader", "expires_in_seconds": -5},
        {"role": "reader"},
    ):
        assert client.post("/api/v1/tokens", json=body, headers=h).status_code == 400, body
    assert client.post("/api/v1/tokens", json={"name": "a/b", "role": "reader"},
                       headers=h).status_code == 400  # fmt: skip

    for method, path in (("GET", "/api/v1/tokens"), ("POST", "/api/v1/tokens"),
                         ("DELETE", "/api/v1/tokens/ci")):  # fmt: skip
        body = {"name": "y", "role": "reader"} if method == "POST" else None
        response = client.request(method, path, headers=_bearer(reading), json=body)
        assert response.status_code == 403
        assert client.request(method, path).status_code == 401

    revoked = client.delete("/api/v1/tokens/ci", headers=h)
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    assert client.get("/api/v1/whoami", headers=_bearer(created["token"])).status_code == 401
    assert client.delete("/api/v1/tokens/nobody", headers=h).status_code == 404
