"""A loopback proxy in front of the real Azurite that throttles like a busy account: GETs
matching `refuse` are answered `status` (503 ServerBusy by default) with Azure's
x-ms-error-code header and XML error body, for `refuse_s` seconds from the first one (None:
for good); every other blob GET is served one at a time, each held `pace_s`, as a herd's fair
share of an account trickles in while the account is busy.

Azure's answer above a scalability target: 503 "Server Busy" with error code ServerBusy and
a message such as "Egress is over the account limit."
(https://learn.microsoft.com/en-us/rest/api/storageservices/common-rest-api-error-codes)."""

from __future__ import annotations

import http.client
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

Rule = Callable[[str, str], bool]  # (method, path without query) -> refuse it

MESSAGES = {
    "ServerBusy": "Egress is over the account limit.",
    "InternalError": "The server encountered an internal error. Please retry the request.",
}
_HOP = {"connection", "host", "keep-alive", "content-length", "transfer-encoding", "date", "server"}


def error_body(code: str) -> bytes:
    """Azure Storage's XML error body for `code`."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    message = f"{MESSAGES.get(code, code)}\nRequestId:{uuid.uuid4()}\nTime:{now}"
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()


class ThrottleProxy:
    """See the module. `refused` holds the monotonic time of each refusal, `served` counts the
    paced GETs forwarded."""

    def __init__(
        self,
        account_url: str,
        refuse: Rule,
        *,
        refuse_s: float | None,
        status: int = 503,
        code: str = "ServerBusy",
        pace_s: float = 0.0,
    ) -> None:
        target = urlparse(account_url)
        host = target.hostname or "127.0.0.1"
        self.refused: list[float] = []
        self.served = 0
        lock = threading.Lock()
        paced = threading.Lock()
        proxy = self
        reason = http.client.responses.get(status, "Error")
        if code == "ServerBusy":
            reason = "Server Busy"

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                method = self.command
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = unquote(self.path.split("?", 1)[0])
                now = time.monotonic()
                with lock:
                    first = proxy.refused[0] if proxy.refused else now
                    refuse_it = refuse(method, path) and (
                        refuse_s is None or now - first < refuse_s
                    )
                    if refuse_it:
                        proxy.refused.append(now)
                if refuse_it:
                    data = error_body(code)
                    headers = [
                        ("x-ms-error-code", code),
                        ("x-ms-request-id", str(uuid.uuid4())),
                        ("Content-Type", "application/xml"),
                    ]
                    self._answer(status, reason, headers, data)
                    return
                if method == "GET" and "comp=list" not in self.path and pace_s > 0:
                    with paced:  # one at a time: the others' trickle of successes
                        time.sleep(pace_s)
                        status_, reason_, headers_, data_ = self._forward(method, body)
                        proxy.served += 1
                else:
                    status_, reason_, headers_, data_ = self._forward(method, body)
                self._answer(status_, reason_, headers_, data_)

            def _forward(
                self, method: str, body: bytes
            ) -> tuple[int, str, list[tuple[str, str]], bytes]:
                conn = http.client.HTTPConnection(host, target.port, timeout=120)
                try:
                    sent = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    conn.request(method, self.path, body=body or None, headers=sent)
                    r = conn.getresponse()
                    return r.status, r.reason, r.getheaders(), r.read()
                finally:
                    conn.close()

            def _answer(
                self, status: int, reason: str, headers: list[tuple[str, str]], data: bytes
            ) -> None:
                self.send_response(status, reason)
                length = str(len(data))
                for k, v in headers:
                    if k.lower() == "content-length" and self.command == "HEAD":
                        length = v  # the blob's own length
                    elif k.lower() not in _HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                self.wfile.flush()

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _any  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{target.path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
