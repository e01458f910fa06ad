"""The HTTP transport of remote workspaces: one client per server, retries, errors back.

Timeouts, connection resets and 502/503/504 answers are retried with exponential backoff
and full jitter, for at most ``retry_seconds`` in all (``RUNYARD_HTTP_RETRY_SECONDS``,
default 60); one attempt waits for an answer at most ``RUNYARD_HTTP_TIMEOUT_SECONDS``
(default 60). Any other 4xx or 5xx answer is never retried: its ``{"error": {"code",
"message"}}`` body comes back as the same :mod:`runyard.errors` class the server raised,
with the same message.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from ..errors import (
    RunyardError,
    ServerUnreachable,
    StoreError,
    UserError,
    error_class,
)

API = "/api/v1"
ENV_TOKEN = "RUNYARD_TOKEN"
ENV_RETRY_SECONDS = "RUNYARD_HTTP_RETRY_SECONDS"
ENV_TIMEOUT_SECONDS = "RUNYARD_HTTP_TIMEOUT_SECONDS"
RETRY_STATUSES = frozenset({502, 503, 504})
_CONNECT_TIMEOUT = 5.0
_READ_TIMEOUT = 60.0


class HttpClient:
    """Requests to one runyard server, with its token; safe to share between threads and
    across ``fork`` (a child makes its own connections)."""

    def __init__(self, base_url: str, token: str | None, retry_seconds: float | None = None):
        self.base_url = base_url.rstrip("/")
        self.token = token
        from .._liveness import seconds_setting

        if retry_seconds is None:
            retry_seconds = seconds_setting(ENV_RETRY_SECONDS, 60.0)
        self.retry_seconds = retry_seconds
        self.timeout = seconds_setting(ENV_TIMEOUT_SECONDS, _READ_TIMEOUT)
        self._client: httpx.Client | None = None
        self._pid = 0
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        pid = os.getpid()
        if self._pid != pid and self._client is not None:  # forked: not ours to use
            self._lock = threading.Lock()  # another thread may have held it at the fork
            self._client = None
        if self._client is None or self._pid != pid:
            with self._lock:
                if self._client is None or self._pid != pid:
                    headers = {"User-Agent": "runyard"}
                    if self.token:
                        headers["Authorization"] = f"Bearer {self.token}"
                    self._client = httpx.Client(
                        base_url=self.base_url,
                        headers=headers,
                        timeout=httpx.Timeout(
                            self.timeout, connect=min(self.timeout, _CONNECT_TIMEOUT)
                        ),
                        limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
                    )
                    self._pid = pid
        return self._client

    def request(
        self,
        method: str,
        path: str,
        *,
        retry_seconds: float | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request (``path`` below the server's URL); raise the server's error.

        ``retry_seconds`` bounds the retries of this call (0: one attempt only). A body
        given as an iterator cannot be sent twice, so it is never retried; a seekable file
        is sent again from its start.
        """
        budget = self.retry_seconds if retry_seconds is None else retry_seconds
        content = kwargs.get("content")
        rewind = getattr(content, "seekable", lambda: False)() and hasattr(content, "read")
        if not (content is None or isinstance(content, bytes | str) or rewind):
            budget = 0
        deadline = time.monotonic() + budget
        attempt = 0
        while True:
            attempt += 1
            try:
                if rewind and content is not None:
                    content.seek(0)
                response = self.client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.status_code not in RETRY_STATUSES:
                    try:
                        raise_for_error(response)
                    except RunyardError as exc:
                        exc.runyard_attempts = attempt  # type: ignore[attr-defined]
                        raise
                    return response
                problem = f"HTTP {response.status_code}: {_message(response)}"
            pause = min(5.0, 0.05 * 2**attempt) * random.random()
            if time.monotonic() + pause > deadline:
                # always "unreachable" (never a refusal): what was sent may be sent again
                raise ServerUnreachable(
                    f"the runyard server at {self.base_url} did not answer {method} {path} "
                    f"({problem}; {attempt} attempt(s) in {budget:g} s). Check that it is "
                    f"running; {ENV_RETRY_SECONDS} sets how long to keep trying"
                )
            time.sleep(pause)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed response (downloads, server-sent events); errors raised as usual."""
        try:
            with self.client.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    raise_for_error(response)
                yield response
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"the runyard server at {self.base_url} broke off {method} {path}: {exc}"
            ) from exc

    def close(self) -> None:
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
        self._client = None


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of a runyard error body; empty strings for any other body."""
    try:
        body = response.json()
    except ValueError:
        return "", ""
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        return str(error.get("code", "")), str(error.get("message", ""))
    return "", ""


def _message(response: httpx.Response) -> str:
    return _error_of(response)[1] or response.reason_phrase


def raise_for_error(response: httpx.Response) -> None:
    """Raise the runyard error an error response carries (any status >= 400)."""
    if response.status_code < 400:
        return
    code, message = _error_of(response)
    if not message:
        text = response.text[:500].strip()
        message = f"HTTP {response.status_code} from {response.request.url}" + (
            f": {text}" if text else ""
        )
    cls = error_class(code) if code else None
    if cls is None:
        cls = UserError if 400 <= response.status_code < 500 else StoreError
    raise _make(cls, message)


def _make(cls: type[RunyardError], message: str) -> RunyardError:
    try:
        return cls(message)
    except TypeError:  # pragma: no cover - every class takes one message
        return StoreError(message)
