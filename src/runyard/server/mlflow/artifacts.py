"""MLflow's artifact proxy (``/api/2.0/mlflow-artifacts/artifacts/<path>``) on run files.

A run's ``artifact_uri`` is ``mlflow-artifacts:/<experiment>/<run>/artifacts``, which the
client turns into ``…/mlflow-artifacts/artifacts/<experiment>/<run>/artifacts/<file>``; the
file is the run's file ``<file>``. Every path is validated (``check_artifact_path``) before
anything else, and the server only ever opens paths it builds itself: a path names a run's
file, never a place on disk. Uploads stream into the artifact store; downloads stream out.
Run files are write-once, so a second upload of one name is refused and nothing is deleted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..._validation import check_artifact_path, check_run_id
from ...errors import NotFound, RunyardError, UserError
from ..api.files import file_response, receive_file
from ..auth import _needs
from ._rpc import error_response, json_response, log
from .experiments import mlflow_id

_ROOT = "artifacts"


def listing(store: Any, run_id: str, folder: str, full_paths: bool = True) -> list[dict[str, Any]]:
    """The files and folders directly inside ``folder`` of a run, as MLflow FileInfos:
    paths relative to the run's root (``full_paths``) or bare names (the proxy's listing)."""
    folder = check_artifact_path(folder).rstrip("/") if folder else ""
    prefix = f"{folder}/" if folder else ""
    entries: dict[str, dict[str, Any]] = {}
    for record in store.list_artifacts(run_id, folder or None):
        if not record.path.startswith(prefix):
            continue  # the folder itself is a file
        head, slash, _ = record.path[len(prefix) :].partition("/")
        shown = f"{prefix}{head}" if full_paths else head
        if slash:
            entries.setdefault(head, {"path": shown, "is_dir": True})
        else:
            entries[head] = {"path": shown, "is_dir": False, "file_size": record.size}
    return [entries[name] for name in sorted(entries)]


def _split(path: str) -> tuple[str, str, str] | None:
    """(experiment, run or model id, file or folder) of a proxy path
    ``<experiment>/<run>/artifacts/<file>`` or ``<experiment>/models/<model>/artifacts/<file>``;
    None for a path above a run's files."""
    given = path.rstrip("/")
    if not given:
        return None
    normal = check_artifact_path(given)
    if normal != given:  # "a//b", "./a": MLflow refuses a path that is not its normal form
        raise UserError(f"Invalid path {path[:200]!r}: write it in its normal form ({normal!r})")
    parts = normal.split("/")
    if len(parts) >= 4 and parts[1] == "models" and parts[3] == _ROOT:
        return parts[0], check_run_id(parts[2]), "/".join(parts[4:])
    if len(parts) >= 3 and parts[2] == _ROOT:
        return parts[0], check_run_id(parts[1]), "/".join(parts[3:])
    return None


def _run_file(request: Request, path: str) -> tuple[str, str]:
    """(run id, file name) of a proxy path to a file (checked before anything else)."""
    found = _split(path)
    if found is None or not found[2]:
        raise UserError(
            f"Invalid path {path!r}: runyard serves run artifacts at "
            "<experiment id>/<run id>/artifacts/<file>"
        )
    experiment, run_id, name = found
    _check_experiment(request, experiment, run_id)
    return run_id, name


def _check_experiment(request: Request, experiment: str, run_id: str) -> None:
    store = request.app.state.store
    try:
        record = store.get_run(run_id)
    except NotFound:
        raise NotFound(f"Run with id={run_id} not found") from None
    if experiment not in (record.experiment_id, mlflow_id(store, record.experiment_id)):
        raise NotFound(f"run {run_id} is not in experiment {experiment}")


def _guarded(role: str, handle: Callable[[Request, Any], Any]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        try:
            who = await run_in_threadpool(_needs, request, role)
            result: Response = await handle(request, who)
            return result
        except RunyardError as exc:
            return error_response(exc)
        except Exception as exc:
            log.exception("%s %s failed", request.method, request.url.path)
            return error_response(exc)

    return endpoint


async def _upload(request: Request, who: Any) -> Response:
    run_id, name = await run_in_threadpool(_run_file, request, request.path_params["path"])
    await receive_file(request, who, run_id, name)
    return json_response({})


async def _download(request: Request, who: Any) -> Response:
    run_id, name = await run_in_threadpool(_run_file, request, request.path_params["path"])
    return await run_in_threadpool(file_response, request, run_id, name)


async def _list(request: Request, who: Any) -> Response:
    path = request.query_params.get("path", "")

    def answer() -> dict[str, Any]:
        found = _split(path)
        if found is None:
            return {"files": []}  # above a run's files: runyard lists by run
        experiment, run_id, folder = found
        _check_experiment(request, experiment, run_id)
        return {"files": listing(request.app.state.store, run_id, folder, full_paths=False)}

    return json_response(await run_in_threadpool(answer))


async def _delete(request: Request, who: Any) -> Response:
    await run_in_threadpool(_run_file, request, request.path_params["path"])
    raise UserError("runyard keeps run files write-once: they cannot be deleted")


async def _multipart(request: Request, who: Any) -> Response:
    """What MLflow's own server answers when its artifact store has no multipart upload:
    its client then sends the file in one streamed PUT."""
    await run_in_threadpool(_run_file, request, request.path_params["path"])
    message = "Multipart upload is not supported for the current artifact repository"
    body = json.dumps({"error_code": "NOT_IMPLEMENTED", "message": message})
    return Response(body, status_code=501, media_type="application/json")


def routes() -> list[Route]:
    base = "/mlflow-artifacts/artifacts"
    multipart = "/mlflow-artifacts/mpu/{action:str}/{path:path}"
    return [
        Route(multipart, _guarded("contributor", _multipart), methods=["POST"]),
        Route(f"{base}/{{path:path}}", _guarded("contributor", _upload), methods=["PUT"]),
        Route(f"{base}/{{path:path}}", _guarded("reader", _download), methods=["GET"]),
        Route(f"{base}/{{path:path}}", _guarded("contributor", _delete), methods=["DELETE"]),
        Route(base, _guarded("reader", _list), methods=["GET"]),
    ]
