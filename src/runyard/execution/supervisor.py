"""The detached process that owns one script run from Queued to its final status.

    python -m runyard.execution.supervisor RUN_ID      (started by Experiment.submit)

It takes a local slot, lays out the snapshot in a run folder, prepares the environment,
starts the script in its own session, streams its stdout and stderr into
``user_logs/std_log.txt``, uploads ``./logs`` while the script runs, collects
``./outputs`` at the end and sets the final status. It beats a heartbeat all along, stops
the whole process tree on cancel or when the time limit is reached, and is the only writer
of a submitted run's status until that status is final.
"""

from __future__ import annotations

import collections
import os
import selectors
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from typing import Any, BinaryIO

from .. import _liveness, _loans, _owners
from .._waiting import STD_LOG
from ..errors import RunyardError
from ..records import RUNNING_STATUSES, TERMINAL_STATUSES, RunQuery
from ..run import Run, format_time
from ..store import iter_runs
from ..store.base import iter_ancestors
from ..workspace import Workspace
from . import process_tree, shim
from .failure import RunFailure
from .run_configuration import RunConfiguration
from .script_run_config import command_line
from .slots import Slots

SUPERVISOR_LOG = "system_logs/supervisor.txt"
ENVIRONMENT_LOG = "system_logs/environment.txt"
STATUS_POLL = 0.2
WATCH_EVERY = 2.0
STDERR_TAIL = 30
# what a script inherits of runyard's own variables besides its run's identity: the
# workspace and its slot count, the shim of the virtualenv it may run in (all also for
# the supervisors of the child runs it submits)
_PASSED_ON = (
    "RUNYARD_URI",
    "RUNYARD_ARTIFACTS",
    "RUNYARD_MAX_CONCURRENT_RUNS",
    "RUNYARD_TOKEN",  # a remote workspace's token scoped to this run (never the user's)
    shim.ENV_VAR,
)


def seekable(stream: BinaryIO) -> BinaryIO:
    """``stream`` itself if it can seek (a local file), else a temporary copy of it (a
    download from a server): a zip is read from its end."""
    if stream.seekable():
        return stream
    copy = tempfile.TemporaryFile()  # noqa: SIM115 - the caller closes it
    with stream:
        shutil.copyfileobj(stream, copy, 1 << 20)
    copy.seek(0)
    return copy


def cancel_grace() -> float:
    """Seconds between SIGTERM and SIGKILL when a run's processes are stopped."""
    return _liveness.seconds_setting("RUNYARD_CANCEL_GRACE_SECONDS", 1.0, allow_zero=True)


class Stop(Exception):
    """The run left the supervisor's hands: canceled, finished by someone else, or failed."""


