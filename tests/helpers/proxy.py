"""A proxy in front of the real Azurite, for tests that must see or disturb storage requests
at an exact point (a blob overwritten between two ranges, a 503 on the first N tries)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from urllib.parse import unquote, urlparse

from storage_wire import ProxyHandler, answer, forward_once, serve

Hook = Callable[[str, str, dict[str, str]], None]  # (method, path, lower-case headers)
Rule = Callable[[str, str], bool]  # (method, path without query) -> answer 503 ServerBusy


class StorageProxy:
    """Forwards every request (with its body) to Azurite and records it in `seen` as
    (method, path without query, lower-case headers). Requests matching `busy` are answered
    503 ServerBusy while `fail_left` lasts (-1: always). `before(method, path, headers)` runs
    before a blob request (not a listing) is forwarded, `after(...)` once its response has
    been sent. A HEAD keeps the blob's own Content-Length."""

    def __init__(
        self,
        account_url: str,
        before: Hook | None = None,
        after: Hook | None = None,
        *,
        busy: Rule | None = None,
        fails: int = 0,
    ) -> None:
        target = urlparse(account_url)
        host = target.hostname or "127.0.0.1"
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.fail_left = fails
        lock = threading.Lock()
        proxy = self

        class Handler(ProxyHandler):
            def _any(self) -> None:
                method = self.command
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                blob = "comp=list" not in self.path
                path = unquote(self.path.split("?", 1)[0])
                headers = {k.lower(): v for k, v in self.headers.items()}
                with lock:
                    proxy.seen.append((method, path, headers))
                    fail = busy is not None and busy(method, path) and proxy.fail_left != 0
                    if fail and proxy.fail_left > 0:
                        proxy.fail_left -= 1
                if fail:
                    answer(self, 503, "Server Busy", [("x-ms-error-code", "ServerBusy")], b"")
                    return
                if blob and before:
                    before(method, path, headers)
                got = forward_once(host, target.port, method, self.path, headers, body)
                answer(self, *got)
                if blob and after:
                    after(method, path, headers)

        self.server = serve(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{target.path}"

    def count(self, method: str, suffix: str) -> int:
        """How many `method` requests reached the proxy for a path ending in `suffix`."""
        return sum(1 for m, p, _h in self.seen if m == method and p.endswith(suffix))

    def gets(self, name: str) -> list[dict[str, str]]:
        """The headers of every GET of blob `name`."""
        return [h for m, p, h in self.seen if m == "GET" and p.endswith("/" + name)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
