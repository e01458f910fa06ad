"""Every command of the CLI, run as a real subprocess against a real workspace."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from runyard import Experiment, Workspace

RUNYARD = os.path.join(os.path.dirname(sys.executable), "runyard")


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    full_env.update(env or {})
    return subprocess.run(
        [RUNYARD, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120
    )


def ok(*args: str, cwd: Path, **kw) -> str:
    done = cli(*args, cwd=cwd, **kw)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "demo-project"
    ok("init", "--path", str(root), "-e", "article", cwd=tmp_path)
    ws = Workspace.from_config(root)
    exp = Experiment(ws, "article")
    plain = exp.start_logging(snapshot_directory=None, outputs=False, display_name="plain")
    plain.log("mse", 3.5)
    plain.complete()
    good = exp.start_logging(snapshot_directory=None, outputs=False, display_name="good")
    good.add_properties({"author": "azureml-user"})
    good.set_tags({"quality": "fantastic run", "worth another look": None})
    good.log_list("accuracies", [0.6, 0.7])
    good.upload_file("outputs/model.txt", __file__)
    good.child_run("kid").complete()
    good.complete()
    other = exp.start_logging(snapshot_directory=None, outputs=False, display_name="other")
    other.add_properties({"author": "azureml-user"})
    other.tag("quality", "fine")
    return root


def runs(project: Path, *args: str) -> list[dict]:
    return json.loads(ok("run", "list", *args, cwd=project))


def test_init_writes_config_and_ignore_file(tmp_path):
    out = json.loads(ok("init", "--path", "fresh", cwd=tmp_path))
    assert out["Experiment name"] == "fresh"
    assert json.loads((tmp_path / "fresh/.runyard/config.json").read_text()) == {
        "uri": ".runyard", "experiment": "fresh",
    }  # fmt: skip
    assert ".git" in (tmp_path / "fresh/.runyardignore").read_text()
    (tmp_path / "fresh/.runyardignore").write_text("mine\n")
    again = json.loads(ok("folder", "attach", "--path", "fresh", "-e", "other", cwd=tmp_path))
    assert "kept" in again["Ignore file"] and again["Experiment name"] == "other"
    assert (tmp_path / "fresh/.runyardignore").read_text() == "mine\n"
    (tmp_path / "afile").write_text("x")
    bad = cli("init", "--path", "afile", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")
    bad_name = cli("init", "--path", "x", "-e", "bad\tname", cwd=tmp_path)
    assert bad_name.returncode == 1 and "experiment name" in bad_name.stderr


def test_run_list_output_formats(project):
    listed = runs(project)
    assert [r["display_name"] for r in listed] == ["other", "good", "plain"]
    assert {r["_experiment_name"] for r in listed} == {"article"}
    text = ok("run", "list", cwd=project)
    assert text == json.dumps(listed, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert json.loads(ok("run", "list", "-o", "jsonc", cwd=project)) == listed  # not a tty
    table = ok("run", "list", "-o", "table", cwd=project).splitlines()
    assert table[0].split() == [
        "#",
        "Run",
        "id",
        "Status",
        "Started",
        "Duration",
        "Display",
        "name",
        "Type",
    ]
    assert "other" in table[2] and "Running" in table[2] and "\033[" not in "".join(table)
    tsv = ok("run", "list", "-o", "tsv", cwd=project).splitlines()
    assert len(tsv) == 3 and "\t" in tsv[0] and "Completed" in tsv[1]
    assert yaml.safe_load(ok("run", "list", "-o", "yaml", cwd=project)) == listed
    assert ok("run", "list", "-o", "none", cwd=project) == ""


def test_reference_queries(project):
    def query(expression: str) -> list[str]:
        out = ok("run", "list", "--query", expression, cwd=project)
        return sorted(r["display_name"] for r in json.loads(out))

    assert query("[?properties.author=='azureml-user']") == ["good", "other"]
    assert query("[?tags.keys(@)[?starts_with(@, 'worth another look')]]") == ["good"]
    assert query("[?properties.author=='azureml-user' && tags.quality=='fantastic run']") == [
        "good"
    ]
    shaped = ok("run", "list", "--query", "[].{name: display_name, n: run_number}", "-o",
                "table", cwd=project)  # fmt: skip
    assert shaped.splitlines()[0].split() == ["Name", "N"]


def test_run_list_filters(project):
    assert len(runs(project, "--last", "2")) == 2
    assert [r["display_name"] for r in runs(project, "--status", "Running")] == ["other"]
    assert [r["display_name"] for r in runs(project, "--tags", "quality=fine")] == ["other"]
    good = next(r for r in runs(project) if r["display_name"] == "good")
    kids = runs(project, "--parent-run-id", good["run_id"])
    assert [k["display_name"] for k in kids] == ["kid"]
    minimal = runs(project, "--minimal", "--last", "1")
    assert set(minimal[0]) == {
        "RunId",
        "RunType",
        "Status",
        "StartTime",
        "EndTime",
        "Target",
        "Tags",
    }


def test_show_update_metrics_cancel(project, tmp_path):
    listed = {r["display_name"]: r for r in runs(project)}
    good_id, other_id = listed["good"]["run_id"], listed["other"]["run_id"]
    shown = json.loads(ok("run", "show", "-r", good_id, cwd=project))
    assert shown["tags"]["quality"] == "fantastic run" and shown["status"] == "Completed"
    updated = json.loads(
        ok("run", "update", "-r", good_id, "--add-tag", "formula=a=b", "--add-tag", "x=1",
           "--remove-tag", "quality", cwd=project)
    )  # fmt: skip
    assert updated["tags"] == {"worth another look": None, "formula": "a=b", "x": "1"}
    assert json.loads(ok("run", "metrics", "-r", good_id, cwd=project)) == {
        "accuracies": [0.6, 0.7]
    }
    assert json.loads(ok("run", "metrics", "-r", good_id, "--name", "nope", cwd=project)) == {}
    table = ok("run", "metrics", "-r", good_id, "-o", "table", cwd=project)
    assert "2 values, last 0.7" in table
    done = cli("run", "cancel", "-r", other_id, cwd=project)
    assert done.returncode == 0 and "canceled successfully" in done.stderr and done.stdout == ""
    assert json.loads(ok("run", "show", "-r", other_id, cwd=project))["status"] == "Canceled"
    written = json.loads(
        ok("run", "download", "-r", good_id, "--prefix", "outputs", "-d", str(tmp_path / "dl"),
           cwd=project)
    )  # fmt: skip
    assert written == [str(tmp_path / "dl" / "outputs" / "model.txt")]
    assert Path(written[0]).read_text() == Path(__file__).read_text()


SCRIPT = """
import sys
from runyard import Run
run = Run.get_context()
print("training with", sys.argv[1:])
run.log("mse", 2.5)
sys.exit(int(sys.argv[-1]) if sys.argv[-1].isdigit() else 0)
"""


def test_submit_script_streams_and_sets_the_exit_code(project, tmp_path):
    (project / "train.py").write_text(textwrap.dedent(SCRIPT))
    done = cli("run", "submit-script", "-o", "none", "train.py", "--alpha", "0.5", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "training with ['--alpha', '0.5']" in done.stdout
    assert "Execution Summary" in done.stdout
    failed = cli("run", "submit-script", "--query", "status", "train.py", "3", cwd=project)
    assert failed.returncode == 1
    assert failed.stdout.strip().endswith('"Failed"')
    started = json.loads(ok("run", "submit-script", "--async", "train.py", cwd=project))
    assert started["status"] in ("NotStarted", "Queued", "Preparing", "Starting", "Running")
    watched = cli("run", "monitor-logs", "-r", started["run_id"], "--query", "status", cwd=project)
    assert watched.returncode == 0 and "training with" in watched.stdout
    assert watched.stdout.strip().endswith('"Completed"')
    logs = cli("run", "download-logs", "-r", started["run_id"], "-d", str(tmp_path / "L"),
               cwd=project)  # fmt: skip
    assert logs.returncode == 0 and (tmp_path / "L/user_logs/std_log.txt").is_file()
    missing = cli("run", "submit-script", cwd=project)
    assert missing.returncode == 2 and "specify the script" in missing.stderr
    (project / ".runyard").mkdir(exist_ok=True)
    from runyard import RunConfiguration

    RunConfiguration(script="train.py", arguments=["--from-config"]).save(str(project), "local")
    configured = cli("run", "submit-script", "-c", "local", "-o", "none", cwd=project)
    assert configured.returncode == 0 and "['--from-config']" in configured.stdout


def test_experiment_commands(project):
    listed = json.loads(ok("experiment", "list", cwd=project))
    assert [e["name"] for e in listed] == ["article"]
    assert set(listed[0]) == {"experimentId", "name", "createdUtc", "archivedTime", "tags"}
    assert json.loads(ok("experiment", "show", cwd=project))["name"] == "article"
    archived = json.loads(ok("experiment", "archive", "-e", "article", cwd=project))
    assert archived["archivedTime"]
    assert json.loads(ok("experiment", "list", cwd=project)) == []
    assert len(json.loads(ok("experiment", "list", "--view-type", "All", cwd=project))) == 1
    back = json.loads(ok("experiment", "reactivate", "-e", "article", cwd=project))
    assert back["archivedTime"] is None
    assert "article" in ok("experiment", "list", "-o", "table", cwd=project)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["run", "show", "-r", "no-such-run"], 1, "no run with id 'no-such-run'"),
        (["run", "list", "--tags", "quality"], 2, "'quality' is not key=value"),
        (["run", "update", "-r", "x", "--add-tag", "novalue"], 2, "is not key=value"),
        (["run", "list", "--query", "[?"], 2, "not a valid JMESPath expression"),
        (["run", "list", "--last", "0"], 2, "--last"),
        (["run", "list", "--status", "Done"], 2, "--status"),
        (["run", "list", "--bogus"], 2, "No such option"),
        (["run", "update", "-r", "x"], 2, "nothing to update"),
        (["run", "show"], 2, "Missing option"),
        (["nonsense"], 2, "No such command"),
    ],
)
def test_bad_arguments(project, args, code, message):
    done = cli(*args, cwd=project)
    assert done.returncode == code
    assert done.stderr.startswith("error: ") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_an_invalid_query_stops_before_the_command_acts(project):
    other = next(r for r in runs(project) if r["display_name"] == "other")
    done = cli("run", "cancel", "-r", other["run_id"], "--query", "[?", cwd=project)
    assert done.returncode == 2
    assert json.loads(ok("run", "show", "-r", other["run_id"], cwd=project))["status"] == "Running"


def test_missing_config_and_debug(tmp_path):
    done = cli("run", "list", cwd=tmp_path)
    assert done.returncode == 1 and "runyard init" in done.stderr
    assert "Traceback" not in done.stderr
    debug = cli("run", "list", "--debug", cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    via_flag = cli("run", "list", "--workspace", str(tmp_path / "ws"), "-e", "x", cwd=tmp_path)
    assert via_flag.returncode == 1 and "no runyard workspace" in via_flag.stderr
    ok("init", "--path", "p", "--workspace", str(tmp_path / "ws"), "-e", "x", cwd=tmp_path)
    via_flag = cli("run", "list", "--workspace", str(tmp_path / "ws"), "-e", "x", cwd=tmp_path)
    assert via_flag.returncode == 0 and json.loads(via_flag.stdout) == []


def _on_a_terminal(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    main, secondary = pty.openpty()
    proc = subprocess.Popen([RUNYARD, *args], cwd=cwd, env=env, stdout=secondary, stderr=secondary)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(main)
    return b"".join(chunks).decode()


def test_colour_only_on_a_terminal_and_never_with_no_color(project):
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    coloured = _on_a_terminal(["run", "list", "-o", "table"], project, env)
    assert "\033[1m" in coloured and "\033[32mCompleted" in coloured
    plain = _on_a_terminal(["run", "list", "-o", "table"], project, {**env, "NO_COLOR": "1"})
    assert "\033[" not in plain and "Completed" in plain


def _commands():
    from runyard.cli import _docs

    root = __import__("runyard.cli", fromlist=["_build"])._build()
    start = root.make_context("runyard", [], resilient_parsing=True)
    return [ctx.command_path.split()[1:] for ctx in _docs._walk(start)]


def test_every_command_has_help_with_an_example():
    for path in _commands():
        done = subprocess.run([RUNYARD, *path, "--help"], capture_output=True, text=True)
        assert done.returncode == 0
        assert "Example:" in done.stdout, path


def test_docs_match_the_help():
    from runyard.cli import _docs

    text = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    assert _docs.MARKER in text
    assert text.split(_docs.MARKER)[1].strip() == _docs.generated().strip(), (
        "docs/cli.md is out of date: run python3 dev.py cli-docs"
    )
    for path in _commands():
        live = subprocess.run([RUNYARD, *path, "--help"], capture_output=True, text=True).stdout
        assert f"```\n{live}```" in text, path


def test_shell_completion_script():
    done = subprocess.run(
        [RUNYARD], env={**os.environ, "_RUNYARD_COMPLETE": "bash_source"}, capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 0 and "_RUNYARD_COMPLETE=bash_complete" in done.stdout
