"""``RunDetails``: a live view of a run in a notebook, as ``azureml.widgets`` draws one.

It shows the run's status, duration and properties, a chart of every metric logged more
than once (downsampled to the chart's width), a table of single values, the tail of its
log and its children, and refreshes them while the run goes on. Unlike the reference's
widget it stops polling once the run is finished (Completed, Failed or Canceled).

The view is ipywidgets (headers and tables as HTML) with plotly's ``FigureWidget`` for
charts, so it works wherever ipywidgets do: JupyterLab, Notebook 7, VS Code. It reads
through the SDK, on a local workspace as on a server.
"""

from __future__ import annotations

import html
import math
import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from .._downsample import sample
from ..errors import UserError
from ..records import TERMINAL_STATUSES
from . import _table, _text

if TYPE_CHECKING:
    from ..run import Run

CHART_WIDTH = 600  # points per chart: the widget's charts are about this many pixels wide
LOG_TAIL = 64 * 1024
MAX_CHILDREN = 200
MAX_CHARTS = 30
REFRESH_ENV = ("RUNYARD_WIDGET_REFRESH_SECONDS", "AZUREML_OVERRIDE_ALL_WIDGET_REFRESH_TIME")
LOG_NAME = "user_logs/std_log.txt"
_COLOURS = {
    "Completed": "#2f855a",
    "Failed": "#c53030",
    "Canceled": "#c53030",
    "NotStarted": "#718096",
}
_RUNNING = "#2b6cb0"
_CHILD_COLUMNS = ("run_number", "status", "start_time", "duration", "run_id")


def refresh_seconds(elapsed: float) -> float:
    """How long to wait between refreshes: 5 s at first, growing to 60 s after an hour
    (the reference's cadence), unless an environment variable of ``REFRESH_ENV`` says."""
    for name in REFRESH_ENV:
        value = os.environ.get(name)
        if value:
            try:
                seconds = float(value)
            except ValueError:
                raise UserError(f"{name} must be a number of seconds, not {value!r}") from None
            if math.isfinite(seconds) and seconds > 0:
                return seconds
            raise UserError(f"{name} must be a positive number of seconds, not {value!r}")
    alpha = min(max(elapsed / 3600.0, 0.0), 1.0)
    return (1 - alpha) * 5.0 + alpha * 60.0


