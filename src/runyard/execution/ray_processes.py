"""One process of a run on a Ray cluster, hosted by a Ray actor (see ``ray_supervisor``).

Each actor copies the job's working directory (the run's snapshot) into a folder of its
own, starts its process there under a keeper (so the process and everything it starts end
when the actor ends, however it ends), streams its output into
``user_logs/std_log_process_<rank>.txt`` (rank 0's also into ``user_logs/std_log.txt``),
and at the end uploads its ``./logs`` and ``./outputs``: the first rank to store a path
keeps it.
"""

from __future__ import annotations

import os
import selectors
import shutil
import socket
import sys
import threading
import time
from typing import Any, BinaryIO

from .. import _owners
from .._waiting import STD_LOG
from ..workspace import Workspace
from . import process_tree
from .supervisor import StderrTail, open_log

TAIL_LINES = 10


def process_log(rank: int) -> str:
    return f"user_logs/std_log_process_{rank}.txt"


class ProcessHost:
    """What the supervisor's actors run (``ray.remote(ProcessHost)``, threaded)."""

    def __init__(self, run_id: str, rank: int) -> None:
        self.rank = rank
        process_tree.become_subreaper()  # what escapes a keeper comes here, not to init
        self.ws = Workspace(
            os.environ["RUNYARD_URI"], os.environ.get("RUNYARD_ARTIFACTS"), _create=False
        )
        self.run = self.ws.get_run(run_id)
        self.folder = os.path.join(_owners.process_folder(), f"rank-{rank}")
        shutil.copytree(os.getcwd(), self.folder, symlinks=True, dirs_exist_ok=True)
        os.makedirs(os.path.join(self.folder, "outputs"), exist_ok=True)
        self.proc: Any = None
        self.tail = StderrTail(TAIL_LINES)
        self._pump: threading.Thread | None = None

    def ready(self) -> str:
        """The node this process runs on (its address)."""
        import ray

        return str(ray.util.get_node_ip_address())

    def rendezvous(self) -> tuple[str, int]:
        """An address and a free port on this node for torch.distributed's rank 0."""
        address = self.ready()
        with socket.socket() as sock:
            sock.bind((address, 0))
            port = int(sock.getsockname()[1])
        return address, port

    def start(
        self, argv: list[str], extra: dict[str, str], removed: list[str], grace: float
    ) -> int:
        """Start the process; return its keeper's pid. Raises OSError if it cannot start."""
        env = os.environ.copy()
        for key in removed:
            env.pop(key, None)
        env.update(extra)
        if argv and argv[0] == "python":  # this actor's Python: Ray's runtime environment
            argv = [sys.executable, *argv[1:]]
        # shielded: Ray kills an actor's children with it, and the keeper must outlive
        # that long enough to stop the script's whole tree
        self.proc = process_tree.start(argv, self.folder, env, grace, shield=True)
        outs = [open_log(self.ws, self.run.id, process_log(self.rank))]
        if self.rank == 0:
            outs.append(open_log(self.ws, self.run.id, STD_LOG))
        self._pump = threading.Thread(target=self._copy_output, args=(outs,), daemon=True)
        self._pump.start()
        return int(self.proc.pid)

    def _copy_output(self, outs: list[BinaryIO]) -> None:
        selector = selectors.DefaultSelector()
        for stream in (self.proc.stdout, self.proc.stderr):
            selector.register(stream, selectors.EVENT_READ)
        try:
            while selector.get_map():
                for key, _ in selector.select(timeout=0.5):
                    data = os.read(key.fd, 1 << 16)
                    if not data:
                        selector.unregister(key.fileobj)
                        continue
                    for out in outs:
                        out.write(data)
                        out.flush()
                    if key.fileobj is self.proc.stderr:
                        self.tail.feed(data)
        finally:
            selector.close()
            for out in outs:
                out.close()

    def wait(self) -> tuple[int, list[str]]:
        """Wait for the process to end; return its exit status and its last stderr lines."""
        code = int(self.proc.wait())
        if self._pump is not None:
            self._pump.join(timeout=30)
        return code, self.tail.lines()

    def stop(self, grace: float) -> None:
        """Stop the process and everything it started: its keeper does it in order (SIGTERM,
        SIGKILL after ``grace``); what is left after that is killed here."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # the shield ends; its keeper stops the tree
        deadline = time.monotonic() + grace + 5
        keep = self.proc.pid if self.proc is not None else None  # wait() collects it
        while time.monotonic() < deadline and process_tree.alive_descendants():
            process_tree.reap_zombies(keep)  # the keeper, ours now (we are its subreaper)
            time.sleep(0.05)
        process_tree.stop_all(0)

    def sync(self, folders: list[str]) -> None:
        """Upload the watched folders (``./logs``) as they are now."""
        for folder in folders:
            self.run._sync_folder(os.path.join(self.folder, folder), folder.strip("/"))

    def collect(self, folders: list[str], outputs: bool) -> None:
        """Upload the watched folders and, if ``outputs``, ``./outputs``."""
        self.sync(folders)
        for path in (process_log(self.rank), *((STD_LOG,) if self.rank == 0 else ())):
            self.run._record_streaming(path)
        if outputs:
            self.run._outputs_dir = os.path.join(self.folder, "outputs")
            self.run._collect_outputs()
