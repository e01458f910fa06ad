"""RestStore: the Store of a workspace kept by a runyard server, over HTTP.

Every call is one request to ``/api/v1``; the server's errors come back as the same
:mod:`runyard.errors` classes with the same messages. Metric batches travel binary
(:mod:`.wire`) with an idempotency key, through an outbox that keeps them (in memory, then
in a spool file) while the server cannot be reached, so ``run.log`` never waits for it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import quote

from ..errors import Conflict, NotFound, ServerUnreachable
from ..records import (
    TERMINAL_STATUSES,
    ArtifactRecord,
    ComputeRecord,
    ExperimentOverview,
    ExperimentRecord,
    MetricHistory,
    NewRun,
    RunEvent,
    RunQuery,
    RunRecord,
    SeriesAppend,
    SeriesSummary,
    StatusChange,
    SupervisedRun,
)
from . import _json, wire
from ._http import API, HttpClient

IDLE = RunEvent("idle")
#: how long the first, direct attempt to deliver a batch may take before it waits in
#: the outbox (the outbox then keeps trying in the background)
DIRECT_SEND_SECONDS = 2.0


def _q(part: str) -> str:
    return quote(part, safe="")


class RestStore:
    """The Store protocol over a runyard server's ``/api/v1``.

    >>> store = RestStore("http://127.0.0.1:8600", token="ry_...")   # doctest: +SKIP
    """

    def __init__(self, uri: str, token: str | None = None) -> None:
        from .._credentials import token_for

        self.uri = uri.rstrip("/")
        self._http = HttpClient(self.uri, token if token is not None else token_for(self.uri))
        self._outbox: Any = None
        self._outbox_lock = threading.Lock()

    # -- plumbing ------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        if body is not None:
            kwargs["content"] = _json.dumps(body)
            kwargs["headers"] = {"Content-Type": "application/json"}
        response = self._http.request(method, API + path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return _json.loads(response.content)

    # -- experiments ---------------------------------------------------------------
    def get_or_create_experiment(self, name: str) -> ExperimentRecord:
        return ExperimentRecord(**self._call("POST", "/experiments", {"name": name}))

    def get_experiment(self, experiment_id: str) -> ExperimentRecord:
        return ExperimentRecord(**self._call("GET", f"/experiments/{_q(experiment_id)}"))

    def find_experiment(self, name: str) -> ExperimentRecord | None:
        found = self._call("GET", "/experiments", params={"name": name})
        return ExperimentRecord(**found[0]) if found else None

    def list_experiments(self, view_type: str = "ActiveOnly") -> list[ExperimentRecord]:
        found = self._call("GET", "/experiments", params={"view_type": view_type})
        return [ExperimentRecord(**e) for e in found]

    def archive_experiment(self, experiment_id: str) -> ExperimentRecord:
        return ExperimentRecord(**self._call("POST", f"/experiments/{_q(experiment_id)}/archive"))

    def reactivate_experiment(self, experiment_id: str) -> ExperimentRecord:
        path = f"/experiments/{_q(experiment_id)}/reactivate"
        return ExperimentRecord(**self._call("POST", path))

    def set_experiment_tags(self, experiment_id: str, tags: dict[str, str | None]) -> None:
        self._call("PATCH", f"/experiments/{_q(experiment_id)}/tags", {"set": dict(tags)})

    def remove_experiment_tags(self, experiment_id: str, keys: Sequence[str]) -> None:
        self._call("PATCH", f"/experiments/{_q(experiment_id)}/tags", {"remove": list(keys)})

    # -- runs ------------------------------------------------------------------------
    def create_runs(self, experiment_id: str, runs: Sequence[NewRun]) -> list[RunRecord]:
        body = {"runs": [_new_run(r) for r in runs]}
        try:
            found = self._call("POST", f"/experiments/{_q(experiment_id)}/runs", body)
        except Conflict as exc:
            # a retry after the first attempt was stored but its answer was lost
            if getattr(exc, "runyard_attempts", 1) < 2:
                raise
            existing = self._created_before(experiment_id, runs)
            if existing is None:
                raise
            return existing
        return [RunRecord(**r) for r in found]

    def _created_before(self, experiment_id: str, runs: Sequence[NewRun]) -> list[RunRecord] | None:
        records = []
        for run in runs:
            try:
                record = self.get_run(run.id)
            except NotFound:
                return None
            if record.experiment_id != experiment_id or record.parent_id != run.parent_id:
                return None
            records.append(record)
        return records

    def get_run(self, run_id: str) -> RunRecord:
        return RunRecord(**self._call("GET", f"/runs/{_q(run_id)}"))

    def search_runs(
        self,
        query: RunQuery,
        *,
        after: tuple[float, int] | None = None,
        limit: int = 500,
        offset: int = 0,
    ) -> list[RunRecord]:
        body = {
            "query": _query(query),
            "after": list(after) if after else None,
            "limit": limit,
            "offset": offset,
        }
        return [RunRecord(**r) for r in self._call("POST", "/runs/search", body)]

    def count_runs(self, query: RunQuery) -> int:
        found = self._call("POST", "/runs/count", {"query": _query(query)})
        return int(found["count"])

    def experiment_overview(self, view_type: str = "ActiveOnly") -> list[ExperimentOverview]:
        found = self._call("GET", "/experiments/overview", params={"view_type": view_type})
        return [
            ExperimentOverview(**{**o, "experiment": ExperimentRecord(**o["experiment"])})
            for o in found
        ]

    def status_history(self, run_id: str) -> list[StatusChange]:
        return [StatusChange(**c) for c in self._call("GET", f"/runs/{_q(run_id)}/statuses")]

    def set_deleted(self, run_id: str, deleted: bool) -> RunRecord:
        action = "delete" if deleted else "restore"
        return RunRecord(**self._call("POST", f"/runs/{_q(run_id)}/{action}", {}))

    def update_run(self, run_id: str, **fields: Any) -> RunRecord:
        return RunRecord(**self._call("PATCH", f"/runs/{_q(run_id)}", fields))

    def set_status(
        self,
        run_id: str,
        status: str,
        *,
        error: dict[str, Any] | None = None,
        only_from: Sequence[str] | None = None,
    ) -> RunRecord:
        if status in TERMINAL_STATUSES and self._outbox is not None:
            self._outbox.drain(self._http.retry_seconds)  # its points arrive first
        body = {
            "status": status,
            "error": error,
            "only_from": list(only_from) if only_from is not None else None,
        }
        return RunRecord(**self._call("POST", f"/runs/{_q(run_id)}/status", body))

    def heartbeat(
        self, run_id: str, status: str | None = None, *, supervisor: str | None = None
    ) -> None:
        body = {"status": status, "supervisor": supervisor}
        self._call("POST", f"/runs/{_q(run_id)}/heartbeat", body)

    def supervised_runs(
        self, late_after: float, *, include: str | None = None
    ) -> list[SupervisedRun]:
        params: dict[str, Any] = {"late_after": late_after}
        if include is not None:
            params["include"] = include
        return [SupervisedRun(**r) for r in self._call("GET", "/supervised-runs", params=params)]

    def expire_silent_runs(
        self, not_responding_after: float, fail_after: float, *, spare: Sequence[str] = ()
    ) -> int:
        body = {
            "not_responding_after": not_responding_after,
            "fail_after": fail_after,
            "spare": list(spare),
        }
        count: int = self._call("POST", "/runs/expire-silent", body)["expired"]
        return count

    def set_tags(self, run_id: str, tags: dict[str, str | None]) -> None:
        self._call("PATCH", f"/runs/{_q(run_id)}/tags", {"set": dict(tags)})

    def remove_tags(self, run_id: str, keys: Sequence[str]) -> None:
        self._call("PATCH", f"/runs/{_q(run_id)}/tags", {"remove": list(keys)})

    def add_properties(self, run_id: str, properties: dict[str, str]) -> None:
        self._call("POST", f"/runs/{_q(run_id)}/properties", {"properties": dict(properties)})

    def run_credentials(self, run_id: str) -> dict[str, str]:
        """Environment variables a submitted run's processes need to reach this store: a
        token scoped to the run and its children, never the submitter's own."""
        token = self._call("POST", f"/runs/{_q(run_id)}/token")["token"]
        return {"RUNYARD_TOKEN": token}

    # -- compute targets -------------------------------------------------------------
    def attach_compute(
        self, name: str, type: str, address: str, created_by: str | None = None
    ) -> ComputeRecord:
        """Attach a compute target (an admin's token; the server records who did)."""
        body = {"name": name, "type": type, "address": address}
        return ComputeRecord(**self._call("POST", "/computes", body))

    def get_compute(self, name: str) -> ComputeRecord:
        return ComputeRecord(**self._call("GET", f"/computes/{_q(name)}"))

    def list_computes(self) -> list[ComputeRecord]:
        return [ComputeRecord(**c) for c in self._call("GET", "/computes")]

    def detach_compute(self, name: str) -> None:
        self._call("DELETE", f"/computes/{_q(name)}")

    # -- metrics ---------------------------------------------------------------------
    def log_batch(
        self, run_id: str, series: Sequence[SeriesAppend], key: str | None = None
    ) -> bool:
        """Hand the batch to the outbox: sent now if the server answers, else kept (in
        memory, then spooled to disk) and sent in order once it is back."""
        if not series:
            return False
        payload = wire.encode_batch(series)
        if key is not None:  # the caller keeps the batch: sent now, or raised
            return self._send_batch(run_id, key, payload)
        self._get_outbox().put(run_id, payload)
        return True

    def _send_batch(
        self, run_id: str, key: str, payload: bytes, retry_seconds: float | None = None
    ) -> bool:
        """Send one batch; whether the server stored it (False: it had its key already)."""
        response = self._http.request(
            "POST",
            f"{API}/runs/{_q(run_id)}/metrics",
            content=payload,
            headers={"Content-Type": wire.BATCH_TYPE, "Idempotency-Key": key},
            retry_seconds=retry_seconds,
        )
        stored: bool = _json.loads(response.content)["stored"]
        return stored

    def _get_outbox(self) -> Any:
        if self._outbox is None:
            with self._outbox_lock:
                if self._outbox is None:
                    from ._outbox import Outbox, default_spool_dir

                    def send(run_id: str, key: str, payload: bytes) -> None:
                        self._send_batch(run_id, key, payload, DIRECT_SEND_SECONDS)

                    self._outbox = Outbox(send, default_spool_dir(self.uri), label=self.uri)
        return self._outbox

    def list_series(self, run_ids: Sequence[str]) -> list[SeriesSummary]:
        found = self._call("POST", "/series", {"run_ids": list(run_ids)})
        return [SeriesSummary(**s) for s in found]

    def list_series_now(self, run_ids: Sequence[str]) -> list[SeriesSummary]:
        """``list_series`` for ``run.log``, which never waits for the network: one attempt
        with a short timeout, none while batches wait for the server (ServerUnreachable)."""
        if self._outbox is not None and self._outbox.pending():
            raise ServerUnreachable(f"the runyard server at {self.uri} is not answering")
        response = self._http.request(
            "POST",
            f"{API}/series",
            content=_json.dumps({"run_ids": list(run_ids)}),
            headers={"Content-Type": "application/json"},
            retry_seconds=0,
            timeout=DIRECT_SEND_SECONDS,
        )
        return [SeriesSummary(**s) for s in _json.loads(response.content)]

    def persist(self) -> None:
        """Write the batches still waiting in memory to the spool (fsynced), so that they
        outlive this process; ``Run.flush()`` calls it. StoreError if it cannot be written."""
        if self._outbox is not None:
            self._outbox.persist()

    def get_history(self, run_id: str, name: str, *, times: bool = True) -> MetricHistory:
        found = self.get_histories([run_id], name).get(run_id)  # a server sends the times
        if not found:
            self.get_run(run_id)  # NotFound for a run that does not exist
            raise NotFound(f"run {run_id} has no metric named {name!r}")
        return found[0]

    def get_histories(
        self, run_ids: Sequence[str], name: str | None = None, values_only: bool = False
    ) -> dict[str, list[MetricHistory]]:
        body = {"run_ids": list(run_ids), "name": name, "values_only": values_only}
        response = self._http.request(
            "POST",
            f"{API}/histories",
            content=_json.dumps(body),
            headers={"Content-Type": "application/json"},
        )
        return wire.decode_histories(response.content)

    # -- artifact and snapshot records -----------------------------------------------
    def add_artifact(self, record: ArtifactRecord, place: Callable[[], None] | None = None) -> None:
        """With ``place`` (a RemoteArtifactStore upload), the one upload request stores the
        bytes and the record together on the server. Without, a streaming log written in
        place is recorded: the server reads its size and digest from its own copy."""
        if place is not None:
            place()
            return
        path = f"/runs/{_q(record.run_id)}/logs/{_path(record.path)}"
        self._call("POST", path, params={"final": "true", "offset": -1})

    def list_artifacts(self, run_id: str, prefix: str | None = None) -> list[ArtifactRecord]:
        params = {"prefix": prefix} if prefix is not None else None
        found = self._call("GET", f"/runs/{_q(run_id)}/artifacts", params=params)
        return [ArtifactRecord(**a) for a in found]

    def get_artifact(self, run_id: str, path: str) -> ArtifactRecord:
        return ArtifactRecord(**self._call("GET", f"/runs/{_q(run_id)}/artifacts/{_path(path)}"))

    def add_snapshot(self, snapshot_id: str, size: int, files: int) -> None:
        """The server records a snapshot when its zip is uploaded (RemoteArtifactStore)."""
        if not self.has_snapshot(snapshot_id):
            raise NotFound(
                f"snapshot {snapshot_id} was not uploaded to {self.uri}; upload its zip first"
            )

    def has_snapshot(self, snapshot_id: str) -> bool:
        found: bool = self._call("GET", f"/snapshots/{_q(snapshot_id)}/exists")["exists"]
        return found

    # -- following a run -----------------------------------------------------------
    def run_events(
        self, run_id: str, artifacts: Any, log_path: str | None = None, offset: int = 0
    ) -> Iterator[RunEvent]:
        """The server's event stream of the run; a broken stream is picked up again from
        the last log byte received (for as long as the client's retry budget allows)."""
        import base64

        params: dict[str, Any] = {}
        if log_path is not None:
            params["log"] = log_path
        broken_since: float | None = None
        while True:
            if log_path is not None:
                params["offset"] = offset
            try:
                with self._http.stream(
                    "GET", f"{API}/runs/{_q(run_id)}/events", params=params, timeout=None
                ) as response:
                    broken_since = None
                    kind = ""
                    for line in response.iter_lines():
                        if line.startswith(":"):
                            yield IDLE
                        elif line.startswith("event:"):
                            kind = line[6:].strip()
                        elif line.startswith("data:") and kind == "status":
                            yield RunEvent("status", run=RunRecord(**_json.loads(line[5:])))
                        elif line.startswith("data:") and kind == "log":
                            data = json.loads(line[5:])
                            chunk = base64.b64decode(data["b64"])
                            if data["offset"] + len(chunk) > offset:  # not seen yet
                                chunk = chunk[max(0, offset - data["offset"]) :]
                                yield RunEvent("log", data=chunk, offset=offset)
                                offset += len(chunk)
                        elif line.startswith("data:") and kind == "end":
                            return
            except ServerUnreachable:
                now = time.monotonic()
                broken_since = broken_since or now
                if now - broken_since > self._http.retry_seconds:
                    raise
                time.sleep(1.0)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the outbox has delivered every batch (``timeout`` seconds at most)."""
        return self._outbox is None or bool(self._outbox.drain(timeout))

    def close(self) -> None:
        if self._outbox is not None:
            self._outbox.close()
        self._http.close()


def _path(path: str) -> str:
    return "/".join(_q(part) for part in path.split("/"))


def _fields(record: Any) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


def _query(query: RunQuery) -> dict[str, Any]:
    fields = _fields(query)
    fields["conditions"] = [_fields(c) for c in query.conditions]
    fields["order"] = [_fields(o) for o in query.order]
    return fields


def _new_run(run: NewRun) -> dict[str, Any]:
    fields = _fields(run)
    fields.pop("submitted_by")  # the server records the token's name
    return fields
