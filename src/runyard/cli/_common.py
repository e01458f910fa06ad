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


class Session:
    """One command's global options, its workspace, and how it ends."""

    def __init__(self, output: str, query: Any, workspace_uri: str | None, path: str) -> None:
        self.output = output
        self.query = query
        self.workspace_uri = workspace_uri
        self.path = path
        self.exit_code = 0
        self.table: Callable[[Any], list[dict[str, Any]]] | None = None
        self._workspace: Workspace | None = None

    def workspace(self) -> Workspace:
        if self._workspace is None:
            from ..workspace import Workspace

            if self.workspace_uri:
                self._workspace = Workspace(self.workspace_uri)
                try:  # the config may still name a default experiment
                    self._workspace.default_experiment = Workspace.from_config(
                        self.path
                    ).default_experiment
                except Exception:
                    pass
            else:
                self._workspace = Workspace.from_config(self.path)
        return self._workspace

    def experiment(self, name: str | None) -> Experiment:
        from ..experiment import Experiment

        workspace = self.workspace()
        name = name or workspace.default_experiment
        if not name:
            raise click.UsageError(
                "no experiment given: pass -e NAME, or set a default with runyard init -e NAME"
            )
        return Experiment(workspace, name)

    def emit(self, result: Any) -> None:
        if self.query is not None and result is not None:
            result = self.query.search(result)
        text = render(result, self.output, self.query is not None, self.table)
        if text:
            click.echo(text)


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


def command(
    group: click.Group,
    name: str,
    example: str,
    table: Callable[[Any], list[dict[str, Any]]] | None = None,
    **settings: Any,
) -> Callable[[Callable[..., Any]], click.Command]:
    """Register a command that takes the global options and renders what it returns.

    ``table`` picks the columns of ``-o table`` when no ``--query`` reshapes the result.
    """

    def decorate(func: Callable[..., Any]) -> click.Command:
        @click.option(
            "-o", "--output", type=click.Choice(FORMATS), default="json", show_default=True,
            help="Output format.",
        )  # fmt: skip
        @click.option(
            "--query", callback=_compile_query, metavar="JMESPATH",
            help="JMESPath query applied to the result before formatting.",
        )  # fmt: skip
        @click.option(
            "--workspace", "workspace_uri", metavar="URI",
            help="Workspace to use instead of the one in .runyard/config.json.",
        )  # fmt: skip
        @click.option("--debug", is_flag=True, help="Show the full traceback of errors.")
        @functools.wraps(func)
        def run(
            output: str, query: Any, workspace_uri: str | None, debug: bool, **kwargs: Any
        ) -> None:
            session = Session(output, query, workspace_uri, kwargs.pop("path", None) or ".")
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
        "--path", type=click.Path(file_okay=False), default=".", show_default=True,
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
