"""Azure Storage on the wire, for the loopback proxies in front of Azurite: the benchmark's
(bench/throttle_proxy.py) and the tests' (tests/helpers/proxy.py, tests/helpers/throttle.py).
One home for Azure's error answer (503 ServerBusy and the others), for forwarding one request
to Azurite and for writing an answer back to the client.

Azure's answers above a scalability target: 503 "Server Busy" with x-ms-error-code ServerBusy
and a message such as "Egress is over the account limit." or "Operations per second is over
the account limit."; its error body is XML <Error><Code/><Message/></Error>, the message
ending in the request id and time
(https://learn.microsoft.com/en-us/rest/api/storageservices/common-rest-api-error-codes).
"""

from __future__ import annotations

import http.client
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Hop-by-hop and framing headers a proxy sets itself, never copies.
HOP = frozenset({"connection", "host", "keep-alive", "content-length", "transfer-encoding"})
# What BaseHTTPRequestHandler.send_response writes itself.
STAMPED = frozenset({"date", "server"})

TPS_MESSAGE = "Operations per second is over the account limit."
EGRESS_MESSAGE = "Egress is over the account limit."
MESSAGES = {
    "ServerBusy": EGRESS_MESSAGE,
    "InternalError": "The server encountered an internal error. Please retry the request.",
}

Answer = tuple[int, str, list[tuple[str, str]], bytes]  # status, reason, headers, body


def storage_error(code: str, message: str | None = None) -> tuple[list[tuple[str, str]], bytes]:
    """Azure Storage's headers and XML error body for error `code` (its usual message unless
    `message` is given), with a fresh request id."""
    rid = str(uuid.uuid4())
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    text = f"{message or MESSAGES.get(code, code)}\nRequestId:{rid}\nTime:{now}"
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{code}</Code><Message>{text}</Message></Error>"
    ).encode()
    headers = [
        ("x-ms-error-code", code),
        ("x-ms-request-id", rid),
        ("Content-Type", "application/xml"),
    ]
    return headers, body


def forward(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    drop: frozenset[str] = HOP,
) -> Answer:
    """Send one request over `conn` (without the headers named in `drop`, lower case) and read
    the whole answer."""
    sent = {k: v for k, v in headers.items() if k.lower() not in drop}
    conn.request(method, path, body=body or None, headers=sent)
    r = conn.getresponse()
    return r.status, r.reason, r.getheaders(), r.read()


def forward_once(
    host: str,
    port: int | None,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    drop: frozenset[str] = HOP,
) -> Answer:
    """`forward` over a connection of its own, closed after."""
    conn = http.client.HTTPConnection(host, port, timeout=120)
    try:
        return forward(conn, method, path, headers, body, drop)
    finally:
        conn.close()


def answer(
    handler: BaseHTTPRequestHandler,
    status: int,
    reason: str,
    headers: list[tuple[str, str]],
    data: bytes,
    *,
    upstream_date: bool = False,
) -> None:
    """Write an answer to the client. A HEAD keeps the blob's own Content-Length (and sends no
    body). The proxy stamps its own Date and Server unless `upstream_date` (then Azurite's,
    or the ones in `headers`, go through)."""
    if upstream_date:
        handler.send_response_only(status, reason)
        drop = HOP
    else:
        handler.send_response(status, reason)
        drop = HOP | STAMPED
    length = str(len(data))
    for k, v in headers:
        if k.lower() == "content-length" and handler.command == "HEAD":
            length = v  # the blob's own length
        elif k.lower() not in drop:
            handler.send_header(k, v)
    handler.send_header("Content-Length", length)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(data)
    handler.wfile.flush()


class ProxyHandler(BaseHTTPRequestHandler):
    """A proxy's request handler: HTTP/1.1 (kept-alive connections), silent, every method
    handled by `_any`."""

    protocol_version = "HTTP/1.1"

    def _any(self) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:  # noqa: N802
        self._any()

    do_PUT = do_HEAD = do_DELETE = do_POST = do_GET  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


def serve(
    handler: type[BaseHTTPRequestHandler], server: type[ThreadingHTTPServer] = ThreadingHTTPServer
) -> ThreadingHTTPServer:
    """`handler` on a free loopback port, served on a daemon thread (one thread a
    connection, none of which keeps the process alive)."""
    httpd = server(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd
