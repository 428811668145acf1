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
from collections.abc import Callable
from urllib.parse import unquote, urlparse

from storage_wire import (
    HOP,
    STAMPED,
    Answer,
    ProxyHandler,
    answer,
    forward_once,
    serve,
    storage_error,
)

Rule = Callable[[str, str], bool]  # (method, path without query) -> refuse it


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

        class Handler(ProxyHandler):
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
                    headers, data = storage_error(code)
                    answer(self, status, reason, headers, data)
                    return
                if method == "GET" and "comp=list" not in self.path and pace_s > 0:
                    with paced:  # one at a time: the others' trickle of successes
                        time.sleep(pace_s)
                        got = self._forward(method, body)
                        proxy.served += 1
                else:
                    got = self._forward(method, body)
                answer(self, *got)

            def _forward(self, method: str, body: bytes) -> Answer:
                # the client's own Date and Server are not sent on either
                drop = HOP | STAMPED
                return forward_once(host, target.port, method, self.path, self.headers, body, drop)

        self.server = serve(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{target.path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
