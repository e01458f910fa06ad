"""Ids, names and text a hostile user passes: refused at the call, before anything is made.

Run ids become folder names, so ``..``, ``.``, ``/``, NUL, lone surrogates and 10 KB ids
must never reach a filesystem or database call; text that a database cannot store (NUL on
PostgreSQL, lone surrogates anywhere) is refused the same way on both databases.
"""

from __future__ import annotations

import os
import warnings

import pytest

from runyard import Experiment, Run, ScriptRunConfig, Workspace
from runyard.errors import StoreError, UserError

BAD_IDS = ["..", ".", "sweep/1", "a\\b", "a\x00b", "\udc80", "x" * 10_000, " lead", "", "a b"]


def _files_under(root):
    found = []
    for folder, _dirs, files in os.walk(root):
        found += [os.path.join(folder, f) for f in files]
    return found


@pytest.mark.parametrize("bad", BAD_IDS)
def test_start_logging_refuses_a_bad_run_id_before_creating_anything(ws, bad):
    exp = Experiment(ws, "ids")
    with open("train.py", "w") as fh:
        fh.write("print(1)\n")
    with pytest.raises(UserError, match=r"run id|must not be empty"):
        exp.start_logging(run_id=bad)
    assert list(exp.get_runs()) == []
    assert _files_under(os.path.join(ws.artifacts_root, "snapshots")) == []


@pytest.mark.parametrize("bad", ["..", ".", "sweep/1", "\udc80"])
def test_child_runs_and_submits_refuse_a_bad_run_id(local_ws, bad, tmp_path):
    exp = Experiment(local_ws, "ids")
    parent = exp.start_logging(snapshot_directory=None, outputs=False)
    with pytest.raises(UserError, match="run id"):
        parent.child_run(run_id=bad)
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text("print('hi')\n")
    with pytest.raises(UserError, match="run id"):
        exp.submit(ScriptRunConfig(str(source), "train.py"), run_id=bad)
    assert [r.id for r in exp.get_runs(include_children=True)] == [parent.id]
    assert _files_under(os.path.join(local_ws.artifacts_root, "snapshots")) == []
    parent.complete()


def test_an_existing_run_is_never_reached_through_a_bad_id(local_ws):
    run = Experiment(local_ws, "ids").start_logging(snapshot_directory=None, outputs=False)
    for bad in ("..", "../" + run.id, run.id + "/..", "."):
        with pytest.raises(UserError, match="run id"):
            local_ws.get_run(bad)
        with pytest.raises(UserError, match="run id"):
            Run(run.experiment, bad)
        with pytest.raises(UserError):
            local_ws._artifacts.open(bad, "x.txt")
    with pytest.raises(UserError):
        local_ws._artifacts.open(run.id, "../other/x.txt")
    run.complete()


def test_get_context_refuses_a_bad_run_id_in_the_environment(local_ws, monkeypatch):
    monkeypatch.setenv("RUNYARD_URI", local_ws.uri)
    monkeypatch.setenv("RUNYARD_RUN_ID", "..")
    with pytest.raises(UserError, match="RUNYARD_RUN_ID"):
        Run.get_context()


BAD_TEXT = ["a\x00b", "bad \udc80 text"]


@pytest.mark.parametrize("bad", BAD_TEXT)
def test_text_a_database_cannot_store_is_refused_on_both_databases(ws, bad):
    run = Experiment(ws, "text").start_logging(snapshot_directory=None, outputs=False)
    run.tag("kept", "1")
    run.add_properties({"p": "1"})
    calls = [
        lambda: run.tag("t", bad),
        lambda: run.tag(bad, "v"),
        lambda: run.set_tags({"t": bad}),
        lambda: run.add_properties({"q": bad}),
        lambda: run.add_properties({bad: "v"}),
        lambda: setattr(run, "display_name", bad),
        lambda: setattr(run, "description", bad),
        lambda: run.log(bad, 1.0),
        lambda: run.log_row("table", **{"col": 1, bad: 2}),
        lambda: run.experiment.tag("t", bad),
        lambda: Experiment(ws, "text").start_logging(
            snapshot_directory=None, outputs=False, display_name=bad
        ),
    ]
    for call in calls:
        with pytest.raises(UserError):
            call()
    fresh = ws.get_run(run.id)
    assert fresh.tags == {"kept": "1"}
    assert fresh.properties == {"p": "1"}
    assert fresh.display_name is None
    run.complete()
    assert run.get_status() == "Completed"
    assert len(list(Experiment(ws, "text").get_runs())) == 1


