"""``runyard run …``: submit, list, show, cancel, update, logs, files and metrics of runs."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import click

from ._common import Session, command, key_values, path_option
from ._output import duration, local_time, status

if TYPE_CHECKING:
    from ..run import Run

STATUSES = (
    "NotStarted", "Queued", "Preparing", "Starting", "Running", "Finalizing", "CancelRequested",
    "Completed", "Failed", "Canceled", "NotResponding",
)  # fmt: skip


@click.group("run", epilog="Example: runyard run list -o table --last 5")
def group() -> None:
    """Submit, list, inspect and stop runs."""


def run_option(func: Any) -> Any:
    return click.option("-r", "--run", "run_id", required=True, metavar="ID", help="Run id.")(func)


def experiment_option(func: Any) -> Any:
    return click.option(
        "-e", "--experiment-name", "experiment", metavar="NAME",
        help="Experiment (default: the one in .runyard/config.json).",
    )(func)  # fmt: skip


def as_dict(run: Run) -> dict[str, Any]:
    data = run.to_dict()
    data["_experiment_name"] = run.experiment.name
    return data


def run_rows(result: Any) -> list[dict[str, Any]]:
    items = result if isinstance(result, list) else [result]
    return [
        {
            "#": r.get("run_number", ""),
            "Run id": r.get("run_id", r.get("RunId", "")),
            "Status": status(r.get("status", r.get("Status", ""))),
            "Started": local_time(r.get("start_time_utc", r.get("StartTime"))),
            "Duration": duration(
                r.get("start_time_utc", r.get("StartTime")), r.get("end_time_utc", r.get("EndTime"))
            ),
            "Display name": r.get("display_name") or "",
            "Type": r.get("run_type", r.get("RunType")) or "",
            **({"Studio": r["portal_url"]} if "portal_url" in r else {}),
        }
        for r in items
    ]


def _get(session: Session, run_id: str) -> Run:
    return session.workspace().get_run(run_id)


@command(
    group, "submit-script", "runyard run submit-script -e ridge train.py --alpha 0.5",
    table=run_rows,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)  # fmt: skip
@click.argument("script", required=False)
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
@experiment_option
@click.option(
    "-c",
    "--run-configuration-name",
    "config_name",
    metavar="NAME",
    help="A run configuration saved in the project (.runyard/NAME.runconfig).",
)
@click.option(
    "--source-directory",
    type=click.Path(file_okay=False, exists=True),
    help="Folder to snapshot and run in (default: the project folder).",
)
@click.option("--async", "no_wait", is_flag=True, help="Return at once instead of streaming.")
@click.option(
    "-r",
    "--requirements",
    type=click.Path(dir_okay=False, exists=True),
    help="A pip requirements file: the script runs in a virtualenv built from it.",
)
@click.option(
    "--target",
    "--ct",
    "target",
    metavar="NAME",
    help="Compute target: local, or one attached with runyard compute attach "
    "(default: the run configuration's, else local).",
)
@path_option
def submit_script(
    session: Session, script: str | None, arguments: tuple[str, ...], experiment: str | None,
    config_name: str | None, source_directory: str | None, no_wait: bool,
    requirements: str | None, target: str | None,
) -> dict[str, Any]:  # fmt: skip
    """Submit a script as a run; everything after SCRIPT is passed to it.

    Without --async the output of the script is streamed until the run ends, and the
    exit code is 0 only when the run Completed.
    """
    from ..execution import Environment, RunConfiguration, ScriptRunConfig

    exp = session.experiment(experiment, create=True)
    project = session.workspace().project_path or os.path.abspath(session.path)
    rc = RunConfiguration.load(project, config_name) if config_name else RunConfiguration()
    if script is not None:
        rc.script = script
        rc.arguments = list(arguments)
        rc.command = None
    elif arguments:
        raise click.UsageError("arguments given without a script")
    if not rc.script and rc.command is None:
        raise click.UsageError(
            "Please specify the script to run either via parameter or in the runconfig"
        )
    if target:
        rc.target = target
    if requirements:
        rc.environment = Environment.from_pip_requirements("requirements", requirements)
    config = ScriptRunConfig(source_directory or project, run_config=rc)
    run = exp.submit(config)
    if not no_wait:
        run.wait_for_completion(show_output=True, wait_post_processing=True, raise_on_error=False)
        session.exit_code = 0 if run.get_status() == "Completed" else 1
    return as_dict(run)


@command(
    group, "list", "runyard run list -e ridge --last 5 --status Completed -o table", table=run_rows
)
@experiment_option
@click.option(
    "--last",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="How many runs, newest first.",
)
@click.option("--status", type=click.Choice(STATUSES), help="Only runs with this status.")
@click.option(
    "--tags",
    "tags",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only runs with this tag (repeat: all must match).",
)
@click.option(
    "--filter",
    "filter_text",
    metavar="TEXT",
    help="Only runs matching this filter, as in the studio: "
    '"tags.team = vision and metrics.acc > 0.9" (see docs/studio.md).',
)
@click.option("--parent-run-id", metavar="ID", help="List this run's children instead.")
@click.option("--minimal", is_flag=True, help="Only RunId, RunType, Status, times, Target, Tags.")
@path_option
def list_runs(
    session: Session, experiment: str | None, last: int, status: str | None,
    tags: tuple[str, ...], filter_text: str | None, parent_run_id: str | None, minimal: bool,
) -> list[dict[str, Any]]:  # fmt: skip
    """List top-level runs of an experiment, newest first."""
    import itertools

    wanted = key_values(tags, "--tags")
    if parent_run_id:
        parent = _get(session, parent_run_id)
        runs = parent.get_children(tags=wanted or None, status=status, filter=filter_text)
    else:
        runs = session.experiment(experiment).get_runs(
            tags=wanted or None, status=status, filter=filter_text
        )
    found = [as_dict(run) for run in itertools.islice(runs, last + 1)]
    if len(found) > last:
        found = found[:last]
        click.echo(f"note: showing the newest {last} runs; there are more (use --last N)", err=True)
    if minimal:
        return [
            {
                "RunId": r["run_id"], "RunType": r.get("run_type"), "Status": r["status"],
                "StartTime": r.get("start_time_utc"), "EndTime": r.get("end_time_utc"),
                "Target": r.get("target"), "Tags": r.get("tags", {}),
            }
            for r in found
        ]  # fmt: skip
    return found


@command(group, "show", "runyard run show -r ridge_1795699464_79ae27c6 -o yaml", table=run_rows)
@run_option
@path_option
def show(session: Session, run_id: str) -> dict[str, Any]:
    """Show one run, with the URL of its page in the studio (portal_url)."""
    run = _get(session, run_id)
    return {**as_dict(run), "portal_url": run.get_portal_url()}


@command(group, "cancel", "runyard run cancel -r ridge_1795699464_79ae27c6")
@run_option
@path_option
def cancel(session: Session, run_id: str) -> None:
    """Cancel a run: a script run's processes are stopped, then it is Canceled.

    A run that has already finished (Completed, Failed, Canceled) is an error.
    """
    import warnings

    from ..errors import UserError
    from ..records import TERMINAL_STATUSES

    run = _get(session, run_id)
    before = run.get_status()
    if before in TERMINAL_STATUSES:
        raise UserError(f"run {run_id} is already {before}; a finished run cannot be canceled")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # judged by the status below
        run.cancel()
    after = run.get_status()
    if after == "Canceled":
        click.echo("Experiment run canceled successfully.", err=True)
    elif after == "CancelRequested":
        click.echo(
            "Cancel requested: the run's processes are being stopped; it becomes Canceled "
            "when they have ended.",
            err=True,
        )
    else:
        raise UserError(f"run {run_id} became {after} before it could be canceled")


@command(
    group,
    "update",
    "runyard run update -r ID --add-tag quality=good --remove-tag draft",
    table=run_rows,
)
@run_option
@click.option(
    "--add-tag",
    "add",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a tag (repeatable); the value may contain '='.",
)
@click.option(
    "--remove-tag", "remove", multiple=True, metavar="KEY", help="Remove a tag (repeatable)."
)
@path_option
def update(
    session: Session, run_id: str, add: tuple[str, ...], remove: tuple[str, ...]
) -> dict[str, Any]:
    """Add, change or remove tags of a run."""
    tags = key_values(add, "--add-tag")
    if not tags and not remove:
        raise click.UsageError("nothing to update: give --add-tag KEY=VALUE or --remove-tag KEY")
    run = _get(session, run_id)
    if tags:
        run.set_tags(tags)
    if remove:
        run.remove_tags(list(remove))
    return as_dict(run)


@command(group, "download-logs", "runyard run download-logs -r ID -d ./logs-of-the-run")
@run_option
@click.option(
    "-d",
    "--output-dir",
    required=True,
    type=click.Path(dir_okay=True, file_okay=False),
    help="Folder to write the logs into (kept paths).",
)
@path_option
def download_logs(session: Session, run_id: str, output_dir: str) -> None:
    """Write every log file of a run into a folder."""
    for path in _get(session, run_id).get_all_logs(output_dir):
        click.echo(path, err=True)


@command(group, "monitor-logs", "runyard run monitor-logs -r ID", table=run_rows)
@run_option
@path_option
def monitor_logs(session: Session, run_id: str) -> dict[str, Any]:
    """Stream a run's output until it ends, then show the run."""
    run = _get(session, run_id)
    run.wait_for_completion(show_output=True, wait_post_processing=True, raise_on_error=False)
    return as_dict(run)


