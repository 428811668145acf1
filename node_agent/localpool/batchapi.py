"""The local pool's stand-ins for the two services a node calls to end its job: the Batch
account (POST /jobs/{job}/terminate) and the node's IMDS (a managed identity token).

A loopback HTTP server; the local nodes' AZ_BATCH_ACCOUNT_URL and NODE_AGENT_IMDS_ENDPOINT
point at it, so job preparation runs the same code (batch/jobcontrol.py) as on Batch. It
answers as Batch does for what it serves (202 on terminate, 409 JobCompleted for a job that
already ended, 401 without the token it issued) and records every request (never the token).
It listens on 127.0.0.1 only, answers a body over BODY_MAX (or a Content-Length that is not
a number) before reading it, and stops with the job run (`with`).
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from node_agent.batch.jobcontrol import BATCH_API_VERSION, BATCH_RESOURCE

OnTerminate = Callable[[str, str], bool]  # (job id, reason) -> whether the job was running
BODY_MAX = 64 * 1024  # a Terminate Job body is one short reason: more is answered 413
REASON_KEPT = 1024  # what the run record keeps of a reason (job prep sends at most 256)


@dataclass
class Exchange:
    method: str
    path: str
    query: dict[str, list[str]]
    body: dict[str, Any] | None
    status: int


@dataclass
class LocalBatchApi:
    on_terminate: OnTerminate
    token: str = field(default_factory=lambda: "local-batch-token-" + secrets.token_hex(16))
    exchanges: list[Exchange] = field(default_factory=list)

    def __post_init__(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet: the pool prints what matters
                return

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                api._serve(self, None)

            def do_POST(self) -> None:  # noqa: N802
                try:
                    n = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    n = -1
                if n < 0 or n > BODY_MAX:  # answered before reading: never a read to EOF
                    self.close_connection = True
                    status = 400 if n < 0 else 413
                    api._reply(self, status, _error("InvalidHeader", "Content-Length"))
                    return
                raw = self.rfile.read(n) if n else b""
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {"_unparsed": raw.decode(errors="replace")}
                api._serve(self, body if isinstance(body, dict) else {})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> LocalBatchApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _serve(self, h: BaseHTTPRequestHandler, body: dict[str, Any] | None) -> None:
        u = urlparse(h.path)
        query = parse_qs(u.query)
        status, answer = self._answer(h, u.path, query, body)
        with self.lock:
            self.exchanges.append(Exchange(h.command, u.path, query, body, status))
        self._reply(h, status, answer)

    def _reply(self, h: BaseHTTPRequestHandler, status: int, answer: dict[str, Any]) -> None:
        data = json.dumps(answer).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _answer(
        self, h: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, dict[str, Any]]:
        if h.command == "GET" and path == "/metadata/identity/oauth2/token":
            if h.headers.get("Metadata") != "true" or query.get("resource") != [BATCH_RESOURCE]:
                return 400, {"error": "invalid_request"}
            return 200, {
                "access_token": self.token,
                "expires_in": "3600",
                "token_type": "Bearer",
                "resource": BATCH_RESOURCE,
            }
        parts = path.strip("/").split("/")
        if (
            h.command == "POST"
            and len(parts) == 3
            and parts[0] == "jobs"
            and parts[2] == "terminate"
        ):
            if h.headers.get("Authorization") != f"Bearer {self.token}":
                return 401, _error("AuthenticationFailed", "no valid token")
            if query.get("api-version") != [BATCH_API_VERSION]:
                return 400, _error("InvalidApiVersion", "api-version")
            reason = str((body or {}).get("terminateReason") or "UserTerminate")[:REASON_KEPT]
            if self.on_terminate(unquote(parts[1]), reason):
                return 202, {}
            return 409, _error("JobCompleted", "The specified job is already in a completed state.")
        return 404, _error("NotFound", f"{h.command} {path}")


def _error(code: str, message: str) -> dict[str, Any]:
    # the Batch error body (REST spec BatchError)
    return {"code": code, "message": {"lang": "en-US", "value": message}}
