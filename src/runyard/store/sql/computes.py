"""Compute targets attached to a workspace (table ``compute_targets``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..._validation import check_compute
from ...errors import Conflict, NotFound
from ...records import ComputeRecord

if TYPE_CHECKING:
    from .database import Database, SqlCursor

_COLUMNS = "name, type, address, created_at, created_by"


def _record(row: Any) -> ComputeRecord:
    return ComputeRecord(row[0], row[1], row[2], float(row[3]), row[4])


class ComputesMixin:
    """The compute-target methods of :class:`~runyard.store.sql.SqlStore`.

    >>> store.attach_compute("gpu-ray", "ray", "http://head:8265")  # doctest: +SKIP
    ComputeRecord(name='gpu-ray', type='ray', address='http://head:8265', ...)
    """

    db: Database

    def attach_compute(
        self, name: str, type: str, address: str, created_by: str | None = None
    ) -> ComputeRecord:
        """Record a new compute target; a name in use is a Conflict."""
        name, type, address = check_compute(name, type, address)

        def body(cur: SqlCursor) -> None:
            if cur.execute("SELECT 1 FROM compute_targets WHERE name = ?", (name,)):
                raise Conflict(
                    f"a compute target named {name!r} is attached already; detach it first "
                    "or pick another name"
                )
            cur.execute(
                f"INSERT INTO compute_targets ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                (name, type, address, time.time(), created_by),
            )

        self.db.write(body)
        return self.get_compute(name)

    def get_compute(self, name: str) -> ComputeRecord:
        rows = self.db.read(f"SELECT {_COLUMNS} FROM compute_targets WHERE name = ?", (name,))
        if not rows:
            raise NotFound(
                f"no compute target named {name!r} is attached to this workspace; "
                "see `runyard compute list`"
            )
        return _record(rows[0])

    def list_computes(self) -> list[ComputeRecord]:
        return [
            _record(r)
            for r in self.db.read(f"SELECT {_COLUMNS} FROM compute_targets ORDER BY name")
        ]

    def detach_compute(self, name: str) -> None:
        def body(cur: SqlCursor) -> int:
            return len(
                cur.execute("DELETE FROM compute_targets WHERE name = ? RETURNING name", (name,))
            )

        if not self.db.write(body):
            raise NotFound(f"no compute target named {name!r} is attached to this workspace")
