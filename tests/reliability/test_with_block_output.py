"""``with run:`` tees stdout and stderr into the run's ``logs/user_log.txt``.

Attacks: code that writes bytes, reconfigures, detaches or replaces ``sys.stdout`` inside
the block; handlers that keep the tee after it; nested and concurrent runs; earlier runs
started from the same folder. Each script runs in a real subprocess with real pipes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from runyard import Workspace

PRELUDE = """
import io, logging, os, sys
from runyard import Experiment, Workspace
ws = Workspace(sys.argv[1])
exp = Experiment(ws, "tee")
def start():
    return exp.start_logging(snapshot_directory=None, outputs=False)
"""


def _run(tmp_path, body: str, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    script = PRELUDE + textwrap.dedent(body)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    temp = tmp_path / "tmp"  # the process's own temporary folder: what it leaves is its own
    temp.mkdir(exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "ws"), *extra],
        cwd=work,
        capture_output=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(temp)},
    )
    if check:
        assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done


def _log(tmp_path, run_id: str) -> bytes:
    run = Workspace(str(tmp_path / "ws")).get_run(run_id)
    assert "logs/user_log.txt" in run.get_file_names()
    with run._artifacts.open(run.id, "logs/user_log.txt") as fh:
        return fh.read()


def test_stdout_behaves_as_the_stream_it_replaces(tmp_path):
    done = _run(
        tmp_path,
        """
        with start() as run:
            print("text one")
            sys.stdout.buffer.write(b"bytes one\\n")
            print("text two")
            sys.stdout.writelines(["line a\\n", "line b\\n"])
            sys.stderr.buffer.write(b"err bytes\\n")
            sys.stderr.flush()
            assert sys.stdout.buffer is sys.stdout.buffer
            assert sys.stdout.encoding == sys.__stdout__.encoding
            assert sys.stdout.errors == sys.__stdout__.errors
            assert sys.stdout.line_buffering == sys.__stdout__.line_buffering
            assert sys.stdout.newlines is None
            assert sys.stdout.name == "<stdout>" and sys.stderr.name == "<stderr>"
            assert sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2
            assert sys.stdout.isatty() is False
            assert sys.stdout.writable() and not sys.stdout.readable()
            assert sys.stdout.buffer.writable() and sys.stdout.buffer.fileno() == 1
            assert not sys.stdout.closed and not sys.stdout.buffer.closed
            assert isinstance(sys.stdout, io.TextIOBase)
            assert isinstance(sys.stdout.buffer, io.BufferedIOBase)
            try:
                sys.stdout.write(b"not text")
            except TypeError:
                pass
            else:
                raise AssertionError("write(bytes) must raise TypeError")
            sys.stdout.reconfigure(encoding="utf-8", errors="strict", line_buffering=True)
            assert sys.stdout.encoding == "utf-8" and sys.stdout.line_buffering
            print("caf\\u00e9 after reconfigure")
        sys.__stdout__.write(run.id + "\\n")
        """,
    )
    out = done.stdout.decode()
    assert out.splitlines()[:5] == ["text one", "bytes one", "text two", "line a", "line b"]
    assert "café after reconfigure" in out
    assert "err bytes" in done.stderr.decode()
    run_id = out.split()[-1]
    log = _log(tmp_path, run_id).decode()
    for line in ("text one", "bytes one", "text two", "line a", "line b", "err bytes", "café"):
        assert line in log
    assert log.index("text one") < log.index("bytes one") < log.index("text two")


def test_detach_and_replacing_stdout_inside_the_block(tmp_path):
    done = _run(
        tmp_path,
        """
        import contextlib
        with start() as run:
            print("before detach")
            sys.stdout = io.TextIOWrapper(sys.stdout.detach(), encoding="utf-8",
                                          line_buffering=True)
            print("through a new wrapper")
            captured = io.StringIO()
            with contextlib.redirect_stdout(captured):
                print("into a StringIO")
            print("after the redirect")

            class Shout:
                def __init__(self, inner):
                    self.inner = inner
                def write(self, text):
                    return self.inner.write(text.upper())
                def flush(self):
                    self.inner.flush()

            sys.stderr = Shout(sys.stderr)   # replaced and never put back
            print("quiet words", file=sys.stderr)
            handler = logging.StreamHandler()          # keeps the stderr of the block
        print("after the block")
        print("more after the block", file=sys.stderr)
        handler.emit(logging.makeLogRecord({"msg": "handler after the block"}))
        assert captured.getvalue() == "into a StringIO\\n"
        print(run.id)
        """,
    )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert out.splitlines()[:3] == ["before detach", "through a new wrapper", "after the redirect"]
    assert "after the block" in out
    assert "QUIET WORDS" in err and "MORE AFTER THE BLOCK" in err
    assert "HANDLER AFTER THE BLOCK" in err and "Traceback" not in err
    log = _log(tmp_path, out.split()[-1]).decode()
    assert "before detach" in log and "through a new wrapper" in log
    assert "after the redirect" in log and "QUIET WORDS" in log
    assert "into a StringIO" not in log
    assert "after the block" not in log and "AFTER THE BLOCK" not in log


def test_each_run_keeps_its_own_output(tmp_path):
    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    (work / "logs" / "user_log.txt").write_text("left by a run of an older version\n")
    body = """
    with start() as run:
        print("output of", sys.argv[2])
    print(run.id)
    """
    first = _run(tmp_path, body, "first").stdout.decode().split()[-1]
    second = _run(tmp_path, body, "second").stdout.decode().split()[-1]
    assert _log(tmp_path, first).decode() == "output of first\n"
    assert _log(tmp_path, second).decode() == "output of second\n"
    assert sorted(os.listdir(work / "logs")) == ["user_log.txt"]  # untouched, nothing added


def test_nested_child_runs_and_a_second_block(tmp_path):
    done = _run(
        tmp_path,
        """
        with start() as parent:
            print("parent starts")
            with parent.child_run("kid") as child:
                print("inside the child")
            print("parent ends")
        with parent:
            print("parent again")
        print(parent.id, child.id)
        """,
    )
    parent_id, child_id = done.stdout.decode().split()[-2:]
    assert _log(tmp_path, child_id).decode() == "inside the child\n"
    parent = _log(tmp_path, parent_id).decode()
    assert parent.splitlines() == [
        "parent starts", "inside the child", "parent ends", "parent again",
    ]  # fmt: skip


def test_two_runs_in_one_folder_at_once(tmp_path):
    (tmp_path / "work").mkdir()
    Workspace(str(tmp_path / "ws"))._store.close()  # created once, before the race
    script = PRELUDE + textwrap.dedent(
        """
        import time
        with start() as run:
            for i in range(200):
                print(sys.argv[2], i, flush=True)
                time.sleep(0.001)
        print(run.id)
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / "ws"), name],
            cwd=tmp_path / "work",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in ("alpha", "beta")
    ]
    ids = {}
    for name, proc in zip(("alpha", "beta"), procs, strict=True):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        ids[name] = out.decode().split()[-1]
    for name, run_id in ids.items():
        lines = _log(tmp_path, run_id).decode().splitlines()
        assert lines == [f"{name} {i}" for i in range(200)]
    assert not (tmp_path / "work" / "logs").exists()


