"""Access tokens of a runyard server, kept in the workspace database (stored hashed).

A token is a random secret shown once; the database keeps only its SHA-256 digest, so a
copy of the database gives no usable token. ``find_token`` looks a token up by digest
(an index lookup on the hash of a 256-bit secret leaks nothing an attacker can use) and
compares the stored digest in constant time as well.

    >>> store.create_token("ci-bot", "contributor", expires=time.time() + 86400)  # doctest: +SKIP
    (TokenRecord(name='ci-bot', role='contributor', ...), 'ry_...')
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..._validation import check_text
from ...errors import Conflict, NotFound, UserError
from .database import clock_sql

if TYPE_CHECKING:
    from .database import Database, SqlCursor

ROLES = ("reader", "contributor", "admin")
SECRET_PREFIX = "ry_"
RUN_TOKEN_PREFIX = "run:"
RUN_TOKEN_SECONDS = 30 * 86400.0
MAX_TOKEN_NAME = 100
MAX_SECRET = 200  # a longer "secret" is not one of ours: no lookup at all
TOUCH_INTERVAL = 60.0  # last_used is written at most this often per token
TOKEN_NAME = re.compile(r"^[A-Za-z0-9][\w.@:+\-]*$")
_COLUMNS = "name, role, scope_run_id, created_by, created_at, expires_at, revoked_at, last_used_at"


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A server token as stored, without its secret or digest.

    ``expires``, ``revoked`` and ``last_used`` are Unix times (None: never, not, not yet);
    ``scope_run_id`` limits a run's token to that run and its descendants.

        >>> record.state()  # doctest: +SKIP
        'active'
    """

    name: str
    role: str
    scope_run_id: str | None
    created_by: str | None
    created: float
    expires: float | None
    revoked: float | None
    last_used: float | None

    def state(self, now: float | None = None) -> str:
        """``"active"``, ``"revoked"`` or ``"expired"``."""
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and self.expires <= (time.time() if now is None else now):
            return "expired"
        return "active"


