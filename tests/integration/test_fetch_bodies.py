"""Big downloads read their bodies straight into reused buffers (sync/bodies.py). A connection
that breaks in the middle of a body, or a body shorter than it said, is not taken as the
blob's bytes: that part is fetched again on the retried path, and the file and its hashes
are exactly the blob's."""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest
from helpers import make_spec_doc

from node_agent.azurite import AzuriteServer
from node_agent.redact import Redactor
from node_agent.spec import spec_from_data
from node_agent.storage import BlobStore
from node_agent.sync import fetch
from node_agent.sync.access import Access

KB = 1024


class CuttingProxy:
    """Forwards to Azurite; the first `cuts` blob GETs send their headers (the full
    Content-Length) and only half the body, then close the connection."""

    def __init__(self, account_url: str, cuts: int) -> None:
        target = urlparse(account_url)
        self.cuts, self.gets = cuts, 0
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                blob = "comp=list" not in self.path
                with lock:
                    proxy.gets += blob
                    cut = blob and proxy.cuts > 0
                    proxy.cuts -= cut
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                try:
                    skip = {"connection", "host", "keep-alive"}
                    conn.request(
                        "GET",
                        self.path,
                        headers={k: v for k, v in self.headers.items() if k.lower() not in skip},
                    )
                    r = conn.getresponse()
                    data = r.read()
                finally:
                    conn.close()
                self.send_response(r.status, r.reason)
                for k, v in r.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if cut else data)
                self.wfile.flush()
                if cut:
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{target.path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("shape", ["whole", "ranged"])
def test_a_body_cut_short_is_fetched_again(
    azurite: AzuriteServer,
    store: BlobStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    shape: str,
) -> None:
    # a blob above the buffered threshold: one GET ("whole") or 4 ranges ("ranged")
    monkeypatch.setattr(fetch, "SMALL", 64 * KB)
    if shape == "ranged":
        monkeypatch.setattr(fetch, "PART_SIZE", 64 * KB)
    data = os.urandom(4 * 64 * KB - 5)
    store.ensure_container("bodies")
    store.container("bodies").upload_blob("scene.bin", data, overwrite=True)
    spec = spec_from_data(make_spec_doc(azurite.account_url))
    lister = fetch.Fetcher(Access(spec.storage, Redactor()), "bodies")
    try:
        listed = next(iter(lister.list("")))
    finally:
        lister.close()
    assert listed.md5 == hashlib.md5(data).digest()
    proxy = CuttingProxy(azurite.account_url, cuts=1)
    spec = spec_from_data(make_spec_doc(proxy.url))
    f = fetch.Fetcher(Access(spec.storage, Redactor()), "bodies", connections=4)
    try:
        got = f.fetch("scene.bin", len(data), listed.md5, tmp_path / "t", etag=listed.etag)
    finally:
        f.close()
        proxy.close()
    assert (tmp_path / "t").read_bytes() == data
    assert got.sha256 == hashlib.sha256(data).hexdigest()
    assert got.md5 == hashlib.md5(data).digest()
    assert (got.etag, got.changed) == (listed.etag, False)
    assert proxy.cuts == 0, "no body was cut"
    assert proxy.gets == (1 if shape == "whole" else 4) + 1  # the cut part once more
    assert f.parts._value == fetch.PARTS_IN_MEMORY  # type: ignore[attr-defined]
