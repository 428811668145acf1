"""A loopback proxy in front of Azurite that throttles the way an Azure storage account does.

Azure Storage answers `503 Server Busy` with `x-ms-error-code: ServerBusy` when an account is
over its request rate or its egress ("Operations per second is over the account limit.",
"Egress is over the account limit.": the ServerBusy messages listed in
https://learn.microsoft.com/en-us/rest/api/storageservices/common-rest-api-error-codes ),
and asks clients to back off exponentially
(https://learn.microsoft.com/en-us/azure/storage/common/scalability-targets-standard-account ).
This proxy admits requests through one token bucket (`rate` requests/s, `burst` tokens) and,
optionally, an egress bucket (`egress_bps` bytes/s): a request that finds no token is answered
at once with that 503, Azure's XML error body and headers, and never reaches Azurite.

Every node of the benchmark gets its own listening port (`url(node)`), all sharing the same
buckets, so the proxy can count per node: requests admitted, 503s, bytes sent, and for each
request key (method, path, range) how many 503s it met before it got through and how long
that took (the client's retries, seen from the server side).
"""

from __future__ import annotations

import http.client
import sys
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import ThreadingHTTPServer
from urllib.parse import urlparse

from storage_wire import (
    EGRESS_MESSAGE,
    TPS_MESSAGE,
    Answer,
    ProxyHandler,
    answer,
    forward,
    serve,
    storage_error,
)


class Bucket:
    """A token bucket: `rate` tokens per second, at most `burst` held. take() may go into debt
    by a cost (egress: a response's bytes are known only after it is sent)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Take `cost` if at least one token is there (callers hold the proxy's lock)."""
        self._refill(now)
        if self.tokens < min(cost, 1.0):
            return False
        self.tokens -= cost
        return True

    def charge(self, now: float, cost: float) -> None:
        self._refill(now)
        self.tokens -= cost


@dataclass
class NodeStats:
    admitted: int = 0
    busy: int = 0  # 503s answered
    bytes_out: int = 0
    retried: int = 0  # requests that met at least one 503 before getting through
    max_busy_per_request: int = 0
    waits: list[float] = field(default_factory=list)  # first 503 -> admitted, per retried request


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a herd of nodes connects at once

    def handle_error(self, request: object, client_address: object) -> None:
        """A node that exits drops its kept-alive connections: not an error of the proxy."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class ThrottleProxy:
    """Forward to Azurite at `account_url`; throttle at `rate` req/s (0: no throttle) and
    `egress_bps` bytes/s (0: no egress limit)."""

    def __init__(
        self,
        account_url: str,
        nodes: int,
        *,
        rate: float = 0.0,
        burst: float = 0.0,
        egress_bps: float = 0.0,
    ) -> None:
        target = urlparse(account_url)
        self.host = target.hostname or "127.0.0.1"
        self.port = target.port or 80
        self.path = target.path
        self.lock = threading.Lock()
        self.requests = Bucket(rate, burst or max(1.0, rate / 10)) if rate > 0 else None
        self.egress = Bucket(egress_bps, egress_bps) if egress_bps > 0 else None
        self.stats = [NodeStats() for _ in range(nodes)]
        self.pending: dict[tuple[int, str], tuple[float, int]] = {}  # key -> (first 503, count)
        self.timeline: dict[int, list[int]] = {}  # whole second -> [admitted, 503s]
        self.t0 = time.monotonic()
        self.local = threading.local()
        self.servers = [self._serve(i) for i in range(nodes)]

    def url(self, node: int) -> str:
        return f"http://127.0.0.1:{self.servers[node].server_address[1]}{self.path}"

    def reset(self) -> None:
        with self.lock:
            self.stats = [NodeStats() for _ in self.stats]
            self.pending.clear()
            self.timeline.clear()
            self.t0 = time.monotonic()
            for b in (self.requests, self.egress):
                if b is not None:
                    b.tokens, b.stamp = b.burst, time.monotonic()

    def close(self) -> None:
        for s in self.servers:
            s.shutdown()
            s.server_close()

    # --- admission ------------------------------------------------------------------
    def admit(self, node: int, key: str) -> str | None:
        """None: forward it; else the ServerBusy message to answer with."""
        now = time.monotonic()
        with self.lock:
            st = self.stats[node]
            sec = self.timeline.setdefault(int(now - self.t0), [0, 0])
            refused = None
            if self.egress is not None and self.egress.tokens < 0:
                self.egress._refill(now)
                if self.egress.tokens < 0:
                    refused = EGRESS_MESSAGE
            if refused is None and self.requests is not None and not self.requests.take(now):
                refused = TPS_MESSAGE
            k = (node, key)
            if refused is not None:
                st.busy += 1
                sec[1] += 1
                first, n = self.pending.get(k, (now, 0))
                self.pending[k] = (first, n + 1)
                return refused
            st.admitted += 1
            sec[0] += 1
            if k in self.pending:
                first, n = self.pending.pop(k)
                st.retried += 1
                st.max_busy_per_request = max(st.max_busy_per_request, n)
                st.waits.append(now - first)
            return None

    def sent(self, node: int, nbytes: int) -> None:
        with self.lock:
            self.stats[node].bytes_out += nbytes
            if self.egress is not None:
                self.egress.charge(time.monotonic(), nbytes)

    def upstream(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self.local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
            self.local.conn = conn
        return conn

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        """One request to Azurite over this thread's kept-alive connection (one reconnect)."""
        for attempt in (1, 2):
            conn = self.upstream()
            try:
                return forward(conn, method, path, headers, body)
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    # --- HTTP -----------------------------------------------------------------------
    def _serve(self, node: int) -> ThreadingHTTPServer:
        proxy = self

        class Handler(ProxyHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                key = f"{self.command} {self.path} {headers.get('x-ms-range', '')}"
                refused = proxy.admit(node, key)
                if refused is not None:
                    self._busy(refused)
                    return
                try:
                    status, reason, got, data = proxy.forward(
                        self.command, self.path, headers, body
                    )
                except (OSError, http.client.HTTPException):
                    self.close_connection = True  # the client sees a dropped connection
                    return
                answer(self, status, reason, got, data, upstream_date=True)
                proxy.sent(node, len(data))

            def _busy(self, message: str) -> None:
                headers, xml = storage_error("ServerBusy", message)
                version = self.headers.get("x-ms-version") or "2021-08-06"
                headers += [("x-ms-version", version), ("Date", formatdate(usegmt=True))]
                answer(self, 503, "Server Busy", headers, xml, upstream_date=True)

        return serve(Handler, _Server)
