"""Response bodies of big downloads read straight into reused buffers (sync/fetch.py).

Measured on dataset b of bench/bench_sync.py (16 x 64 MB), most of a download's client CPU
is the kernel's: copying each body into the page cache, and faulting in and zeroing fresh
memory for every 16 MB body (`perf`: clear_page_erms and page faults, ~13 % of samples,
when each range came back as a new `bytes`). So a body is read with `readinto` into a part
buffer that is allocated once per Fetcher and reused (no new memory per range, no copy of
the body in user space), then hashed and written in blob order from that buffer, 1 MB at a
time so that both hashes and the write read each slice from the CPU cache.

The fast path is one plain GET on the pool of storage.rest with the body left unread
(urllib3 `preload_content=False`); anything but a 200/206 answer at once, or a connection
that fails while the body is read, goes back to `RestClient.request` (the storage retry
policy, its error messages, 412 as a changed version), so behaviour on errors is the lean
path's own.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
from typing import TYPE_CHECKING

import urllib3

if TYPE_CHECKING:
    from node_agent.storage.rest import RestClient

SLICE = 1024 * 1024  # written and hashed in slices of this size (fits a CPU cache)


class Buffers:
    """Part buffers, made on first use and reused: `take(n)` gives one of at least `n` bytes
    (a free one when it is big enough, else a new one of `n` rounded up to 1 MB, at most
    the part size). How many are out at once is bounded by the caller (Fetcher.parts), so
    this never blocks and never holds more buffers than that bound."""

    def __init__(self) -> None:
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self, n: int) -> bytearray:
        with self._lock:
            for i, buf in enumerate(self._free):
                if len(buf) >= n:
                    return self._free.pop(i)
            if self._free:  # too small for this part: let it go, make one that fits
                self._free.pop()
        return bytearray(-(-n // SLICE) * SLICE)

    def give(self, buf: bytearray) -> None:
        with self._lock:
            self._free.append(buf)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


class Hashes:
    """sha256 (the content address) and, when there is a Content-MD5 to check, md5, of bytes
    given in order. hashlib releases the GIL while it hashes more than 2 KB, so range threads
    keep reading meanwhile."""

    def __init__(self, want_md5: bool) -> None:
        self.sha = hashlib.sha256()
        self.md5 = hashlib.md5() if want_md5 else None

    def update_and_write(self, data: memoryview, fd: int) -> None:
        """Hash `data` and append it to `fd`, a slice at a time: the hashes and the write read
        each slice while it is in the CPU cache. Written in blob order, as before: which
        download meets a full disk first stays the one that asked for the space first
        (tests/integration/test_faults.py)."""
        for i in range(0, len(data), SLICE):
            piece = data[i : i + SLICE]
            self.sha.update(piece)
            if self.md5 is not None:
                self.md5.update(piece)
            done = 0
            while done < len(piece):
                done += os.write(fd, piece[done:])

    def md5_digest(self) -> bytes:
        return self.md5.digest() if self.md5 is not None else b""


def open_get(
    rest: RestClient, url: str, headers: dict[str, str]
) -> urllib3.BaseHTTPResponse | None:
    """A GET answered 200/206 with its body still unread, or None (the caller then uses
    RestClient.request: its retries and errors)."""
    try:
        r = rest.pool.request("GET", url, headers=headers, preload_content=False)
    except (urllib3.exceptions.HTTPError, OSError):
        return None
    if r.status in (200, 206) and getattr(r, "_fp", None) is not None:
        return r
    discard(r)
    return None


def read_part(r: urllib3.BaseHTTPResponse, view: memoryview) -> bool:
    """Fill `view` from the body of `r` (exactly its length); False when the connection
    failed or the body was shorter (the caller fetches the part again on the retried path)."""
    fp = r._fp  # type: ignore[attr-defined]  # http.client.HTTPResponse: readinto, no copy
    n = 0
    try:
        while n < len(view):
            got = fp.readinto(view[n:])
            if not got:
                break
            n += got
    except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError):
        discard(r)
        return False
    if n != len(view):  # the body ended early
        discard(r)
        return False
    r.release_conn()  # body read to its end: the connection is reused
    return True


def discard(r: urllib3.BaseHTTPResponse) -> None:
    """Drop a response whose body is not (entirely) read, and its connection with it."""
    try:
        r.close()
    finally:
        r.release_conn()
