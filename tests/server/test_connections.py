"""The server's connections as a client's TCP stack sees them."""

from __future__ import annotations

import http.client
import socket
from urllib.parse import urlsplit

from fakes import wait_until


def test_the_servers_connections_send_small_writes_at_once(start_server, tiny_model):
    """Nagle's algorithm off (TCP_NODELAY): a response goes out in two writes (headers,
    body), and with Nagle on the second waits for the client's delayed ACK, 40 ms per
    request on a kept-alive connection. asyncio turns it off only on sockets created as
    IPPROTO_TCP, so the listening socket we bind ourselves must be one."""
    server = start_server(tiny_model)
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", "/health")
        assert connection.getresponse().read() == b'{"status":"ok"}'
        connections = server.server.server_state.connections
        wait_until(lambda: len(connections) == 1)
        (protocol,) = connections
        accepted = protocol.transport.get_extra_info("socket")
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        connection.close()
