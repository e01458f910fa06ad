"""What every command shares: the global options, the workspace, rendering, key=value."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ._output import FORMATS, render

if TYPE_CHECKING:
    from ..experiment import Experiment
    from ..workspace import Workspace


POSTGRES = ("postgresql://", "postgres://")


class _State:
    """What main() needs to know once the options are parsed."""

    debug = False


state = _State()


class Session:
    """One command's global options, its workspace, and how it ends."""

    def __init__(
        self,
        output: str,
        query: Any,
        workspace_uri: str | None,
        path: str,
        artifacts: str | None = None,
    ) -> None:
        self.output = output
        self.query = query
        self.workspace_uri = workspace_uri
        self.artifacts = artifacts
        self.path = path
        self.exit_code = 0
        self.table: Callable[[Any], list[dict[str, Any]]] | None = None
        self._workspace: Workspace | None = None

    def workspace(self, create: bool = False) -> Workspace:
        """The workspace of the command; only ``init`` may create one (``create=True``)."""
        if self._workspace is None:
            from ..workspace import Workspace, _find_config

            if self.workspace_uri is not None:
                if self.artifacts is None and self.workspace_uri.startswith(POSTGRES):
                    raise click.UsageError(
                        "a postgresql:// workspace keeps its files in a folder every user can "
                        "reach: add --artifacts DIR (or set RUNYARD_ARTIFACTS)"
                    )
                self._workspace = Workspace(self.workspace_uri, self.artifacts, _create=create)
                _, config = _find_config(self.path, required=False)
                experiment = config.get("experiment")  # the config may name a default
                self._workspace.default_experiment = (
                    experiment if isinstance(experiment, str) else None
                )
            else:
                self._workspace = Workspace.from_config(
                    self.path, _create=create, _artifacts=self.artifacts
                )
        return self._workspace

    def experiment(self, name: str | None, create: bool = False) -> Experiment:
        """The experiment ``-e`` names (or the config's); only writing commands create it."""
        from ..experiment import Experiment

        workspace = self.workspace()
        name = name or workspace.default_experiment
        if not name:
            raise click.UsageError(
                "no experiment given: pass -e NAME, or set a default with runyard init -e NAME"
            )
        return Experiment(workspace, name, _create_in_cloud=create)

    def emit(self, result: Any) -> None:
        if self.query is not None and result is not None:
            result = _search(self.query, result)
        text = render(result, self.output, self.query is not None, self.table)
        if text:
            click.echo(text)


def _search(query: Any, result: Any) -> Any:
    """Apply ``--query``; a query that does not fit the result is a usage error, told short
    (JMESPath's own message quotes the whole value it choked on)."""
    from jmespath.exceptions import JMESPathError, JMESPathTypeError

    try:
        return query.search(result)
    except JMESPathTypeError as exc:
        expected = " or ".join(exc.expected_types)
        raise click.UsageError(
            f"--query {query.expression!r} does not fit this result: {exc.function_name}() "
            f"takes {expected}, not {exc.actual_type}"
        ) from None
    except JMESPathError as exc:
        detail = " ".join(str(exc).split())
        if len(detail) > 200:
            detail = detail[:200] + "…"
        raise click.UsageError(f"--query {query.expression!r} failed: {detail}") from None


def _compile_query(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        return jmespath.compile(value)
    except JMESPathError as exc:
        detail = " ".join(str(exc).split())
        raise click.BadParameter(f"not a valid JMESPath expression: {detail}") from None


def global_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command takes, also accepted before the command group."""
    for option in reversed(
        [
            click.option(
                "-o", "--output", type=click.Choice(FORMATS), default=None,
                help="Output format (default: json).",
            ),
            click.option(
                "--query", callback=_compile_query, metavar="JMESPATH",
                help="JMESPath query applied to the result before formatting.",
            ),
            click.option(
                "--workspace", "workspace_uri", metavar="URI",
                help="Workspace to use instead of the one in .runyard/config.json.",
            ),
            click.option(
                "--artifacts", metavar="DIR|S3URL", envvar="RUNYARD_ARTIFACTS",
                help="Artifact folder of the workspace, or s3://BUCKET/PREFIX (needed for "
                "postgresql://; env RUNYARD_ARTIFACTS).",
            ),
            click.option("--debug", is_flag=True, help="Show the full traceback of errors."),
        ]
    ):  # fmt: skip
        func = option(func)
    return func


def command(
    group: click.Group,
    name: str,
    example: str,
    table: Callable[[Any], list[dict[str, Any]]] | None = None,
    **settings: Any,
) -> Callable[[Callable[..., Any]], click.Command]:
    """Register a command that takes the global options and renders what it returns.

    ``table`` picks the columns of ``-o table`` when no ``--query`` reshapes the result.
    A global option given after the command wins over the same one given before it.
    """

    def decorate(func: Callable[..., Any]) -> click.Command:
        @global_options
        @functools.wraps(func)
        def run(
            output: str | None,
            query: Any,
            workspace_uri: str | None,
            artifacts: str | None,
            debug: bool,
            **kwargs: Any,
        ) -> None:
            ctx = click.get_current_context()
            root = ctx.find_root()
            top = root.params
            state.debug = bool(debug or top.get("debug"))
            from_env = click.core.ParameterSource.ENVIRONMENT
            if ctx.get_parameter_source("artifacts") == from_env:
                artifacts = None  # --artifacts before the command beats the environment
            artifacts = artifacts if artifacts is not None else top.get("artifacts")
            session = Session(
                output or top.get("output") or "json",
                query if query is not None else top.get("query"),
                workspace_uri if workspace_uri is not None else top.get("workspace_uri"),
                kwargs.pop("path", None) or ".",
                artifacts,
            )
            session.table = table
            session.emit(func(session, **kwargs))
            if session.exit_code:
                raise click.exceptions.Exit(session.exit_code)

        doc = inspect.cleandoc(func.__doc__ or "")
        run.__doc__ = f"{doc}\n\n\b\nExample:\n  {example}"
        return group.command(name, **settings)(run)

    return decorate


def path_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--path", type=click.Path(file_okay=False, exists=True), default=".", show_default=True,
        help="Project folder whose .runyard/config.json names the workspace.",
    )(func)  # fmt: skip


def key_values(pairs: tuple[str, ...], option: str) -> dict[str, str]:
    """``("k=v", "a=b=c")`` → ``{"k": "v", "a": "b=c"}``; a pair without ``=`` is an error."""
    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint=option)
        parsed[key] = value
    return parsed


def here(path: str) -> str:
    return os.path.abspath(path)
