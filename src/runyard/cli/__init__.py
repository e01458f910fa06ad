"""The ``runyard`` command line: a thin skin over the SDK (parse, call, render).

Shell completion, for bash: ``eval "$(_RUNYARD_COMPLETE=bash_source runyard)"``
(``zsh_source`` and ``fish_source`` for the other shells).
"""

from __future__ import annotations

import sys
import traceback
import warnings
from typing import Any

import click

from ..__about__ import __version__
from ._common import global_options, state


@click.group(
    context_settings={
        "help_option_names": ["-h", "--help"],
        "max_content_width": 100,
        "terminal_width": 100,  # help reads the same everywhere, and docs/cli.md can match it
    },
    epilog="Example: runyard run list -e ridge-sweep -o table",
)
@click.version_option(__version__, "--version", prog_name="runyard", message="%(prog)s %(version)s")
@global_options
def cli(**_: Any) -> None:
    """runyard: a self-hosted run history for machine learning.

    The options below may also be given after the command; there they win.
    """


def _build() -> click.Group:
    from . import compute, experiment, init, login, run, serve, sync, token

    cli.add_command(run.group)
    cli.add_command(experiment.group)
    cli.add_command(token.group)
    cli.add_command(compute.group)
    init.register(cli)
    login.register(cli)
    serve.register(cli)
    sync.register(cli)
    return cli


def main(argv: list[str] | None = None) -> int:
    """Run the command line; errors are one ``error:`` line, exit 2 for usage, 1 otherwise."""
    args = sys.argv[1:] if argv is None else argv
    state.debug = False  # set by the command once its options are parsed
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return _main(args)


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int,
    file: Any = None, line: str | None = None,
) -> None:  # fmt: skip
    """A warning is one line, never a source path and a line of code (unless --debug)."""
    if state.debug:
        text = warnings.formatwarning(message, category, filename, lineno, line)
        click.echo(text, err=True, nl=False)
    else:
        click.echo(f"warning: {_one_line(str(message))}", err=True)


def _main(args: list[str]) -> int:
    try:
        # without standalone mode click returns the code of a click Exit instead of raising it
        code = _build().main(args=args, prog_name="runyard", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:
            click.echo(exc.ctx.get_help())  # a group given no command shows its help
            return 0
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"error: {_one_line(exc.format_message())}{hint}", err=True)
        return 2
    except click.Abort:
        click.echo("error: aborted", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        return 130
    except Exception as exc:
        from ..errors import RunyardError

        if state.debug:
            traceback.print_exc()
        if isinstance(exc, RunyardError):
            message = str(exc)
        elif isinstance(exc, OSError) and exc.strerror:
            where = f": {exc.filename}" if exc.filename else ""
            message = f"{exc.strerror}{where}"
        else:
            message = f"{type(exc).__name__}: {exc}"
        click.echo(f"error: {_one_line(message)}", err=True)
        return 1
    return code if isinstance(code, int) else 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
