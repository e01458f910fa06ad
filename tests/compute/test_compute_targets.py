"""Attaching, listing, showing and detaching compute targets: SDK, CLI and server."""

from __future__ import annotations

import json

import httpx
import pytest

from runyard import Workspace
from runyard.compute import ComputeTarget, RayCompute
from runyard.errors import Conflict, Forbidden, NotFound, UserError
from tests.cli.test_cli import cli, ok

pytestmark = pytest.mark.xdist_group("ray")  # one Ray cluster: one test worker


def test_attach_list_show_detach(ws, ray_url):
    target = ComputeTarget.attach(ws, "ray-cpu", RayCompute.attach_configuration(ray_url + "/"))
    assert isinstance(target, RayCompute)
    assert (target.name, target.type, target.address) == ("ray-cpu", "ray", ray_url)
    assert list(ws.compute_targets) == ["ray-cpu"]
    again = ComputeTarget(workspace=ws, name="ray-cpu")
    assert again.serialize()["createdBy"] and again.get_status()["state"] == "Reachable"
    with pytest.raises(Conflict, match="attached already"):
        ComputeTarget.attach(ws, "ray-cpu", RayCompute.attach_configuration(ray_url))
    again.detach()
    assert ws.compute_targets == {}
    with pytest.raises(NotFound, match="no compute target named 'ray-cpu'"):
        ComputeTarget(ws, "ray-cpu")
    with pytest.raises(NotFound):
        again.detach()


@pytest.mark.parametrize(
    "name",
    [
        "..",
        "/",
        "a/b",
        "x\x00y",
        "\ud800x",
        "n" * 10_000,
        "local",
        "LOCAL",
        "-ray",
        "r",
        "",
        "é-ray",
    ],
)
def test_bad_names_change_nothing(local_ws, ray_url, name):
    with pytest.raises(UserError):
        ComputeTarget.attach(local_ws, name, RayCompute.attach_configuration(ray_url))
    assert local_ws.compute_targets == {}


@pytest.mark.parametrize(
    "address",
    [
        "ftp://head:8265", "head:8265", "http://", "http://u:p@head:8265", "http://he ad:8265",
        "http://head:99999", "http://head:8265/?x=1", "http://h\x00:1", "http://" + "h" * 10_000,
    ],
)  # fmt: skip
def test_bad_addresses_change_nothing(local_ws, address):
    with pytest.raises(UserError):
        ComputeTarget.attach(local_ws, "ray-cpu", RayCompute.attach_configuration(address))
    assert local_ws.compute_targets == {}


def test_a_cluster_that_does_not_answer_is_not_attached(ws):
    with pytest.raises(UserError, match=r"no Ray cluster answers at http://127\.0\.0\.1:9"):
        ComputeTarget.attach(ws, "ray-cpu", RayCompute.attach_configuration("http://127.0.0.1:9"))
    assert ws.compute_targets == {}


def test_only_an_admin_attaches_through_a_server(tmp_path, ray_url, monkeypatch):
    from tests.live_server import serve_workspace

    with serve_workspace(str(tmp_path / "ws"), auth=True) as (url, store):
        secrets = {role: store.create_token(role, role)[1] for role in ("reader", "admin")}
        monkeypatch.setenv("RUNYARD_TOKEN", secrets["reader"])
        reader = Workspace(url)
        with pytest.raises(Forbidden):
            ComputeTarget.attach(reader, "ray-cpu", RayCompute.attach_configuration(ray_url))
        monkeypatch.setenv("RUNYARD_TOKEN", secrets["admin"])
        admin = Workspace(url)
        ComputeTarget.attach(admin, "ray-cpu", RayCompute.attach_configuration(ray_url))
        assert list(reader.compute_targets) == ["ray-cpu"]  # readers see them: submitters do
        with pytest.raises(Forbidden):
            ComputeTarget(reader, "ray-cpu").detach()
        headers = {"Authorization": f"Bearer {secrets['admin']}"}
        for path in ("..%2F..%2Fetc", "%00", "a%2Fb"):
            answer = httpx.get(f"{url}/api/v1/computes/{path}", headers=headers)
            assert answer.status_code == 404, (path, answer.text)
        answer = httpx.post(
            f"{url}/api/v1/computes", headers=headers,
            json={"name": "x", "type": "slurm", "address": ray_url},
        )  # fmt: skip
        assert answer.status_code == 400 and "type: Input should be 'ray'" in answer.text
        for name in ("..", "a/b", "x\x00", "local", "n" * 101):
            body = {"name": name, "type": "ray", "address": ray_url}
            answer = httpx.post(f"{url}/api/v1/computes", headers=headers, json=body)
            assert answer.status_code == 400, (name, answer.text)
        assert list(admin.compute_targets) == ["ray-cpu"]
        assert store.get_compute("ray-cpu").created_by == "admin"


def test_the_command_line(tmp_path, ray_url):
    ws = str(tmp_path / "ws")
    env = {"RUNYARD_URI": ws}
    Workspace(ws)._store.close()  # runyard init made it
    command = ["compute", "attach", "ray-cpu", "--type", "ray", "--address", ray_url]
    attached = json.loads(ok(*command, cwd=tmp_path, env=env))
    assert attached["name"] == "ray-cpu" and attached["address"] == ray_url
    table = ok("compute", "list", "-o", "table", cwd=tmp_path, env=env)
    assert "ray-cpu" in table and ray_url in table
    shown = ok("compute", "show", "ray-cpu", "--query", "status.state", cwd=tmp_path, env=env)
    assert json.loads(shown) == "Reachable"
    command[2] = "local"
    refused = cli(*command, cwd=tmp_path, env=env)
    assert refused.returncode == 1 and "'local' names the local compute target" in refused.stderr
    ok("compute", "detach", "ray-cpu", cwd=tmp_path, env=env)
    assert json.loads(ok("compute", "list", cwd=tmp_path, env=env)) == []
    gone = cli("compute", "show", "ray-cpu", cwd=tmp_path, env=env)
    assert gone.returncode == 1 and "no compute target named 'ray-cpu'" in gone.stderr
