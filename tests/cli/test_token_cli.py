"""runyard token / login / logout, and the credentials file they keep."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from runyard import _credentials
from runyard.cli import main
from runyard.cli.token import parse_duration
from runyard.errors import RunyardError, UserError
from runyard.server.api import tokens as tokens_api
from runyard.store import open_store
from tests.live_server import serve_app


@pytest.fixture(autouse=True)
def _own_environment(tmp_path, monkeypatch) -> None:
    for name in list(os.environ):
        if name.startswith("RUNYARD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def runyard(*args: str, input: str | None = None) -> tuple[int, str, str]:
    with CliRunner().isolation(input=input) as (out, err, _):
        code = main(list(args))
    return code, out.getvalue().decode(), err.getvalue().decode()


def ok(*args: str, input: str | None = None) -> object:
    code, out, err = runyard(*args, input=input)
    assert code == 0, err
    return json.loads(out) if out.strip() else None


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "proj"
    ok("init", "--path", str(root), "-e", "demo")
    return root


def test_token_commands_on_a_local_workspace(project):
    here = ("--path", str(project))
    created = ok("token", "create", "--name", "ci", "--role", "contributor", "--expires", "30d",
                 *here)  # fmt: skip
    assert created["name"] == "ci" and created["role"] == "contributor"
    assert created["token"].startswith("ry_") and created["state"] == "active"
    assert created["expires"].endswith("Z") and "(runyard token create)" in created["created_by"]
    store = open_store(str(project / ".runyard"))
    assert store.find_token(created["token"]).name == "ci"

    listed = ok("token", "list", *here)
    assert [t["name"] for t in listed] == ["ci"] and "token" not in listed[0]
    code, out, _ = runyard("token", "list", "-o", "table", *here)
    assert code == 0 and "ci" in out and "contributor" in out and created["token"] not in out

    code, _, err = runyard("token", "create", "--name", "ci", "--role", "admin", *here)
    assert code == 1 and err.startswith("error: a token named 'ci' exists already")
    code, _, err = runyard("token", "create", "--name", "x", "--role", "owner", *here)
    assert code == 2 and "owner" in err
    code, _, err = runyard("token", "create", "--name", "x", "--role", "reader",
                           "--expires", "soon", *here)  # fmt: skip
    assert code == 1 and "30d, 12h, 90m or 3600s" in err

    assert ok("token", "revoke", "ci", *here)["state"] == "revoked"
    assert store.find_token(created["token"]).state() == "revoked"
    code, _, err = runyard("token", "revoke", "nobody", *here)
    assert code == 1 and "no token named 'nobody'" in err
    store.close()


def test_durations():
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("12h") == 43200
    assert parse_duration("90m") == 5400
    assert parse_duration("3600s") == 3600
    assert parse_duration("1.5h") == 5400
    for bad in ("", "30", "d", "0d", "-1d", "3 days", "1y"):
        with pytest.raises(UserError, match="not a duration"):
            parse_duration(bad)


# -- the credentials file -------------------------------------------------------------------
def test_credentials_file_is_private_and_keyed_by_server(tmp_path, monkeypatch):
    path = Path(_credentials.credentials_path())
    assert path == tmp_path / "config" / "runyard" / "credentials.json"
    assert _credentials.token_for("http://gpu-box:8600") is None

    _credentials.save_token("http://GPU-box:8600/", "ry_one")
    _credentials.save_token("https://gpu-box", "ry_two")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert set(json.loads(path.read_text())["servers"]) == {
        "http://gpu-box:8600", "https://gpu-box:443",
    }  # fmt: skip
    assert _credentials.token_for("http://gpu-box:8600") == "ry_one"
    assert _credentials.token_for("https://gpu-box:443/") == "ry_two"
    assert _credentials.token_for("http://gpu-box") is None  # port 80: another server

    monkeypatch.setenv("RUNYARD_TOKEN", "ry_env")
    assert _credentials.token_for("http://gpu-box:8600") == "ry_env"
    monkeypatch.delenv("RUNYARD_TOKEN")

    assert _credentials.forget_token("http://gpu-box:8600") is True
    assert _credentials.forget_token("http://gpu-box:8600") is False
    assert _credentials.token_for("http://gpu-box:8600") is None
    assert _credentials.token_for("https://gpu-box") == "ry_two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".credentials.")] == [
        ".credentials.lock"
    ]  # no temporary file left behind

    path.chmod(0o644)
    with pytest.raises(UserError, match="chmod 600"):
        _credentials.token_for("https://gpu-box")
    for bad in ("gpu-box:8600", "ftp://gpu-box", "http://user:pw@gpu-box", "http://h:99999"):
        with pytest.raises(UserError):
            _credentials.server_key(bad)


# -- login against a real server ------------------------------------------------------------
@pytest.fixture
def server(tmp_path) -> Iterator[tuple[str, object, str]]:
    """A server with the token routes (auth on) on a real port; (URL, store, admin secret)."""
    store = open_store(str(tmp_path / "server-ws"))
    _, secret = store.create_token("root", "admin")
    app = FastAPI()
    app.state.store = store
    app.state.settings = SimpleNamespace(auth=True)

    @app.exception_handler(RunyardError)
    async def runyard_error(request: Request, exc: RunyardError) -> JSONResponse:
        body = {"error": {"code": exc.code, "message": str(exc)}}
        return JSONResponse(body, status_code=exc.http_status)

    app.include_router(tokens_api.router, prefix="/api/v1")
    with serve_app(app) as url:
        yield url, store, secret
    store.close()


def test_login_checks_the_token_then_keeps_it(server):
    url, store, secret = server
    code, _, err = runyard("login", url, input="ry_wrong\n")
    assert code == 1 and "not known to this runyard server" in err
    assert _credentials.token_for(url) is None

    done = ok("login", url, input=secret + "\n")
    assert (done["name"], done["role"]) == ("root", "admin")
    assert _credentials.token_for(url) == secret
    assert stat.S_IMODE(os.stat(_credentials.credentials_path()).st_mode) == 0o600

    # the token commands on an http(s) workspace go through the server, with that token
    created = ok("token", "create", "--name", "ci", "--role", "reader", "--workspace", url)
    assert created["created_by"] == "root" and store.find_token(created["token"]).name == "ci"
    assert [t["name"] for t in ok("token", "list", "--workspace", url)] == ["root", "ci"]
    assert ok("token", "revoke", "ci", "--workspace", url)["state"] == "revoked"

    # a reader logged in may not manage tokens
    _, reading = store.create_token("viewer", "reader")
    ok("login", url, "--token", reading)
    code, _, err = runyard("token", "list", "--workspace", url)
    assert code == 1 and "has role reader; this request needs admin" in err

    assert ok("logout", url)["forgotten"] is True
    code, _, err = runyard("token", "list", "--workspace", url)
    assert code == 1 and "needs a token" in err
    assert ok("logout", url)["forgotten"] is False