class RunDetails:
    """A live view of ``run`` for Jupyter: ``RunDetails(run).show()``.

        >>> from runyard.widgets import RunDetails              # doctest: +SKIP
        >>> RunDetails(run).show()                              # doctest: +SKIP

    ``polling`` says whether it still refreshes; ``stop()`` ends that early;
    ``get_widget_data()`` is what it draws, with the reference's keys.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.polling = False
        self.refreshes = 0
        self.status: str | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._histories: dict[str, tuple[int, list[int], list[float]]] = {}
        self._view: _View | None = None

    # -- data ---------------------------------------------------------------------------
    def get_widget_data(self, widget_settings: dict[str, Any] | None = None) -> dict[str, Any]:
        """What the widget shows, with the keys of ``azureml.widgets``' widget data.

        ``run_metrics`` hold each numeric series downsampled to ``CHART_WIDTH`` columns
        (its lowest and highest value in each), ``categories`` being their steps.
        """
        from ..run import format_time

        run = self.run
        details = run.get_details()
        record = run._record
        definition = record.run_definition or {}
        logs = sorted(details.get("logFiles", {}))
        summaries = run._store.list_series([run.id])
        metrics, single = [], {}
        for summary in sorted(summaries, key=lambda s: s.name.lower()):
            if summary.kind not in ("scalar", "list") or not _is_number(summary.last):
                continue
            if summary.kind == "scalar" and summary.count == 1:
                single[summary.name] = summary.last
                continue
            try:
                steps, values = self._sampled(summary.name, summary.count)
            except (TypeError, ValueError):  # some values are not numbers: no chart
                continue
            metrics.append(
                {
                    "name": summary.name,
                    "run_id": run.id,
                    "categories": steps,
                    "series": [{"data": values}],
                }
            )
        children = [
            {
                "run_id": c.id,
                "run_number": c.number,
                "status": c.status,
                "start_time": format_time(c._record.start),
                "end_time": format_time(c._record.end),
                "created_time": format_time(c._record.created),
                "duration": _duration(c._record.start, c._record.end, c.status),
            }
            for c in _first(run.get_children(), MAX_CHILDREN)
        ]
        return {
            "status": record.status,
            "workbench_run_details_uri": run.get_portal_url(),
            "run_id": run.id,
            "run_properties": {
                "run_id": run.id,
                "created_utc": format_time(record.created),
                "properties": dict(record.properties),
                "tags": dict(record.tags),
                "script_name": definition.get("script"),
                "arguments": " ".join(str(a) for a in definition.get("arguments") or []),
                "end_time_utc": format_time(record.end),
                "status": record.status,
                "log_files": {path: path for path in logs},
                "log_groups": [[path] for path in logs],
                "run_duration": _duration(record.created, record.end, record.status),
                "run_number": record.number,
                "run_queued_details": {"status": record.status, "details": None},
                "error": record.error,
            },
            "child_runs": children,
            "children_metrics": {},
            "run_metrics": metrics,
            "single_values": single,
            "run_logs": self._log_text(logs, record.status, record.error),
            "graph": {},
            "widget_settings": dict(widget_settings or {}),
        }

    def _sampled(self, name: str, count: int) -> tuple[list[int], list[float]]:
        known = self._histories.get(name)
        if known is not None and known[0] == count:
            return known[1], known[2]
        history = self.run.get_metric_history(name)
        steps, values, _ = sample(history.steps, history.values, CHART_WIDTH)
        self._histories[name] = (len(history.steps), steps, values)
        return steps, values

    def _log_text(self, logs: list[str], status: str, error: dict[str, Any] | None) -> str:
        name = LOG_NAME if LOG_NAME in logs else (logs[-1] if logs else None)
        text = _tail(self.run, name) if name else ""
        if status not in TERMINAL_STATUSES:
            return text or "Your job is submitted and we are monitoring to get logs..."
        text = text or "Log is empty or no log files found."
        if status == "Completed":
            return text + "\nRun is completed."
        if status == "Canceled":
            return text + "\nRun is canceled."
        return text + f"\nError occurred: {_error_message(error) or 'the run failed'}"

    # -- showing and refreshing ---------------------------------------------------------
    def show(self, render_lib: Any = None, widget_settings: dict[str, Any] | None = None) -> None:
        """Show the view, then refresh it until the run is finished: in the background in
        a notebook, before returning elsewhere."""
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            raise UserError(
                "RunDetails draws in Jupyter: pip install 'runyard[notebook]'"
            ) from None
        self._view = _View()
        self._settings = widget_settings
        self.refresh()
        display(self._view.box)
        if self.status in TERMINAL_STATUSES:
            return
        self.polling = True
        shell = get_ipython()
        in_kernel = shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"
        if in_kernel and os.environ.get("AMLWIDGET_SYNC") != "1":
            self._thread = threading.Thread(
                target=self._poll, name=f"RunDetails-{self.run.id}", daemon=True
            )
            self._thread.start()
        else:
            self._poll()

    def refresh(self) -> None:
        """Fetch the run's data once and draw it."""
        data = self.get_widget_data(getattr(self, "_settings", None))
        self.status = data["status"]
        self.refreshes += 1
        if self._view is not None:
            self._view.draw(data, self.last_error)

    def stop(self) -> None:
        """Stop refreshing (the view stays as it is)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def _poll(self) -> None:
        started = time.monotonic()
        same_errors, last_kind = 0, None
        try:
            while not self._stop.wait(refresh_seconds(time.monotonic() - started)):
                try:
                    self.refresh()
                    same_errors, last_kind, self.last_error = 0, None, None
                except Exception as exc:  # shown in the view; four alike in a row stop it
                    kind = type(exc)
                    same_errors = same_errors + 1 if kind is last_kind else 1
                    last_kind, self.last_error = kind, f"{kind.__name__}: {exc}"
                    if self._view is not None:
                        self._view.error(self.last_error)
                    if same_errors >= 4:
                        return
                    continue
                if self.status in TERMINAL_STATUSES:
                    return
        finally:
            self.polling = False


class _View:
    """The ipywidgets of a RunDetails view, drawn again from each refresh's data."""

    def __init__(self) -> None:
        import ipywidgets as widgets

        self.widgets = widgets
        self.header = widgets.HTML()
        self.properties = widgets.HTML()
        self.values = widgets.HTML()
        self.charts = widgets.Box(layout=widgets.Layout(flex_flow="row wrap"))
        self.log = widgets.HTML()
        self.children = widgets.HTML()
        self.problem = widgets.HTML()
        self.figures: dict[str, Any] = {}
        self.box = widgets.VBox(
            [self.header, self.problem, self.properties, self.values, self.charts,
             self.log, self.children]
        )  # fmt: skip

    def draw(self, data: dict[str, Any], error: str | None) -> None:
        props = data["run_properties"]
        status = data["status"]
        colour = _COLOURS.get(status, _RUNNING)
        url = html.escape(data["workbench_run_details_uri"], quote=True)
        self.header.value = (
            f'<div style="background:{colour};color:#fff;padding:4px 8px;border-radius:4px">'
            f"<b>Run {props['run_number']} ({html.escape(status)})</b> &nbsp; "
            f'<a style="color:#fff" href="{url}" target="_blank" rel="noopener">'
            "View run details</a></div>"
        )
        self.error(error)
        rows = [
            ("Status", status),
            ("Started", props["created_utc"]),
            ("Duration", props["run_duration"]),
            ("Run Id", data["run_id"]),
            ("Arguments", props["arguments"]),
        ]
        self.properties.value = "<b>Run Properties</b>" + _kv(rows)
        single = data["single_values"]
        self.values.value = ("<b>Metrics</b>" + _kv(sorted(single.items()))) if single else ""
        self._draw_charts(data["run_metrics"])
        self.log.value = (
            '<b>Output Logs</b><pre style="max-height:300px;overflow:auto;white-space:pre-wrap">'
            f"{html.escape(data['run_logs'])}</pre>"
        )
        children = data["child_runs"]
        self.children.value = (
            "<b>Child runs</b>"
            + _table(
                ["Run Number", "Status", "Started", "Duration", "Run Id"],
                [
                    [
                        _text(c[k])
                        for k in ("run_number", "status", "start_time", "duration", "run_id")
                    ]
                    for c in children
                ],
            )
            if children
            else ""
        )

    def error(self, error: str | None) -> None:
        self.problem.value = (
            f'<span style="color:#c53030">Refresh failed: {html.escape(error)}</span>'
            if error
            else ""
        )

    def _draw_charts(self, metrics: list[dict[str, Any]]) -> None:
        import plotly.graph_objects as go

        for metric in metrics[:MAX_CHARTS]:
            name = metric["name"]
            steps, values = metric["categories"], metric["series"][0]["data"]
            figure = self.figures.get(name)
            if figure is None:
                figure = go.FigureWidget(
                    data=[go.Scatter(x=steps, y=values, mode="lines", name=html.escape(name))],
                    layout={
                        "title": {"text": html.escape(name)}, "height": 260, "width": 420,
                        "margin": {"l": 40, "r": 10, "t": 40, "b": 30},
                    },
                )  # fmt: skip
                self.figures[name] = figure
                self.charts.children = (*self.charts.children, figure)
            elif list(figure.data[0].x) != steps or list(figure.data[0].y) != values:
                with figure.batch_update():
                    figure.data[0].x = steps
                    figure.data[0].y = values