class Supervisor:
    def __init__(self, workspace: Workspace, run: Run, slots: int) -> None:
        self.ws = workspace
        self.store = workspace._store
        self.run = run
        self.rc = RunConfiguration.from_dict(run._record.run_definition or {})
        self.slots = Slots(os.path.join(workspace._local_root(), "slots"), slots)
        self.folder = os.path.join(_owners.process_folder(), run.id)
        self.phase = "NotStarted"
        self.proc: Any = None
        self.started = 0.0
        self._stop_beating = threading.Event()
        self._log = self._open_log(SUPERVISOR_LOG)

    # -- plumbing ------------------------------------------------------------------
    def _open_log(self, path: str) -> BinaryIO:
        return open_log(self.ws, self.run.id, path)

    def say(self, text: str) -> None:
        stamp = format_time(time.time())
        self._log.write(f"{stamp} {text}\n".encode())
        self._log.flush()

    def _beat(self, interval: float) -> None:
        while not self._stop_beating.wait(interval):
            try:
                self.store.heartbeat(self.run.id, self.phase)
            except RunyardError as exc:
                self.say(f"heartbeat failed: {exc}")

    def move(self, status: str, only_from: tuple[str, ...], error: Any = None) -> None:
        """Advance the status; if someone else moved it (cancel, fail), stop.

        NotResponding is a reader's guess that this supervisor is gone; being here proves
        otherwise, so the run moves on from it too.
        """
        allowed = (*only_from, "NotResponding")
        record = self.store.set_status(self.run.id, status, only_from=allowed, error=error)
        self.run._record = record
        if record.status != status:
            raise Stop(record.status)
        self.phase = status
        self.say(f"status {status}")

    def current(self) -> str:
        self.run._record = self.store.get_run(self.run.id)
        return self.run._record.status

    def check_status(self) -> None:
        """Raise Stop if the run left the current phase (canceled, failed from outside)."""
        status = self.current()
        if status not in (self.phase, "NotResponding"):
            raise Stop(status)

    # -- the phases ------------------------------------------------------------------
    def main(self) -> None:
        slot = None
        process_tree.become_subreaper()  # orphans of every phase's processes come here
        try:
            interval = _liveness.heartbeat_seconds()  # a bad setting fails the run here
            cancel_grace()
            self.announce()
            threading.Thread(target=self._beat, args=(interval,), daemon=True).start()
            slot = self.queue()
            self.move("Preparing", ("Queued",))
            argv, env = self.prepare()
            self.move("Starting", ("Preparing",))
            self.start(argv, env)
            self.move("Running", ("Starting",))
            code = self.pump()
            self.finish(code)
        except Stop as stop:
            self.stopped(str(stop))
        except RunFailure as failure:
            self.abort(str(failure), failure.code)
        except BaseException as exc:
            self.say("supervisor error:\n" + "".join(traceback.format_exception(exc)))
            self.abort(f"runyard's supervisor failed: {type(exc).__name__}: {exc}", "SystemError")
        finally:
            self._stop_beating.set()
            self.clean_up(slot)

    def announce(self) -> None:
        """Record that this process supervises the run (the liveness rule asks for it)."""
        self.store.heartbeat(self.run.id, supervisor=_owners.process_name())

    def queue(self) -> int | None:
        """Wait in Queued for room to run; return the slot taken (see ``wait_for_slot``)."""
        self.move("Queued", ("NotStarted",))
        return self.wait_for_slot()

    def clean_up(self, slot: int | None) -> None:
        """Keep the logs, give the slot back, remove the run folder: each whatever fails."""
        try:
            self.say(f"done: {self.current()}")
        except BaseException as exc:  # the store may be what failed
            self.say(f"done; the status cannot be read: {exc}")
        if slot is not None:
            try:  # before the slot goes back, no descendant may still run in it
                if _loans.settle(self.slots.folder, self.run.id):
                    self.say("its slot was lent: no descendant run uses it any more")
            finally:
                os.close(slot)
        try:
            self._log.close()  # a bucket's log stores its last part here: that may fail
            for path in (SUPERVISOR_LOG, ENVIRONMENT_LOG, STD_LOG):
                self.run._record_streaming(path)
        finally:
            _owners.remove(os.path.dirname(self.folder))

    def wait_for_slot(self) -> int:
        """Take a free local slot, or the slot an ancestor run lends while it waits.

        Runs take free slots in submission order; a lent slot goes to a descendant of the
        lender whatever its place in the queue.
        """
        lenders = list(iter_ancestors(self.store, self.run._record.parent_id))
        self.say(f"waiting for one of {self.slots.count} local slots")
        told = False
        while True:
            _liveness.expire_silent_runs(self.store, self.ws._artifacts)
            if self.current() not in ("Queued", "NotResponding"):
                raise Stop(self.run.status)
            if lenders:
                borrowed = _loans.try_borrow(self.slots.folder, lenders)
                if borrowed is not None:
                    self.say(f"runs in the slot of {borrowed[1]}, lent while that run waits")
                    return borrowed[0]
            if not self._earlier_waiting():
                slot = self.slots.try_acquire(self.run.id)
                if slot is not None:
                    return slot
            if lenders and not told:
                holders = self.slots.holders()
                if len(holders) == self.slots.count and set(holders) <= set(lenders):
                    told = True
                    self.say(
                        "every slot is held by this run's parent runs: a parent lends its "
                        "slot while it waits in wait_for_completion()"
                    )
            time.sleep(0.1)

    def _earlier_waiting(self) -> bool:
        """Is a run submitted before this one still waiting? Asks only for older runs.

        An older run whose supervisor (or submitter) is gone is failed on the spot by the
        liveness rule, so a killed process never holds up the queue.
        """
        me = self.run._record
        for status in ("NotStarted", "Queued"):
            query = RunQuery(status=status, type="azureml.scriptrun")
            for other in iter_runs(self.store, query, after=(me.created, me.number)):
                if other.target != "local":
                    continue
                _liveness.expire_silent_runs(self.store, self.ws._artifacts, run_id=other.id)
                if self.store.get_run(other.id).status in TERMINAL_STATUSES:
                    continue  # it was dead, and is finished now
                return True
        return False

    def prepare(self) -> tuple[list[str], dict[str, str]]:
        """Lay out the run folder; return the command and environment of the script."""
        os.makedirs(self.folder, exist_ok=True)
        self.lay_out()
        os.makedirs(os.path.join(self.folder, "outputs"), exist_ok=True)
        env = self.script_environment()
        argv = command_line(self.rc, self.interpreter(env))
        self.say("command: " + " ".join(argv))
        return argv, env

    def lay_out(self) -> None:
        """The snapshot's files in the run folder."""
        extract_snapshot(self.ws, self.run._record.snapshot_id, self.folder)

    def script_environment(self) -> dict[str, str]:
        """The script's environment variables: ours, the run's identity, the user's."""
        env = os.environ.copy()
        for key in list(env):
            if key.startswith("RUNYARD_") and key not in _PASSED_ON:
                env.pop(key)
        env.update(self.rc.environment.environment_variables)
        env.update({k: str(v) for k, v in self.rc.environment_variables.items()})
        env.update(
            RUNYARD_URI=self.ws.uri,
            RUNYARD_ARTIFACTS=self.ws.artifacts_root,
            RUNYARD_RUN_ID=self.run.id,
            RUNYARD_EXPERIMENT=self.run.experiment.name,
            RUNYARD_OUTPUT_DIRECTORY="outputs",
            PYTHONUNBUFFERED="1",
        )
        env[_loans.FOLDER_VAR] = self.slots.folder  # the script may lend its slot
        return env

    def interpreter(self, env: dict[str, str]) -> str:
        """The Python that runs the script: a virtualenv built for pip requirements (its
        shim folder goes into ``env``), or the configured interpreter."""
        environment = self.rc.environment
        interpreter = environment.python.interpreter()
        if environment.requirements_hash():
            from .virtualenvs import prepare_virtualenv

            with self._open_log(ENVIRONMENT_LOG) as log:
                interpreter, env[shim.ENV_VAR] = prepare_virtualenv(
                    self.ws, environment, log, self.check_status
                )
        return interpreter

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        try:
            self.proc = process_tree.start(argv, self.folder, env, cancel_grace())
        except OSError as exc:
            raise RunFailure(
                f"could not start {argv[0]!r}: {exc.strerror or exc}", "ScriptNotStarted"
            ) from None
        self.started = time.monotonic()

    def pump(self) -> int:
        """Stream output until the script ends; stop it on cancel or at the time limit."""
        out = self._open_log(STD_LOG)
        self._stderr = StderrTail(STDERR_TAIL)
        selector = selectors.DefaultSelector()
        for stream in (self.proc.stdout, self.proc.stderr):
            os.set_blocking(stream.fileno(), False)
            selector.register(stream, selectors.EVENT_READ)
        limit = self.rc.max_run_duration_seconds
        next_poll = next_watch = 0.0
        exited_at: float | None = None
        last_data = time.monotonic()
        try:
            while selector.get_map():
                for key, _ in selector.select(timeout=0.1):
                    if self._take(selector, key, out):
                        last_data = time.monotonic()
                now = time.monotonic()
                if exited_at is None and self.proc.poll() is not None:
                    exited_at = now
                if exited_at is not None and (now - last_data > 1.0 or now - exited_at > 5.0):
                    # the keeper has stopped the script's processes: whoever still holds
                    # the pipes escaped it; stop it, then read what it wrote to the end
                    process_tree.stop_all(cancel_grace())
                    while selector.get_map():
                        for key in list(selector.get_map().values()):
                            self._take(selector, key, out, to_end=True)
                    break
                if now >= next_poll:
                    next_poll = now + STATUS_POLL
                    status = self.current()
                    if status not in ("Running", "NotResponding"):
                        raise Stop(status)
                    if limit and now - self.started > limit:
                        raise RunFailure(
                            f"the run reached its time limit (max_run_duration_seconds="
                            f"{limit:g}) and was stopped",
                            "RunTimeLimitExceeded",
                        )
                if now >= next_watch:
                    next_watch = now + WATCH_EVERY
                    self.sync_watched()
                    process_tree.reap_zombies(keep=self.proc.pid)
        finally:
            selector.close()
            out.close()
            self._tail = self._stderr.lines()
        code: int = self.proc.wait()
        return code

    def _take(
        self, selector: selectors.BaseSelector, key: selectors.SelectorKey, out: BinaryIO,
        to_end: bool = False,
    ) -> bool:  # fmt: skip
        """Copy what is waiting in one pipe into the log; unregister it at its end."""
        got = False
        while True:
            try:
                data = os.read(key.fd, 1 << 16)
            except BlockingIOError:
                if to_end:  # nobody writes any more: no data now means none later
                    selector.unregister(key.fileobj)
                return got
            if not data:
                selector.unregister(key.fileobj)
                return got
            got = True
            out.write(data)
            out.flush()
            if key.fileobj is self.proc.stderr:
                self._stderr.feed(data)
            if not to_end:
                return got

    def sync_watched(self) -> None:
        for folder in self.rc.history.directories_to_watch:
            path = os.path.join(self.folder, folder)
            if os.path.isdir(path):
                self.run._sync_folder(path, folder.strip("/"))

    def finish(self, code: int) -> None:
        self.end_processes()
        self.move("Finalizing", ("Running",))
        self.collect()
        if code == 0:
            lost = (self.store.get_run(self.run.id).error or {}).get("error", {})
            if lost.get("code") == "RunDataNotStored":  # the script's own exit flush failed
                self.move("Failed", ("Finalizing",), error=run_error(lost["message"], lost["code"]))
                return
            self.move("Completed", ("Finalizing",))
            return
        message = self.failure_message(code)
        self.move("Failed", ("Finalizing",), error=run_error(message, "ScriptFailed"))

    def collect(self) -> None:
        """Upload ``./logs`` (the watched folders) and ``./outputs``."""
        self.sync_watched()
        if self.rc.history.output_collection:
            self.run._outputs_dir = os.path.join(self.folder, "outputs")
            self.run._collect_outputs()

    def failure_message(self, code: int) -> str:
        message = f"the script ended with {exit_reason(code)}"
        if self._tail:
            message += ". Last lines of stderr:\n" + "\n".join(self._tail[-10:])
        return message

    def stopped(self, status: str) -> None:
        """The status moved under us: canceled, or finished by someone else."""
        self.wind_down()
        if status == "CancelRequested":
            self.store.set_status(self.run.id, "Canceled", only_from=("CancelRequested",))
            self.say("canceled")
        elif status not in TERMINAL_STATUSES:
            self.fail(f"the run moved to {status} unexpectedly", "SystemError")

    def wind_down(self) -> None:
        """Stop every process of the run and keep what it wrote."""
        self.end_processes()
        if self.proc is not None:
            self.sync_watched()

    def abort(self, message: str, code: str) -> None:
        self.wind_down()
        self.fail(message, code)

    def end_processes(self) -> None:
        """Stop every descendant: the script's, and those of an environment build (pip),
        also ones whose keeper was killed (they were re-parented to this subreaper)."""
        process_tree.stop_all(cancel_grace())

    def fail(self, message: str, code: str) -> None:
        """Fail the run, unless its cancel was requested: then it is Canceled."""
        self.say(f"failed: {message}")
        failable = (*RUNNING_STATUSES, "Finalizing")  # not CancelRequested
        record = self.store.set_status(
            self.run.id, "Failed", error=run_error(message, code), only_from=failable
        )
        if record.status == "CancelRequested":
            self.store.set_status(self.run.id, "Canceled", only_from=("CancelRequested",))
            self.say("canceled")