def test_an_exception_lands_in_the_log_and_no_temp_files_remain(tmp_path):
    done = _run(
        tmp_path,
        """
        run = start()
        print(run.id, flush=True)
        with run:
            print("about to fail")
            raise ValueError("diverged")
        """,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.decode().count("ValueError: diverged") == 1  # printed once, by Python
    log = _log(tmp_path, done.stdout.decode().split()[0]).decode()
    assert "about to fail" in log and "ValueError: diverged" in log
    leftovers = {n for n in os.listdir(tmp_path / "tmp") if "runyard" in n}
    assert not leftovers or leftovers == {f"runyard-{os.getuid()}"}  # the scratch root stays
    scratch = tmp_path / "tmp" / f"runyard-{os.getuid()}"
    assert not scratch.exists() or not [p for p in scratch.rglob("*") if p.is_file()]


def test_a_full_disk_never_fails_a_print(local_ws, monkeypatch, capfd):
    from runyard import Experiment

    def full_disk(self, run_id, path):
        return open("/dev/full", "ab")  # every write that reaches the disk: ENOSPC

    monkeypatch.setattr(type(local_ws._artifacts), "open_append", full_disk)
    exp = Experiment(local_ws, "full")
    with exp.start_logging(snapshot_directory=None, outputs=False) as run:
        print("first line")
        sys.stdout.buffer.write(b"some bytes\n")
        print("last line")
    assert run.get_status() == "Completed"
    out, err = capfd.readouterr()
    assert out.splitlines() == ["first line", "some bytes", "last line"]
    assert err.count("output is no longer copied into the run's log") == 1
