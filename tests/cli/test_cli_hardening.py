"""The CLI as a hostile user meets it: typos, PostgreSQL, finished runs, NaN, option order.

Every command runs as a real subprocess against a real workspace (SQLite or PostgreSQL).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runyard import Experiment, Workspace

from . import test_cli
from .test_cli import RUNYARD, cli, ok

project = test_cli.project  # the fixture: a project with three runs


def _strict_json(text: str):
    def refuse(constant: str):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _no_raw_warning(stderr: str) -> None:
    assert "Warning:" not in stderr and ".py:" not in stderr and "Traceback" not in stderr


def test_init_and_commands_on_postgresql(pg_uri, tmp_path):
    bad = cli("init", "--path", "proj", "--workspace", pg_uri, cwd=tmp_path)
    assert bad.returncode == 2 and "--artifacts" in bad.stderr
    art = tmp_path / "shared-artifacts"
    out = _strict_json(ok("init", "--path", "proj", "--workspace", pg_uri, "--artifacts",
                          str(art), "-e", "pg", cwd=tmp_path))  # fmt: skip
    assert out["Workspace"] == pg_uri and art.is_dir()
    config = json.loads((tmp_path / "proj" / ".runyard" / "config.json").read_text())
    assert config == {"uri": pg_uri, "artifacts": str(art), "experiment": "pg"}
    ws = Workspace.from_config(tmp_path / "proj")
    run = Experiment(ws, "pg").start_logging(snapshot_directory=None, outputs=False)
    run.log("loss", 0.5)
    run.complete()
    listed = _strict_json(ok("run", "list", cwd=tmp_path / "proj"))
    assert [r["run_id"] for r in listed] == [run.id]
    env = {"RUNYARD_ARTIFACTS": str(art)}
    shown = ok("--workspace", pg_uri, "run", "show", "-r", run.id, cwd=tmp_path, env=env)
    assert _strict_json(shown)["status"] == "Completed"
    flags = ok("-o", "json", "--workspace", pg_uri, "--artifacts", str(art), "run", "metrics",
               "-r", run.id, cwd=tmp_path)  # fmt: skip
    assert _strict_json(flags) == {"loss": 0.5}
    no_art = cli("run", "list", "--workspace", pg_uri, "-e", "pg", cwd=tmp_path)
    assert no_art.returncode == 2 and "--artifacts" in no_art.stderr
    empty = cli("run", "list", "--workspace", pg_uri.replace("search_path%3D", "search_path%3Dx"),
                "--artifacts", str(art), "-e", "pg", cwd=tmp_path)  # fmt: skip
    assert empty.returncode == 1 and "no runyard tables" in empty.stderr


def test_read_only_commands_never_create_experiments(project):
    for args in (["run", "list", "-e", "typo"], ["experiment", "show", "-e", "typo"]):
        done = cli(*args, cwd=project)
        assert done.returncode == 1, args
        assert "no experiment named 'typo'" in done.stderr and "article" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    names = [e["name"] for e in json.loads(ok("experiment", "list", "--view-type", "All",
                                               cwd=project))]  # fmt: skip
    assert names == ["article"]


@pytest.mark.parametrize(
    "args",
    [
        ["run", "list", "-e", "x"],
        ["run", "show", "-r", "x"],
        ["run", "metrics", "-r", "x"],
        ["run", "cancel", "-r", "x"],
        ["run", "update", "-r", "x", "--add-tag", "a=b"],
        ["experiment", "list"],
        ["experiment", "archive", "-e", "x"],
    ],
)
def test_only_init_creates_a_workspace(tmp_path, args):
    typo = tmp_path / "typo"
    done = cli(*args, "--workspace", str(typo), cwd=tmp_path)
    assert done.returncode == 1 and "no runyard workspace at" in done.stderr, done.stderr
    env = cli(*args, cwd=tmp_path, env={"RUNYARD_URI": str(typo)})
    assert env.returncode == 1 and "no runyard workspace at" in env.stderr
    (tmp_path / "p" / ".runyard").mkdir(parents=True)
    (tmp_path / "p" / ".runyard" / "config.json").write_text('{"uri": "../typo"}')
    configured = cli(*args, cwd=tmp_path / "p")
    assert configured.returncode == 1 and "no runyard workspace at" in configured.stderr
    assert not typo.exists()
    assert sorted(os.listdir(tmp_path)) == ["p"]


def test_cancel_says_when_a_run_is_already_finished(project):
    listed = {r["display_name"]: r["run_id"] for r in json.loads(ok("run", "list", cwd=project))}
    done = cli("run", "cancel", "-r", listed["good"], cwd=project)
    assert done.returncode == 1 and done.stdout == ""
    assert "already Completed" in done.stderr and "canceled successfully" not in done.stderr
    _no_raw_warning(done.stderr)
    assert json.loads(ok("run", "show", "-r", listed["good"], cwd=project))["status"] == "Completed"
    running = cli("run", "cancel", "-r", listed["other"], cwd=project)
    assert running.returncode == 0 and "canceled successfully" in running.stderr
    again = cli("run", "cancel", "-r", listed["other"], cwd=project)
    assert again.returncode == 1 and "already Canceled" in again.stderr


def test_json_is_valid_for_nan_and_infinity(project):
    ws = Workspace.from_config(project)
    run = Experiment(ws, "article").start_logging(snapshot_directory=None, outputs=False)
    run.log("nan", float("nan"))
    run.log_list("mixed", [1.0, float("inf"), float("-inf"), float("nan")])
    run.log_row("row", x=float("nan"), y=2)
    run.complete()
    expected = {
        "nan": "NaN",
        "mixed": [1.0, "Infinity", "-Infinity", "NaN"],
        "row": {"x": "NaN", "y": 2},
    }
    for fmt in ("json", "jsonc"):
        out = ok("run", "metrics", "-r", run.id, "-o", fmt, cwd=project)
        assert _strict_json(out) == expected
    queried = ok("run", "metrics", "-r", run.id, "--query", "mixed", cwd=project)
    assert _strict_json(queried) == expected["mixed"]
    table = ok("run", "metrics", "-r", run.id, "-o", "table", cwd=project)
    assert "nan" in table


def test_global_options_before_the_command_group(project, tmp_path):
    as_json = _strict_json(ok("-o", "json", "run", "list", cwd=project))
    assert len(as_json) == 3
    table = ok("-o", "table", "experiment", "list", cwd=project)
    assert table.splitlines()[0].split()[0] == "Name"
    overridden = _strict_json(ok("-o", "table", "run", "list", "-o", "json", cwd=project))
    assert overridden == as_json
    names = _strict_json(ok("--query", "[].display_name", "run", "list", cwd=project))
    assert names == ["other", "good", "plain"]
    ws = str(project / ".runyard")
    elsewhere = ok("--workspace", ws, "run", "list", "-e", "article", cwd=tmp_path)
    assert len(_strict_json(elsewhere)) == 3
    bad = cli("--query", "[?", "run", "list", cwd=project)
    assert bad.returncode == 2 and "JMESPath" in bad.stderr
    debug = cli("--debug", "run", "list", cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert "Output format" in ok("--help", cwd=tmp_path)


def test_an_empty_workspace_option_is_an_error_not_ignored(project):
    done = cli("run", "list", "--workspace", "", cwd=project)
    assert done.returncode == 1 and "must not be empty" in done.stderr


def test_a_path_that_does_not_exist_is_a_usage_error(project):
    done = cli("run", "list", "--path", str(project / "typo"), cwd=project)
    assert done.returncode == 2 and "typo" in done.stderr


def test_a_closed_pipe_ends_quietly(project):
    exp = Experiment(Workspace.from_config(project), "article")
    for i in range(150):  # well over a pipe's 64 KiB of JSON
        exp.start_logging(snapshot_directory=None, outputs=False, tags={"i": i}).complete()
    reader = subprocess.Popen(
        f"{RUNYARD} run list --last 200 | head -c 10", shell=True, cwd=project,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, err = reader.communicate(timeout=60)
    assert len(out) == 10
    assert err == "", err


def test_a_truncated_list_says_so(project):
    done = cli("run", "list", "--last", "2", cwd=project)
    assert done.returncode == 0 and len(json.loads(done.stdout)) == 2
    assert "--last" in done.stderr and "newest 2" in done.stderr
    full = cli("run", "list", "--last", "3", cwd=project)
    assert full.stderr == ""


def test_no_raw_warning_reaches_the_user(project, tmp_path):
    script = (
        "import warnings, sys\n"
        "from runyard.cli import main\n"
        "from runyard.cli import run as r\n"
        "original = r.show.callback\n"
        "def noisy(*a, **k):\n"
        "    warnings.warn('something to know', RuntimeWarning)\n"
        "    return original(*a, **k)\n"
        "r.show.callback = noisy\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    listed = json.loads(ok("run", "list", cwd=project))
    done = subprocess.run(
        [sys.executable, "-c", script, "run", "show", "-r", listed[0]["run_id"]],
        cwd=project, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == "warning: something to know\n"
    assert Path(project).is_dir()


def test_download_reports_what_it_cannot_write(project, tmp_path):
    good = next(
        r for r in json.loads(ok("run", "list", cwd=project)) if r["display_name"] == "good"
    )
    (tmp_path / "dl" / "outputs" / "model.txt").mkdir(parents=True)
    blocked = cli("run", "download", "-r", good["run_id"], "-d", str(tmp_path / "dl"), cwd=project)
    assert blocked.returncode == 1 and "a folder is in the way" in blocked.stderr
    assert list((tmp_path / "dl" / "outputs" / "model.txt").iterdir()) == []
    (tmp_path / "afile").write_text("x")
    under_file = cli("run", "download", "-r", good["run_id"], "-d", str(tmp_path / "afile" / "d"),
                     cwd=project)  # fmt: skip
    assert under_file.returncode == 1
    assert under_file.stderr.startswith("error: Not a directory: ")
    assert len(under_file.stderr.strip().splitlines()) == 1


def test_init_never_prints_a_password(pg_uri, tmp_path):
    with_password = pg_uri.replace("postgres@", "postgres:s3cret@")
    done = cli("init", "--path", "p", "--workspace", with_password, "--artifacts", "art",
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "s3cret" not in done.stdout + done.stderr
    assert json.loads(done.stdout)["Workspace"] == pg_uri.replace("postgres@", "postgres:***@")


def test_a_script_argument_named_debug_belongs_to_the_script(project):
    done = cli("run", "submit-script", "-e", "bad\nname", "train.py", "--debug", cwd=project)
    assert done.returncode == 1 and "experiment name" in done.stderr
    assert "Traceback" not in done.stderr
    debug = cli("run", "submit-script", "--debug", "-e", "bad\nname", "train.py", cwd=project)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_a_query_that_does_not_fit_the_result_is_one_short_error(project):
    """JMESPath's own message quotes the whole value it choked on (a run's full record)."""
    done = cli("run", "list", "--query", "sum(@)", cwd=project)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert "sum() takes array-number, not dict" in line and len(line) < 200, line
    assert "run_id" not in done.stderr and "Traceback" not in done.stderr


def test_artifacts_given_before_the_command_beats_the_environment(tmp_path):
    ws = Workspace(str(tmp_path / "ws"), artifacts=str(tmp_path / "kept"))
    Experiment(ws, "e").start_logging(snapshot_directory=None, outputs=False).complete()
    env = {"RUNYARD_ARTIFACTS": str(tmp_path / "missing")}
    args = ("--workspace", str(tmp_path / "ws"))
    out = ok("--artifacts", str(tmp_path / "kept"), "run", "list", "-e", "e", *args,
             cwd=tmp_path, env=env)  # fmt: skip
    assert len(json.loads(out)) == 1
    refused = cli("run", "list", "-e", "e", *args, cwd=tmp_path, env=env)
    assert refused.returncode == 1 and "missing" in refused.stderr
