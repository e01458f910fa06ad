"""Words for the person at the terminal, never for the captured streams of a run."""

from __future__ import annotations

import sys


def say(text: str) -> None:
    """Write ``text`` to the real stderr (the captured streams feed the run's log); a
    closed or broken stderr is not an error."""
    stream = sys.__stderr__
    if stream is not None:
        try:
            print(text, file=stream, flush=True)
        except (OSError, ValueError):
            pass
