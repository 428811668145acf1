"""Ending a job from a node (batch/jobcontrol.py) against hostile answers, and the local
pool's Batch/IMDS stand-in (localpool/batchapi.py) against hostile requests: real HTTP
servers on loopback, job control run in its own process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from node_agent.batch.jobcontrol import BATCH_API_VERSION, IDENTITY_ENV, IMDS_ENV
from node_agent.localpool.batchapi import LocalBatchApi

TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.secret-bearer-token-from-imds"


@contextmanager
def _server(answer: Any) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback HTTP server: `answer(handler)` -> (status, headers, body); every request
    recorded (method, path, headers)."""
    seen: list[dict[str, Any]] = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            return

        def _go(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            seen.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": body,
                }
            )
            status, headers, data = answer(self)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _go  # noqa: N815

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", seen
    finally:
        srv.shutdown()
        srv.server_close()


def _end_job(account: str, imds: str) -> subprocess.CompletedProcess[str]:
    """end_job_after for a job prep that failed with exit 2 (ends the job), in its own process."""
    code = (
        "import logging, sys\n"
        "from node_agent.batch.jobcontrol import end_job_after\n"
        "from node_agent.redact import Redactor\n"
        "import os\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "o = end_job_after(2, 'bad spec', os.environ, Redactor(), logging.getLogger('t'))\n"
        "print('NOTE', o.called, o.status, o.note)\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        IDENTITY_ENV: "/subscriptions/s/resourceGroups/g/providers/x/userAssignedIdentities/i",
        IMDS_ENV: imds,
        "AZ_BATCH_ACCOUNT_URL": account,
        "AZ_BATCH_JOB_ID": "job-x",
        "AZ_BATCH_NODE_ID": "node-1",
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _imds(token: bytes = json.dumps({"access_token": TOKEN}).encode()) -> Any:
    return lambda h: (200, {"Content-Type": "application/json"}, token)


@pytest.mark.parametrize("status", [302, 303, 307])
def test_a_redirect_from_the_batch_account_does_not_carry_the_bearer_token(status: int) -> None:
    """urllib follows a 302/303 of a POST as a GET to wherever it points, with every header
    but the content ones: the Authorization header went along."""
    with (
        _server(lambda h: (200, {}, b"{}")) as (elsewhere, stolen),
        _server(lambda h: (status, {"Location": elsewhere + "/steal"}, b"")) as (account, calls),
        _server(_imds()) as (imds, _),
    ):
        r = _end_job(account, imds)
    assert calls and calls[0]["headers"].get("Authorization") == f"Bearer {TOKEN}"
    assert not any(TOKEN in json.dumps(s["headers"]) for s in stolen), stolen
    assert not stolen  # a redirect is not followed at all
    assert TOKEN not in r.stdout + r.stderr
    assert f"NOTE True {status}" in r.stdout, r.stdout + r.stderr


def test_a_redirect_from_imds_is_not_followed() -> None:
    with (
        _server(_imds()) as (elsewhere, followed),
        _server(lambda h: (302, {"Location": elsewhere + h.path}, b"")) as (imds, _),
        _server(lambda h: (202, {}, b"")) as (account, calls),
    ):
        r = _end_job(account, imds)
    assert not followed and not calls
    assert "NOTE False" in r.stdout and "HTTP 302" in r.stdout, r.stdout + r.stderr


def test_a_huge_or_malformed_imds_answer_is_refused_by_name() -> None:
    huge = b'{"access_token": "' + b"A" * (64 * 2**20) + b'"}'
    for body, said in ((huge, "answer over"), (b"{not json", "no access_token")):
        with (
            _server(_imds(body)) as (imds, _),
            _server(lambda h: (202, {}, b"")) as (account, calls),
        ):
            r = _end_job(account, imds)
        assert not calls, "no terminate call without a proper token"
        assert "NOTE False" in r.stdout and said in r.stdout, r.stdout[-500:] + r.stderr[-500:]
        assert len(r.stdout) < 10_000


# --- the local pool's stand-in -------------------------------------------------------
def _raw(url: str, head: bytes, body: bytes = b"", hold: bool = False) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head + b"\r\n\r\n" + body)
        if not hold:
            s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out and hold:
                    break
        except TimeoutError:
            out += b"<timeout>"
        return out


def _post(api: LocalBatchApi, length: str, body: bytes, hold: bool = False) -> bytes:
    head = (
        f"POST /jobs/job-x/terminate?api-version={BATCH_API_VERSION} HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Bearer {api.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}"
    ).encode()
    return _raw(api.url, head, body, hold)


def test_the_stand_in_bounds_what_it_reads() -> None:
    reasons: list[str] = []

    def on_terminate(job: str, reason: str) -> bool:
        reasons.append(reason)
        return True

    with LocalBatchApi(on_terminate) as api:
        assert api.url.startswith("http://127.0.0.1:")
        # 8 MiB announced: refused at once, without waiting for (or reading) the body
        assert b" 413 " in _post(api, str(8 * 2**20), b"", hold=True).split(b"\r\n")[0]
        # a negative or unreadable length: an answer, not a thread reading until EOF
        assert b" 400 " in _post(api, "-1", b"{}", hold=True).split(b"\r\n")[0]
        assert b" 400 " in _post(api, "abc", b"{}", hold=True).split(b"\r\n")[0]
        # a long reason within the size: kept to Batch's terminateReason size
        ok = json.dumps({"terminateReason": "y" * 5000}).encode()
        assert b" 202 " in _post(api, str(len(ok)), ok).split(b"\r\n")[0]
        # no token, no terminate
        head = f"POST /jobs/job-x/terminate?api-version={BATCH_API_VERSION} HTTP/1.1\r\nContent-Length: 2"
        assert b" 401 " in _raw(api.url, head.encode(), b"{}").split(b"\r\n")[0]
        assert all(api.token not in json.dumps(e.__dict__) for e in api.exchanges)
    assert len(reasons) == 1 and len(reasons[0]) <= 1024, [len(r) for r in reasons]
