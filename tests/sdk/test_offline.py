"""OfflineRun takes every call a Run takes, fails the same way, and one script runs anywhere."""

from __future__ import annotations

import inspect
import io
import json
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator

import pytest

from runyard import Experiment, OfflineRun, Run, RunEnvironmentError


@pytest.fixture(autouse=True)
def _fresh_offline_run(monkeypatch) -> Iterator[None]:
    monkeypatch.delenv("RUNYARD_RUN_ID", raising=False)
    OfflineRun._singleton = None
    yield
    OfflineRun._singleton = None


def _shape(sig: inspect.Signature) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


def _public_names(local_ws) -> set[str]:
    names = {n for n in dir(Run) if not n.startswith("_")}
    real = Experiment(local_ws, "walk").start_logging(snapshot_directory=None, outputs=False)
    names |= {n for n in vars(real) if not n.startswith("_")}
    return names | {"__enter__", "__exit__"}


def test_offline_run_has_everything_a_run_has_with_the_same_signature(local_ws):
    names = _public_names(local_ws)
    assert {"log", "get_metrics", "experiment", "display_name", "child_run"} <= names
    offline = OfflineRun()
    for name in sorted(names):
        assert hasattr(offline, name), f"OfflineRun has no {name}"
        online = inspect.getattr_static(Run, name, None)
        if online is None:  # an instance attribute of Run, such as experiment
            continue
        mine = inspect.getattr_static(OfflineRun, name)
        assert type(mine) is type(online), f"{name}: {type(mine)} vs {type(online)}"
        if isinstance(online, property):
            assert (mine.fset is None) == (online.fset is None), f"{name}: setter differs"
            continue
        if callable(getattr(Run, name)):
            assert _shape(inspect.signature(getattr(OfflineRun, name))) == _shape(
                inspect.signature(getattr(Run, name))
            ), f"OfflineRun.{name} does not take the arguments Run.{name} takes"


def _png(path: str) -> str:
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    return path


BAD_CALLS = [
    ("log", [("", 1)]),
    ("log", [("a", [1, 2])]),
    ("log", [("a", {"x": 1})]),
    ("log", [("a", object())]),
    ("log", [("a", 1, "", "3")]),
    ("log", [("a", 1, "", 2**70)]),
    ("log", [("a\x00b", 1)]),
    ("log_list", [("a", [])]),
    ("log_list", [("a", "abc")]),
    ("log_row", [("t",)]),
    ("log_table", [("t", {"x": [1], "y": [1, 2]})]),
    ("log_table", [("t", [])]),
    ("log_image", [("x",)]),
    ("log_image", [("x", "missing.png")]),
    ("log_image", [("x", "notes.txt")]),
    ("log_image", [("x", None, object())]),
    ("log_confusion_matrix", [("c", "{not json")]),
    ("log_confusion_matrix", [("c", {"data": {}})]),
    ("set_tags", [("not a dict",)]),
    ("tag", [(7, "x")]),
    ("add_properties", [("p",)]),
    ("add_properties", [({"p": None},)]),
    ("add_properties", [({"p": "1"},), ({"p": "2"},)]),
    ("upload_file", [("../x", "notes.txt")]),
    ("upload_file", [("a", "missing.txt")]),
    ("upload_file", [("a", 123)]),
    ("upload_file", [("a", "notes.txt"), ("a", "notes.txt")]),
    ("upload_files", [(["a"], ["notes.txt", "notes.txt"])]),
    ("upload_folder", [("f", "missing-folder")]),
    ("download_file", [("outputs/none.txt",)]),
    ("fail", [(123,)]),
    ("create_children", [()]),
    ("create_children", [(0,)]),
    ("child_run", [(None, "a/b")]),
    ("restore_snapshot", [()]),
    ("take_snapshot", [("missing-folder",)]),
    ("get_metric_history", [("nothing",)]),
]


def _outcome(run: Run, method: str, calls: list[tuple]) -> tuple[str, str]:
    try:
        for args in calls:
            target = getattr(run, method)
            result = target(*args)
            if inspect.isgenerator(result):
                list(result)
    except Exception as exc:
        text = str(exc).replace(run.id, "<id>")
        return type(exc).__name__, text.replace("'walk'", "<exp>").replace("'offline'", "<exp>")
    return "no error", ""


@pytest.mark.parametrize(("method", "calls"), BAD_CALLS, ids=[f"{m}-{i}" for i, (m, _) in
                                                               enumerate(BAD_CALLS)])  # fmt: skip
def test_a_bad_call_fails_offline_as_it_fails_online(local_ws, method, calls, capsys):
    with open("notes.txt", "w") as fh:
        fh.write("not an image")
    online = Experiment(local_ws, "walk").start_logging(snapshot_directory=None, outputs=False)
    offline = OfflineRun()
    assert _outcome(offline, method, calls) == _outcome(online, method, calls)