def open_log(workspace: Workspace, run_id: str, path: str) -> BinaryIO:
    """A log of the run that grows while it goes (a streaming artifact), open to append."""
    from ..records import ArtifactRecord

    workspace._store.add_artifact(ArtifactRecord(run_id, path, 0, "", time.time(), True))
    return workspace._artifacts.open_append(run_id, path)


def extract_snapshot(workspace: Workspace, snapshot_id: str | None, folder: str) -> None:
    """The files of the snapshot ``snapshot_id`` (if any) in ``folder``, modes kept."""
    if not snapshot_id:
        return
    with (
        seekable(workspace._artifacts.open_snapshot(snapshot_id)) as fh,
        zipfile.ZipFile(fh) as zf,
    ):
        for info in zf.infolist():
            target = zf.extract(info, folder)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(target, mode)


class StderrTail:
    """The last ``count`` lines of a stream fed in pieces (each cut to 1,000 bytes)."""

    def __init__(self, count: int) -> None:
        self._lines: collections.deque[bytes] = collections.deque(maxlen=count)
        self._partial = b""

    def feed(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()[-4096:]
        self._lines.extend(line[-1000:] for line in lines)

    def lines(self) -> list[str]:
        found = [line.decode("utf-8", "replace") for line in self._lines]
        if self._partial:
            found.append(self._partial.decode("utf-8", "replace"))
        return found


def exit_reason(code: int) -> str:
    """``exit code N``, or ``signal N`` for a death by signal (a negative code)."""
    return f"signal {-code}" if code < 0 else f"exit code {code}"


def run_error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}, "time": format_time(time.time())}


