"""Creating the folders a workspace needs, with one clear error when it cannot."""

from __future__ import annotations

import os

from .errors import UserError


def make_folder(path: str, what: str) -> None:
    """``os.makedirs`` with one clear error (a file in the way, no permission, full disk)."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        blocker = path
        while blocker and not os.path.exists(blocker):
            blocker = os.path.dirname(blocker)
        reason = (
            f"{blocker} is a file, not a folder"
            if blocker and os.path.isfile(blocker)
            else exc.strerror or str(exc)
        )
        raise UserError(f"cannot create the {what} folder {path}: {reason}") from None
