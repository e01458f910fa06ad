"""uvicorn's HTTP protocol with ``TCP_NODELAY`` set on every connection.

With ``--workers`` above 1, uvicorn binds the listening socket itself as
``socket.socket(AF_INET, SOCK_STREAM)``, whose ``proto`` is 0; asyncio sets ``TCP_NODELAY``
only on sockets whose ``proto`` is ``IPPROTO_TCP``, so every accepted connection kept
Nagle's algorithm. A response is written in two pieces (head, then body): the second
waited for the client's delayed ACK, 40 ms on every keep-alive request.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

NO_DELAY_PROTOCOL = "runyard.server._protocol:NoDelayHTTPProtocol"


class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    def connection_made(self, transport: asyncio.Transport) -> None:
        sock: Any = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        super().connection_made(transport)