def test_a_surrogate_metric_name_does_not_poison_the_run(ws):
    run = Experiment(ws, "poison").start_logging(snapshot_directory=None, outputs=False)
    run.log("good", 1.0)
    with pytest.raises(UserError, match="surrogate"):
        run.log("bad\udc80", 2.0)
    run.log("good", 3.0)
    run.complete()
    assert run.get_status() == "Completed"
    assert run.get_metrics() == {"good": [1.0, 3.0]}


def test_a_step_beyond_64_bits_on_an_existing_series_is_refused_at_the_call(ws):
    run = Experiment(ws, "poison").start_logging(snapshot_directory=None, outputs=False)
    other = Experiment(ws, "poison").start_logging(snapshot_directory=None, outputs=False)
    other.log("fine", 1.0)
    run.log("a", 1, step=1)
    run.flush()
    for step in (2**70, 2**63, -(2**63) - 1):
        with pytest.raises(UserError, match="64 bits"):
            run.log("a", 2, step=step)
    run.log("a", 3, step=2**63 - 1)
    run.log("b", 4)
    assert other.get_metrics() == {"fine": 1.0}
    run.complete()
    assert run.get_status() == "Completed"
    assert run.get_metric_history("a").steps == [1, 2**63 - 1]
    assert run.get_metrics() == {"a": [1, 3], "b": 4}


def test_a_run_the_store_refuses_does_not_break_reads_of_other_runs(local_ws, tmp_path):
    """Another process makes run A's series a list; A's scalar points can never be stored."""
    exp = Experiment(local_ws, "poison")
    poisoned = exp.start_logging(snapshot_directory=None, outputs=False)
    poisoned.log("warmup", 1.0)
    poisoned.flush()  # the buffer now knows the stored series
    elsewhere = Workspace(local_ws.uri).get_run(poisoned.id)
    elsewhere.log_list("m", [1, 2])
    elsewhere.flush()
    poisoned.log("m", 5.0)  # a scalar under a list's name: the store refuses it
    healthy = exp.start_logging(snapshot_directory=None, outputs=False)
    healthy.log("x", 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert healthy.get_metrics() == {"x": 1.0}
        with pytest.raises(UserError, match="list"):
            poisoned.flush()
        poisoned.log("after", 2.0)
        poisoned.complete()
    assert poisoned.get_metrics() == {"warmup": 1.0, "m": [1, 2], "after": 2.0}
    assert poisoned.get_status() == "Completed"
    healthy.complete()


def test_a_metric_description_a_database_cannot_store_is_refused_at_the_call(ws):
    run = Experiment(ws, "poison").start_logging(snapshot_directory=None, outputs=False)
    with pytest.raises(UserError, match="description"):
        run.log("a", 1.0, description="bad\x00")
    with pytest.raises(UserError, match="description"):
        run.log_list("b", [1, 2], description="bad \udc80")
    run.log("a", 2.0, description="fine")
    run.complete()
    assert run.get_status() == "Completed"
    assert run.get_metrics() == {"a": 2.0}


@pytest.mark.parametrize("folder", ["outputs", "logs"])
def test_a_file_whose_name_cannot_be_stored_fails_the_run_and_says_which(local_ws, folder):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "good.txt"), "w") as fh:
        fh.write("kept")
    with open(os.path.join(folder, "bad\nname.txt"), "w") as fh:
        fh.write("a control character in its name")
    run = Experiment(local_ws, "names").start_logging(snapshot_directory=None)
    with pytest.raises(StoreError, match="control character"), run:
        run.log("x", 1.0)
    assert run.get_status() == "Failed"
    assert "bad\\nname.txt" in run.get_details()["error"]["error"]["message"]
    assert f"{folder}/good.txt" in run.get_file_names()


