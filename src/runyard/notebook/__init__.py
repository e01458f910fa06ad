"""How runs look in a notebook: ``Run``, ``Experiment`` and lists of runs as compact HTML
tables, each with a link to its page in the studio. The live view is
``runyard.widgets.RunDetails``.

``Run`` and ``Experiment`` have ``_repr_html_``. A list of runs (``list(exp.get_runs())``)
is drawn by an HTML formatter for lists that IPython asks first: it answers for lists of
runs only, and is registered when runyard is imported in a running IPython kernel.
"""

from __future__ import annotations

import html
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..experiment import Experiment
    from ..run import Run

SHOWN_RUNS = 20  # a listing shows this many runs, then says there are more
_STYLE = "text-align:left"


def _table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table of ``header`` (text) and ``rows`` (HTML, escaped by the caller)."""
    head = "".join(f'<th style="{_STYLE}">{html.escape(h)}</th>' for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_STYLE}">{cell}</td>' for cell in row) + "</tr>"
        for row in rows
    )
    head = f"<thead><tr>{head}</tr></thead>" if header else ""
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _link(url: str, text: str) -> str:
    return (
        f'<a href="{html.escape(url, quote=True)}" target="_blank" rel="noopener">'
        f"{html.escape(text)}</a>"
    )


def _text(value: Any) -> str:
    return "" if value is None else html.escape(str(value))


def run_html(run: Run) -> str:
    """One run: experiment, id, type, status and a link to its page in the studio."""
    return _table(
        ["Experiment", "Id", "Type", "Status", "Details Page"],
        [_run_cells(run)],
    )


def _run_cells(run: Run) -> list[str]:
    return [
        _text(run.experiment.name),
        _text(run.id),
        _text(run.type),
        _text(run.status),
        _link(run.get_portal_url(), "Link to the studio"),
    ]


def experiment_html(experiment: Experiment) -> str:
    return _table(
        ["Name", "Workspace", "Report Page"],
        [
            [
                _text(experiment.name),
                _text(experiment.workspace.name),
                _link(experiment.get_portal_url(), "Link to the studio"),
            ]
        ],
    )


def runs_html(runs: list[Run], total: int) -> str:
    """A list of runs; ``total`` runs in all, of which these are the first."""
    if not runs:
        return "<p>No runs.</p>"
    rows = [
        [_text(r.number), _text(r.display_name), *_run_cells(r)[1:]] for r in runs
    ]  # fmt: skip
    table = _table(["#", "Display name", "Id", "Type", "Status", "Details Page"], rows)
    if total > len(runs):
        table += f"<p>The first {len(runs)} of {total} runs.</p>"
    return table


def _list_html(value: list[Any]) -> str | None:
    from ..run import Run

    if not value or not all(isinstance(item, Run) for item in value):
        return None  # IPython draws every other list as it always does
    return runs_html(value[:SHOWN_RUNS], len(value))


def register_list_html() -> None:
    """Draw lists of runs as tables in the running IPython kernel (if there is one)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    shell.display_formatter.formatters["text/html"].for_type(list, _list_html)
