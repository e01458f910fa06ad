"""The in-process metric buffer and the background thread that flushes it.

``Run.log`` appends a ``(value, step, time)`` tuple to a per-series list and returns.
A daemon thread moves what has accumulated into the store every ``FLUSH_INTERVAL``
seconds, one transaction per run. Taking points off a list is ``batch = lst[:n]`` then
``del lst[:n]``: both are single operations under the GIL, so appends racing with a
flush land either in this batch or the next, never nowhere.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Collection
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from ._validation import check_text
from .errors import RunyardError, ServerUnreachable, UserError, stored_before
from .records import SeriesAppend

if TYPE_CHECKING:
    from .store.base import Store

FLUSH_INTERVAL = 0.5
Point = tuple[Any, "int | None", float]


class Series:
    __slots__ = ("description", "kind", "points")

    def __init__(self, kind: str, description: str) -> None:
        self.kind = kind
        self.description = description
        self.points: list[Point] = []


class MetricBuffer:
    """Pending points of one run."""

    def __init__(self, store: Store, run_id: str, owner: object) -> None:
        self.store = store
        self.run_id = run_id
        self.owner = weakref.ref(owner)  # once the Run is gone and we are empty, we go too
        self.series: dict[str, Series] = {}
        self.scalars: dict[str, list[Point]] = {}  # the fast path of Run.log
        self._lock = threading.RLock()  # one flush at a time (it may wait for a server)
        self._names = threading.Lock()  # one new Series per name; never held by a flush
        self._known: dict[str, str] | None = None
        self.error: BaseException | None = None
        _flusher.register(self)

    def series_for(self, name: str, kind: str, description: str) -> Series:
        """The pending series ``name``, checking its kind against what is stored."""
        if description:  # stored as text: refused here, never in the middle of a batch
            check_text(description, f"description of metric {name!r}", 5000)
        with self._names:  # two threads logging a new name must share one Series
            return self._series_for(name, kind, description)

    def _series_for(self, name: str, kind: str, description: str) -> Series:
        found = self.series.get(name)
        if found is None:
            if self._known is None:
                self._known = _stored_kinds(self.store, self.run_id)
            stored = self._known.get(name, kind)
            if stored != kind:
                raise UserError(
                    f"metric {name!r} already holds {stored} values; a {kind} cannot be logged "
                    "under the same name: use another name"
                )
            found = self.series[name] = Series(kind, description)
            if kind == "scalar":
                self.scalars[name] = found.points
        elif found.kind != kind:
            raise UserError(
                f"metric {name!r} already holds {found.kind} values; a {kind} cannot be logged "
                "under the same name: use another name"
            )
        if description:
            found.description = description
        return found

    def forget_after_fork(self) -> None:
        """In a forked child: the pending points belong to the parent, which writes them."""
        self._lock = threading.RLock()
        self._names = threading.Lock()
        for series in self.series.values():
            del series.points[:]

    def flush(self, raise_errors: bool = True) -> None:
        """Write every pending point; on return all points logged before the call are durable."""
        with self._lock:
            taken: list[tuple[str, Series, list[Point]]] = []
            for name, series in list(self.series.items()):
                n = len(series.points)
                if n:
                    batch = series.points[:n]
                    del series.points[:n]
                    taken.append((name, series, batch))
            if not taken:
                self._persist(raise_errors)
                self._raise_pending(raise_errors)
                return
            appends = [_to_append(name, s, batch) for name, s, batch in taken]
            try:
                self.store.log_batch(self.run_id, appends)
            except UserError as exc:
                if getattr(exc, "runyard_earlier_batch", False):
                    # an earlier batch was refused (by a server, in the background): say so;
                    # this one was not taken and waits for the next attempt
                    for _name, series, batch in reversed(taken):
                        series.points[0:0] = batch
                    self.error = exc
                else:
                    self._write_one_by_one(taken, appends)
            except BaseException as exc:
                if not stored_before(exc):
                    for _name, series, batch in reversed(taken):
                        series.points[0:0] = batch  # keep them for the next attempt
                if not isinstance(exc, Exception):
                    raise  # Ctrl-C stays Ctrl-C (it became a RunyardError)
                self._note(exc)
            else:
                self._note(None)
            self._persist(raise_errors)
            self._raise_pending(raise_errors)

    def _persist(self, explicit: bool) -> None:
        """On an explicit flush, make what a remote store holds for later durable (its
        spool, fsynced): everything logged before ``flush()`` returns survives a SIGKILL."""
        if explicit:
            try:
                self.store.persist()
            except RunyardError as exc:
                self._note(exc)

    def _note(self, exc: BaseException | None) -> None:
        """Remember how the last write went. Points dropped for good (a UserError) stay
        reported until a flush that raises says so: a later write that succeeds must not
        hide them (``complete()`` would mark the run Completed without them)."""
        if not isinstance(self.error, UserError):
            self.error = exc

    def _write_one_by_one(
        self, taken: list[tuple[str, Series, list[Point]]], appends: list[SeriesAppend]
    ) -> None:
        for i, ((name, series, batch), append) in enumerate(zip(taken, appends, strict=True)):
            try:
                self.store.log_batch(self.run_id, [append])
            except UserError as exc:  # can never be stored: say so, don't retry forever
                self.error = exc
                warnings.warn(
                    f"runyard dropped {len(append.values)} points of metric {name!r}: {exc}",
                    RuntimeWarning,
                    stacklevel=2,
                )
            except BaseException as exc:  # the store failed, not the points: write them later
                if not stored_before(exc):
                    series.points[0:0] = batch
                if not isinstance(exc, Exception):  # Ctrl-C: the rest waits, unwritten
                    for _name, other, rest in taken[i + 1 :]:
                        other.points[0:0] = rest
                    raise
                self._note(exc)

    def _raise_pending(self, raise_errors: bool) -> None:
        if raise_errors and self.error is not None:
            exc, self.error = self.error, None
            if isinstance(exc, RunyardError):
                raise exc
            raise RunyardError(f"metrics of run {self.run_id} could not be written: {exc}")


def _stored_kinds(store: Store, run_id: str) -> dict[str, str]:
    """The kinds of the series stored for ``run_id``. ``run.log`` never waits for a server
    that cannot be reached: the server checks each batch's kinds when it arrives, and a
    refusal is reported by a later flush."""
    try:
        return {s.name: s.kind for s in store.list_series_now([run_id])}
    except ServerUnreachable:
        return {}


def _to_append(name: str, series: Series, batch: list[Point]) -> SeriesAppend:
    values = list(map(_first, batch))
    steps = list(map(_second, batch))
    times = list(map(_third, batch))
    return SeriesAppend(name, series.kind, steps, values, times, series.description)


_first, _second, _third = itemgetter(0), itemgetter(1), itemgetter(2)


class _Flusher:
    """One daemon thread per process that flushes every live buffer periodically."""

    def __init__(self) -> None:
        self._buffers: set[MetricBuffer] = set()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    def register(self, buffer: MetricBuffer) -> None:
        with self._guard:
            self._buffers.add(buffer)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="runyard-metrics-flusher", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while True:
            self._wake.wait(FLUSH_INTERVAL)
            self.flush_all(raise_errors=False)

    def flush_all(
        self, run_ids: Collection[str] | str | None = None, raise_errors: bool = True
    ) -> None:
        """Write the pending points of ``run_ids`` (default: every run of this process)."""
        if isinstance(run_ids, str):
            run_ids = (run_ids,)
        with self._guard:
            buffers = [b for b in self._buffers if run_ids is None or b.run_id in run_ids]
        for buffer in buffers:
            try:
                buffer.flush(raise_errors=raise_errors)
            except RunyardError:
                if raise_errors:
                    raise
            if buffer.owner() is None and not any(s.points for s in buffer.series.values()):
                with self._guard:
                    self._buffers.discard(buffer)

    def after_fork(self) -> None:
        self._guard = threading.Lock()
        self._thread = None
        buffers, self._buffers = self._buffers, set()
        for buffer in buffers:
            buffer.forget_after_fork()
            self.register(buffer)


def _flush_at_exit() -> None:
    """Write what is pending as the interpreter ends; say what could not be stored.

    Nothing can raise any more, and a loss must never be silent: each run whose points were
    not all stored gets one line on stderr.
    """
    _flusher.flush_all(raise_errors=False)
    with _flusher._guard:
        buffers = list(_flusher._buffers)
    for buffer in buffers:
        left = sum(len(s.points) for s in buffer.series.values())
        if buffer.error is None and not left:
            continue
        what = f"{left} metric points" if left else "some metric points"
        message = (
            f"{what} of run {buffer.run_id} could not be stored: "
            f"{buffer.error or 'the store did not answer'}"
        )
        print(f"runyard: {message}", file=sys.__stderr__)
        try:  # so that a supervisor never calls this run Completed (if the store answers)
            buffer.store.update_run(
                buffer.run_id, error={"error": {"code": "RunDataNotStored", "message": message}}
            )
        except Exception:
            pass


_flusher = _Flusher()
flush_all = _flusher.flush_all
atexit.register(_flush_at_exit)
os.register_at_fork(after_in_child=_flusher.after_fork)
