"""A fresh PostgreSQL schema for one benchmark run, dropped afterwards."""

from __future__ import annotations

import sys
import uuid


def new_schema(pg: str, prefix: str) -> tuple[str, str] | None:
    """(URI whose search_path is a new schema, the schema's name); None, said on stderr,
    when PostgreSQL does not answer."""
    try:
        import psycopg

        schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(pg, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except Exception as exc:
        print(f"PostgreSQL ({prefix}) skipped: {exc}", file=sys.stderr)
        return None
    sep = "&" if "?" in pg else "?"
    return f"{pg}{sep}options=-csearch_path%3D{schema}", schema


def drop_schema(pg: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