def test_bad_settings_fail_offline_as_online(local_ws):
    online = Experiment(local_ws, "walk").start_logging(snapshot_directory=None, outputs=False)
    for run in (online, OfflineRun()):
        with pytest.raises(Exception, match="display_name must be a string") as raised:
            run.display_name = 5  # type: ignore[assignment]
        assert type(raised.value).__name__ == "UserError"
        with pytest.raises(Exception, match="description is 5001 characters"):
            run.description = "x" * 5001
        run.complete()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            run.cancel()  # a finished run's status does not change
        assert [w.category for w in seen] == [RuntimeWarning]


def test_offline_reads_give_back_what_was_recorded(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run = Run.get_context()
    assert run is Run.get_context() and isinstance(run, OfflineRun)
    run.log("loss", 0.5, step=3)
    run.log("loss", 0.25, step=4)
    run.log_row("xy", x=1, y=2)
    run.log_image("pic", path=_png("pic.png"))
    run.tag("phase", "train")
    run.add_properties({"author": "me"})
    run.upload_file("outputs/notes.txt", io.BytesIO(b"notes"))
    run.download_file("outputs/notes.txt", "copy.txt")
    assert (tmp_path / "copy.txt").read_bytes() == b"notes"
    assert run.get_metrics()["loss"] == [0.5, 0.25]
    assert run.get_metric_history("loss").steps == [3, 4]
    assert run.get_metrics("xy") == {"xy": {"x": 1, "y": 2}}
    assert run.get_metrics("pic", populate=True)["pic"].data.startswith(b"\x89PNG")
    assert run.get_tags() == {"phase": "train"} and run.get_properties() == {"author": "me"}
    assert sorted(run.get_file_names()) == ["outputs/notes.txt", "pic.png"]
    assert run.experiment.name == "offline" and run.get_status() == "Running"
    assert run.wait_for_completion()["status"] == "Running"  # returns: nothing else ends it
    with pytest.raises(RunEnvironmentError, match="offline run"):
        run.submit_child(object())
    run.complete()
    assert run.get_status() == "Completed" and run.get_details()["status"] == "Completed"
    out = capsys.readouterr().out
    assert "Attempted to log scalar metric loss:\n0.5" in out
    assert "Attempted to log image metric pic:\npic.png" in out
    assert "Attempted to track file pic.png" not in out  # only the call made is printed
    assert not [p for p in os.listdir(tmp_path) if p not in ("pic.png", "copy.txt")]


SCRIPT = textwrap.dedent(
    """
    import json
    from runyard import Run
    run = Run.get_context()
    for i in range(3):
        run.log("loss", 1.0 / (i + 1), step=i)
    run.log_row("xy", x=1, y=2)
    run.log_list("accs", [0.5, 0.6])
    run.tag("phase", "train")
    run.set_tags({"a": 1})
    run.remove_tags(["a"])
    run.add_properties({"author": "me"})
    run.display_name = "nice"
    run.description = "a description"
    with open("model.txt", "w") as fh:
        fh.write("weights")
    run.upload_file("outputs/model.txt", "model.txt")
    run.download_file("outputs/model.txt", "copy.txt")
    assert open("copy.txt").read() == "weights"
    with run.child_run("kid") as kid:
        kid.log("k", 1)
    kid_details = kid.wait_for_completion()
    run.flush()
    summary = {
        "metrics": run.get_metrics(),
        "steps": run.get_metric_history("loss").steps.tolist(),
        "tags": run.get_tags(),
        "author": run.get_properties().get("author"),
        "status": run.get_status(),
        "kid": [kid.get_status(), kid_details["status"], kid.get_metrics(), kid.display_name],
        "files": run.get_file_names(),
        "children": [c.display_name for c in run.get_children()],
        "names": [run.display_name, run.description],
        "detail_keys": sorted(run.get_details()),
    }
    print("SUMMARY " + json.dumps(summary, sort_keys=True))
    """
)


def test_one_script_runs_anywhere(ws, tmp_path):
    def run_script(folder: str, env: dict[str, str]) -> dict:
        work = tmp_path / folder
        work.mkdir()
        base = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT], cwd=work, env={**base, **env},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        line = next(x for x in done.stdout.splitlines() if x.startswith("SUMMARY "))
        return json.loads(line.removeprefix("SUMMARY "))

    offline = run_script("offline", {})
    submitted = Experiment(ws, "anywhere").start_logging(snapshot_directory=None, outputs=False)
    online = run_script(
        "online",
        {"RUNYARD_URI": ws.uri, "RUNYARD_ARTIFACTS": ws.artifacts_root,
         "RUNYARD_RUN_ID": submitted.id, **ws._store.run_credentials(submitted.id)},
    )  # fmt: skip
    assert offline == online
    assert online["steps"] == [0, 1, 2] and online["kid"][0] == "Completed"