@command(group, "download", "runyard run download -r ID --prefix outputs -d ./model")
@run_option
@click.option("--prefix", metavar="FOLDER", help="Only files under this folder, e.g. outputs.")
@click.option(
    "-d",
    "--output-dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder to write the files into (kept paths).",
)
@path_option
def download(session: Session, run_id: str, prefix: str | None, output_dir: str) -> list[str]:
    """Download a run's files."""
    run = _get(session, run_id)
    folder = (prefix or "").strip("/")
    names = [n for n in run.get_file_names() if not folder or n.startswith(folder + "/")]
    written = []
    with click.progressbar(
        names, label="downloading", file=sys.stderr, show_pos=True,
        hidden=not sys.stderr.isatty(),
    ) as bar:  # fmt: skip
        for name in bar:
            target = os.path.join(os.path.abspath(output_dir), *name.split("/"))
            if os.path.isdir(target):
                from ..errors import UserError

                raise UserError(f"cannot write {name} to {target}: a folder is in the way")
            run.download_file(name, target)
            written.append(target)
    return written


def metric_rows(result: Any) -> list[dict[str, Any]]:
    rows = []
    for name, value in sorted(result.items()):
        if isinstance(value, list):
            shown = f"{len(value)} values, last {value[-1]!r}" if value else "no values"
        elif isinstance(value, dict):
            shown = "table: " + ", ".join(value)
        else:
            shown = value
        rows.append({"Metric": name, "Value": shown})
    return rows


@command(group, "metrics", "runyard run metrics -r ID --name mse -o table", table=metric_rows)
@run_option
@click.option("--name", metavar="NAME", help="Only this metric.")
@path_option
def metrics(session: Session, run_id: str, name: str | None) -> dict[str, Any]:
    """Show a run's metrics: one value, a list, or a table's columns."""
    return _get(session, run_id).get_metrics(name=name)