def _kv(rows: Any) -> str:
    return _table([], [[_text(k), _text(v)] for k, v in rows])


def _error_message(error: Any) -> str | None:
    """The message of a run's error, whatever shape the error was stored in."""
    if not isinstance(error, dict):
        return None
    inner = error.get("error")
    if isinstance(inner, dict) and isinstance(inner.get("message"), str):
        return str(inner["message"])
    if isinstance(inner, str):
        return inner
    message = error.get("message")
    return message if isinstance(message, str) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _duration(start: float | None, end: float | None, status: str) -> str | None:
    """H:MM:SS from ``start`` to ``end`` (or now, for a run still going)."""
    if start is None or status == "NotResponding":
        return None
    stop = end if end is not None else (start if status in TERMINAL_STATUSES else time.time())
    total = max(0, round(stop - start))
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _first(items: Any, limit: int) -> list[Any]:
    found: list[Any] = []
    for item in items:
        if len(found) == limit:
            break
        found.append(item)
    return found


def _tail(run: Run, path: str, limit: int = LOG_TAIL) -> str:
    """The last ``limit`` bytes of the run's file ``path`` as text ('' if it is missing)."""
    from ..errors import NotFound

    artifacts = run._artifacts
    local = artifacts.local_path(run.id, path)
    try:
        if local is not None:
            with open(local, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - limit))
                data = fh.read()
        else:
            kept: deque[bytes] = deque()
            size = 0
            with artifacts.open(run.id, path) as fh:
                if fh.seekable():  # an S3 object: a ranged read of its end
                    fh.seek(max(0, fh.seek(0, os.SEEK_END) - limit))
                while block := fh.read(1 << 16):
                    kept.append(block)
                    size += len(block)
                    while size - len(kept[0]) >= limit:
                        size -= len(kept.popleft())
            data = b"".join(kept)[-limit:]
    except (FileNotFoundError, NotFound):
        return ""
    return data.decode("utf-8", errors="replace")
