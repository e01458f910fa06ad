"""The Store protocol on SQL databases: SQLite (embedded) and PostgreSQL."""

from .store import SqlStore

__all__ = ["SqlStore"]