def digest_of(secret: str) -> str:
    """The SHA-256 hex digest stored for ``secret``."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def check_token_name(name: object) -> str:
    """Return ``name`` if it can name a token, else raise UserError."""
    check_text(name, "token name", MAX_TOKEN_NAME)
    assert isinstance(name, str)
    if not TOKEN_NAME.match(name):
        raise UserError(
            f"token name {name!r} is not usable: use 1-{MAX_TOKEN_NAME} letters, digits and "
            "_ . @ : + -, starting with a letter or digit (for example ci-bot or alice@laptop)"
        )
    if name.startswith(RUN_TOKEN_PREFIX):
        raise UserError(
            f"token name {name!r} starts with {RUN_TOKEN_PREFIX!r}, which is kept for the "
            "tokens runyard gives to script runs; pick another name"
        )
    return name


def check_role(role: object) -> str:
    if role not in ROLES:
        raise UserError(f"token role {role!r} is not one of {', '.join(ROLES)}")
    assert isinstance(role, str)
    return role


def _record(row: Any) -> TokenRecord:
    return TokenRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7])


class TokensMixin:
    """The token methods of :class:`~runyard.store.sql.SqlStore` (table ``tokens``).

    >>> record, secret = store.create_token("alice", "reader")  # doctest: +SKIP
    >>> store.find_token(secret).name                         # doctest: +SKIP
    'alice'
    """

    db: Database

    def create_token(
        self,
        name: str,
        role: str,
        *,
        expires: float | None = None,
        scope_run_id: str | None = None,
        created_by: str | None = None,
    ) -> tuple[TokenRecord, str]:
        """A new token; returns its record and its secret (stored only as a digest).

        ``expires`` is a Unix time (None: never). A name held by an active token is a
        Conflict; the name of a revoked or expired token is taken over (its row replaced).
        """
        check_token_name(name)
        return self._insert_token(name, role, expires, scope_run_id, created_by)

    def create_run_token(self, run_id: str, created_by: str | None) -> str:
        """The secret of a new contributor token scoped to run ``run_id`` and its
        descendants, valid 30 days (the server also ends it an hour after the run ends).

        Each call makes a new token (``run:<run_id>:<random>``), so one may be minted again.
        """
        name = f"{RUN_TOKEN_PREFIX}{run_id}:{secrets.token_hex(4)}"
        _, secret = self._insert_token(
            name, "contributor", None, run_id, created_by, lifetime=RUN_TOKEN_SECONDS
        )
        return secret

    def _insert_token(
        self,
        name: str,
        role: str,
        expires: float | None,
        scope_run_id: str | None,
        created_by: str | None,
        lifetime: float | None = None,
    ) -> tuple[TokenRecord, str]:
        """Insert a token; its times are the database's clock (``lifetime``: expires that
        many seconds from now by that clock)."""
        check_role(role)
        if expires is not None:
            if not isinstance(expires, int | float) or not math.isfinite(expires):
                raise UserError(f"token expiry must be a Unix time, not {expires!r}")
            expires = float(expires)
        if created_by is not None:
            check_text(created_by, "token creator")
        if scope_run_id is not None:
            check_text(scope_run_id, "token scope run id")
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        digest = digest_of(secret)

        def body(cur: SqlCursor) -> tuple[float, float | None]:
            # the database's clock, the one every server decides expiry by
            now = float(cur.execute(f"SELECT {clock_sql(cur.dialect)}")[0][0])
            until = now + lifetime if lifetime is not None else expires
            if until is not None and until <= now:
                raise UserError("token expiry is in the past; give a time in the future")
            # a revoked or expired token's name may be used again
            cur.execute(
                "DELETE FROM tokens WHERE name = ? AND (revoked_at IS NOT NULL OR "
                "(expires_at IS NOT NULL AND expires_at <= ?))",
                (name, now),
            )
            # ON CONFLICT: the loser of two concurrent creations waits for the winner's
            # COMMIT, then inserts nothing (instead of failing the transaction)
            cur.execute(
                "INSERT INTO tokens (name, digest, role, scope_run_id, created_by, created_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (name, digest, role, scope_run_id, created_by, now, until),
            )
            stored = cur.execute("SELECT digest FROM tokens WHERE name = ?", (name,))
            if not stored or stored[0][0] != digest:
                raise Conflict(
                    f"a token named {name!r} exists already; revoke it first "
                    f"(runyard token revoke {name}) or pick another name"
                )
            return now, until

        now, until = self.db.write(body)
        record = TokenRecord(name, role, scope_run_id, created_by, now, until, None, None)
        return record, secret

    def list_tokens(self) -> list[TokenRecord]:
        """Every token (active, expired and revoked), oldest first; never a secret."""
        rows = self.db.read(f"SELECT {_COLUMNS} FROM tokens ORDER BY created_at, name")
        return [_record(r) for r in rows]

    def get_token(self, name: str) -> TokenRecord:
        rows = self.db.read(f"SELECT {_COLUMNS} FROM tokens WHERE name = ?", (name,))
        if not rows:
            raise NotFound(f"no token named {name!r}; see runyard token list")
        return _record(rows[0])

    def revoke_token(self, name: str) -> TokenRecord:
        """Revoke the token ``name`` (and the run tokens minted with it); return its record.

        Revoking a revoked token changes nothing. The next request with it is refused.
        """
        check_text(name, "token name")

        def body(cur: SqlCursor) -> bool:
            clock = clock_sql(cur.dialect)
            found = cur.execute(f"SELECT {clock} FROM tokens WHERE name = ?", (name,))
            if not found:
                return False
            now = found[0][0]  # the database's clock: one time for the whole tree
            cur.execute(
                "UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                (now, name),
            )
            # a run token minted with a revoked token goes with it (and so on down)
            creators = [name]
            for _ in range(100):
                if not creators:
                    break
                minted = cur.execute(
                    "SELECT name FROM tokens WHERE scope_run_id IS NOT NULL AND revoked_at IS "
                    f"NULL AND created_by IN ({', '.join('?' * len(creators))})",
                    creators,
                )
                creators = [r[0] for r in minted]
                for token in creators:
                    cur.execute("UPDATE tokens SET revoked_at = ? WHERE name = ?", (now, token))
            return True

        if not self.db.write(body):
            raise NotFound(f"no token named {name!r}; see runyard token list")
        return self.get_token(name)

    def find_token(self, secret: str) -> TokenRecord | None:
        """The token whose secret is ``secret`` (whatever its state), or None."""
        found = self.find_token_now(secret)
        return None if found is None else found[0]

    def find_token_now(self, secret: str) -> tuple[TokenRecord, float] | None:
        """The token whose secret is ``secret`` and the database's clock when it was read
        (Unix seconds), or None. A server decides by that clock whether the token expired,
        so every server of one database decides alike, whatever its own clock says.

            >>> record, now = store.find_token_now(secret)  # doctest: +SKIP
            >>> record.state(now)                          # doctest: +SKIP
            'active'
        """
        if not isinstance(secret, str) or not secret or len(secret) > MAX_SECRET:
            return None
        digest = digest_of(secret)
        rows = self.db.read(
            f"SELECT {_COLUMNS}, digest, {clock_sql(self.db.dialect)} FROM tokens WHERE digest = ?",
            (digest,),
        )
        if not rows or not hmac.compare_digest(str(rows[0][8]), digest):
            return None
        return _record(rows[0]), float(rows[0][9])

    def database_now(self) -> float:
        """The database's clock in Unix seconds: the time token expiry is decided by.

        >>> expires = store.database_now() + 86400  # doctest: +SKIP
        """
        return float(self.db.read(f"SELECT {clock_sql(self.db.dialect)}")[0][0])

    def touch_token(self, name: str, now: float | None = None) -> None:
        """Note that ``name`` was used at ``now`` (the database's clock as
        :meth:`find_token_now` read it; default this process's clock); written only if its
        last use is a minute old."""
        now = time.time() if now is None else now
        self.db.write(
            lambda cur: cur.execute(
                "UPDATE tokens SET last_used_at = ? WHERE name = ? AND "
                "(last_used_at IS NULL OR last_used_at < ?)",
                (now, name, now - TOUCH_INTERVAL),
            )
        )

    def count_tokens(self) -> int:
        """How many tokens exist, in any state."""
        return int(self.db.read("SELECT COUNT(*) FROM tokens")[0][0])
