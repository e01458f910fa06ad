"""The ``runyard`` command line (only ``--version`` so far)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from ..__about__ import __version__

    parser = argparse.ArgumentParser(
        prog="runyard",
        description="runyard: a self-hosted run history for machine learning.",
        epilog="example: runyard --version",
    )
    parser.add_argument("--version", action="version", version=f"runyard {__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