def test_a_trailing_newline_never_passes_an_id_check(ws, tmp_path):
    """``$`` of a regular expression also matches before a final newline."""
    run = Experiment(ws, "ids").start_logging(snapshot_directory=None, outputs=False)
    with pytest.raises(UserError, match="snapshot id"):
        run.restore_snapshot("0" * 32 + "\n", path=str(tmp_path))
    from runyard._validation import check_experiment_name, check_run_id

    for check in (check_run_id, check_experiment_name):
        with pytest.raises(UserError):
            check("name\n")


def _incompressible(n_bytes, seed=0):
    import random

    pick = random.Random(seed)
    return "".join(chr(0x4E00 + pick.randrange(20000)) for _ in range(n_bytes // 3))


def test_long_tags_properties_and_paths_are_stored_or_refused_alike_on_both_databases(ws):
    """PostgreSQL indexes at most ~2,700 bytes per entry: a longer tag failed there with a
    raw StoreError while SQLite took it. Values are indexed by their MD5 there now, so both
    take values up to MLflow's 8,000 characters (4-byte ones too) at the longest key and
    run id, find runs by them, and refuse more with a UserError at the call."""
    exp = Experiment(ws, "long")
    run = exp.start_logging(run_id="r" * 255, snapshot_directory=None, outputs=False)
    key = _incompressible(765, seed=1)  # 255 characters of 3 bytes
    value = "\U0001f600" * 8000  # 32,000 bytes of UTF-8
    run.set_tags({key: value})
    run.add_properties({key: value})
    path = "/".join(_incompressible(240, seed=i) for i in range(8))
    run.upload_file(path, __file__)
    found = list(exp.get_runs(tags={key: value}, properties={key: value}))
    assert [r.id for r in found] == [run.id]
    assert list(exp.get_runs(tags={key: value[:-1]})) == []
    too_long = value + "x"
    with pytest.raises(UserError, match="at most 8000"):
        run.tag(key, too_long)
    with pytest.raises(UserError, match="at most 8000"):
        run.add_properties({"p": "x" * 8001})
    with pytest.raises(UserError, match="at most 8000"):
        run._store.set_tags(run.id, {key: too_long})  # the store protocol itself
    with pytest.raises(UserError, match="the limit is 2000"):
        run.upload_file(path + "/" + _incompressible(90), __file__)
    assert run.get_tags() == {key: value}


def test_a_user_name_that_is_not_utf8_never_stops_a_run(ws, monkeypatch):
    """Environment bytes that are not UTF-8 decode to lone surrogates, which no store takes."""
    monkeypatch.setenv("LOGNAME", "b\udcffd")  # what os.environ makes of the byte 0xff
    run = Experiment(ws, "who").start_logging(snapshot_directory=None, outputs=False)
    # a server records the token's name instead (tests/server checks that)
    expected = "tester" if "://" in ws.artifacts_root else "b\ufffdd"
    assert run.get_details()["submittedBy"] == expected


def test_the_longest_unicode_run_id_fits_the_supervisors_stderr_file():
    from runyard import _liveness

    run_id = "名" * 85  # 255 bytes: a valid id
    path = _liveness.supervisor_stderr_path(run_id)
    assert len(os.path.basename(path).encode()) <= 255
    with open(path, "w") as fh:
        fh.write("x")
    os.unlink(path)


def test_a_sweep_of_the_scratch_folder_keeps_the_shared_supervisor_folder():
    from runyard import _liveness, _owners

    folder = os.path.dirname(_liveness.supervisor_stderr_path("r"))
    os.utime(folder, (0, 0))  # older than any age limit
    _owners.sweep(_owners.scratch_root(), keep=_owners.SHARED_FOLDERS)
    assert os.path.isdir(folder)
    _owners.process_folder()
    assert os.path.isdir(folder)
