"""RunFailure: why a supervised run cannot go on."""

from __future__ import annotations


class RunFailure(Exception):
    """The run cannot go on; ``code`` and the message become its error."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code
