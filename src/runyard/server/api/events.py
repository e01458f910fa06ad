"""/api/v1/runs/{id}/events: a run's status changes and log, as server-sent events.

Events: ``status`` (data: the run), ``log`` (data: ``{"offset", "b64"}``, the log's bytes
from ``offset``, base64), and at the end ``end``. A comment line comes every few seconds
while nothing happens, so proxies keep the connection and clients notice a dead one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Generator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from ... import _liveness
from ..._events import follow
from ..._validation import check_artifact_path, check_run_id
from ...records import RunEvent
from ...store import _json
from ..auth import Principal, reader, still_allowed
from .schemas import plain

router = APIRouter(tags=["events"])
POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 5.0
AUTH_CHECK_SECONDS = 5.0  # an open stream's token is checked again this often
_DONE = RunEvent("end")


@router.get(
    "/runs/{run_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def run_events(
    run_id: str,
    request: Request,
    who: Annotated[Principal, Depends(reader)],
    log: Annotated[str | None, Query(description="a log of the run to stream")] = None,
    offset: Annotated[int, Query(ge=0, description="where in the log to start")] = 0,
) -> StreamingResponse:
    """Follow a run until it is finished: its status changes and, with ``log``, that
    file's bytes as they are written."""
    check_run_id(run_id)
    if log is not None:
        log = check_artifact_path(log)
    store = request.app.state.store
    artifacts = request.app.state.artifacts
    await run_in_threadpool(store.get_run, run_id)  # a 404 now, not inside the stream

    class _Look:
        """The store as ``follow`` sees it: each look also applies the liveness rule."""

        def get_run(self, wanted: str) -> Any:
            _liveness.expire_silent_runs(store, artifacts, wanted)
            return store.get_run(wanted)

    steps = follow(_Look(), artifacts, run_id, log, offset)  # type: ignore[arg-type]
    assert isinstance(steps, Generator)

    async def stream() -> AsyncIterator[bytes]:
        quiet_since = checked_at = time.monotonic()
        try:
            while True:
                if time.monotonic() - checked_at > AUTH_CHECK_SECONDS:
                    checked_at = time.monotonic()
                    if not await run_in_threadpool(still_allowed, request):
                        return  # revoked or expired meanwhile: the client's next try is a 401
                event = await run_in_threadpool(next, steps, _DONE)
                if event is _DONE:
                    yield b"event: end\ndata: {}\n\n"
                    return
                if event.kind == "idle":
                    if await request.is_disconnected():
                        return
                    if time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
                        quiet_since = time.monotonic()
                        yield b": keepalive\n\n"
                    await asyncio.sleep(POLL_SECONDS)
                    continue
                quiet_since = time.monotonic()
                if event.kind == "status":
                    data = _json.dumps(plain(event.run)).decode()
                else:
                    encoded = base64.b64encode(event.data).decode()
                    data = json.dumps({"offset": event.offset, "b64": encoded})
                yield f"event: {event.kind}\ndata: {data}\n\n".encode()
        finally:
            steps.close()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