def not_started(workspace: Workspace, run_id: str, exc: BaseException) -> None:
    """Fail a run whose supervisor could not start; the traceback goes to stderr."""
    traceback.print_exc()
    message = f"runyard's supervisor could not start: {type(exc).__name__}: {exc}"
    try:
        error = run_error(message, "SystemError")
        workspace._store.set_status(run_id, "Failed", error=error, only_from=RUNNING_STATUSES)
    except BaseException:
        traceback.print_exc()


def _terminated(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise RunFailure("runyard's supervisor received SIGTERM and stopped the run", "Terminated")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m runyard.execution.supervisor RUN_ID", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminated)
    _liveness.sweep_supervisor_stderr()
    workspace = Workspace(
        os.environ["RUNYARD_URI"], os.environ.get("RUNYARD_ARTIFACTS"), _create=False
    )
    try:
        run = workspace.get_run(argv[0])
        slots = int(os.environ.get("RUNYARD_MAX_CONCURRENT_RUNS") or os.cpu_count() or 1)
        supervisor = Supervisor(workspace, run, slots)
        supervisor.main()
    except BaseException as exc:
        not_started(workspace, argv[0], exc)  # the run must not wait for a reader
        return 1
    finally:
        sys.stderr.flush()
        _liveness.keep_supervisor_stderr(workspace._store, workspace._artifacts, argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
