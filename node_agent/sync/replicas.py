"""`storage.replicas`: asset bodies read from one of several accounts holding the same assets.

Azure's object replication copies block blobs asynchronously from a source account to
destination accounts (https://learn.microsoft.com/en-us/azure/storage/blobs/object-replication-overview);
K accounts give K x an account's egress (docs/scale.md, "Beyond one account").

The rule:
- The listing (names, sizes, Content-MD5, ETags) and manifests always come from the primary
  (`storage.account_url`): a replica lags, and its ETags are its own.
- Each node reads bodies from the account its node id picks (sha256 of AZ_BATCH_NODE_ID,
  batchenv's `node_id`, modulo primary + replicas: a farm spreads evenly and a node keeps
  its pick between runs), then the others in a fixed rotation.
- A replica's bytes are verified against the primary's listing: size and Content-MD5
  (plain sources) or sha256 (manifest-pinned content, addressed by its hash). A body that
  cannot be verified that way (a big blob without Content-MD5 in a plain source) is read
  from the primary. Bytes that do not match are a failure of that replica: never adopted
  into the cache, logged, the next account tried.
- On an account other than the last resort, each request gets QUICK tries (no 10x budget
  for throttling): a 503 ServerBusy, 500 OperationTimeout, a refused connection or other
  5xx there moves the read to the next account at once, and the account is skipped for
  COOLDOWN_S (one WARN per account and cause). A 404 (a replica not yet replicated) or a
  mismatch moves that one blob on.
- The last resort is always the primary under the spec's full retry policy
  (policies.storage_retry_s, x10 for throttling, version pinned): with every account down
  or busy, a node behaves as it does without replicas.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from node_agent.errors import StorageError
from node_agent.logs import get_logger
from node_agent.storage.credentials import CredentialMissing
from node_agent.storage.rest import AccessDenied, NotFound
from node_agent.storage.rest import VersionChanged as _Changed
from node_agent.storage.retry import RetryPolicy

if TYPE_CHECKING:
    from node_agent.sync.access import Access
    from node_agent.sync.fetch import Fetched, Fetcher

log = get_logger("sync")

# Tries per request on an account that is not the last resort, and the wait between them
# (storage.retry jitters it 0.5-1.5x). Measured with tests/integration/test_replicas.py: a
# replica behind a proxy answering 503 ServerBusy costs ~0.5 s before the fallback; under the
# full policy the same request would wait up to storage_retry_s x 10 (600 s by default) on
# an account that is busy, while another account holding the same bytes is idle.
QUICK = RetryPolicy(attempts=2, first_delay_s=0.5, budget_s=0.0, throttled_factor=1.0)
COOLDOWN_S = 60.0  # an account that failed that way is skipped for this long
NODE_ID_VAR = "AZ_BATCH_NODE_ID"  # batchenv.BatchNode.node_id
_CONTENT = re.compile(r"(?:^|/)content/([0-9a-f]{64})$")  # manifest content (sync/manifest.py)
_NOTED_404 = 3  # 404s logged per account; the others are counted


def content_address(name: str) -> str | None:
    """The sha256 a manifest content object's name is (`<project>/content/<sha256>`)."""
    m = _CONTENT.search(name)
    return m.group(1) if m else None


def pick(node_id: str, n: int) -> int:
    """The account (0: the primary) node `node_id` reads first, out of `n`."""
    return int.from_bytes(hashlib.sha256(node_id.encode()).digest()[:8], "big") % n


def _check_credential(acc: Access, i: int) -> None:
    """A replica's own secret variable is set: said at the start on every node, not only on
    the nodes whose pick or fallback reaches it (CredentialMissing: exit 2)."""
    env = acc.storage.auth.env
    if env and not acc.env.get(env):
        raise CredentialMissing(
            f"storage.replicas[{i}].auth.env: environment variable {env} is not set (it "
            f"holds the credential of {acc.account_url}; set it in the job's environment)"
        )


class ReplicaSet:
    """The accounts of one spec's `storage` (0: the primary), the node's pick and rotation,
    which accounts are cooling down, and how many bodies each served. One per Access, so
    shared by the sync's sources."""

    def __init__(self, accounts: Sequence[Access], env: Mapping[str, str]) -> None:
        self.accounts = list(accounts)
        for i, acc in enumerate(self.accounts[1:]):
            _check_credential(acc, i)
        self.node_id = env.get(NODE_ID_VAR) or socket.gethostname()
        n = len(self.accounts)
        self.first = pick(self.node_id, n)
        self.order = [(self.first + i) % n for i in range(n)]
        self.counts = [0] * n
        self.fallbacks = [0] * n
        self._down_until = [0.0] * n
        self._warned: set[tuple[int, str]] = set()
        self._404s = [0] * n
        self._lock = threading.Lock()
        self._announced = False

    def label(self, i: int) -> str:
        """How an account is named in logs: its URL (never with a SAS: the spec refuses one)."""
        url = self.accounts[i].account_url
        return f"primary {url}" if i == 0 else f"replica [{i - 1}] {url}"

    def announce(self) -> None:
        with self._lock:
            if self._announced:
                return
            self._announced = True
        log.info(
            "asset bodies: reading from %s (picked by node id %s out of %d accounts; "
            "listing from the primary)",
            self.label(self.first),
            self.node_id,
            len(self.accounts),
        )

    def candidates(self) -> list[int]:
        """The rotation from the pick, without the accounts cooling down."""
        now = time.monotonic()
        return [i for i in self.order if self._down_until[i] <= now]

    def served(self, i: int) -> None:
        with self._lock:
            self.counts[i] += 1

    def failed(self, i: int, cause: str, detail: str, *, down: bool) -> None:
        """Account `i` could not give `blob`: counted, and one WARN per account and cause
        (each mismatch, the first few 404s); `down`: skipped for COOLDOWN_S."""
        with self._lock:
            self.fallbacks[i] += 1
            if down:
                self._down_until[i] = time.monotonic() + COOLDOWN_S
            if cause == "not found":
                self._404s[i] += 1
                say = self._404s[i] <= _NOTED_404
            else:
                say = cause == "mismatch" or (i, cause) not in self._warned
                self._warned.add((i, cause))
        if say:
            skip = f"; skipped for {COOLDOWN_S:.0f} s" if down else ""
            log.warning(
                "%s: %s (%s): reading from the next account%s",
                self.label(i),
                cause,
                detail,
                skip,
            )

    def line(self, counts: Sequence[int], container: str) -> str:
        """Bodies of one container served per account, for the sync's log."""
        parts = [
            f"{self.label(i)}: {counts[i]}"
            + (f" ({self.fallbacks[i]} fallbacks)" if self.fallbacks[i] else "")
            for i in range(len(self.accounts))
        ]
        return f"asset bodies per account ('{container}'): " + ", ".join(parts)

    def record(self) -> dict[str, int]:
        """Bodies served per account URL (for the sync summary)."""
        return {self.accounts[i].account_url: self.counts[i] for i in range(len(self.accounts))}


class ReplicaReader:
    """One container's bodies through a ReplicaSet: a Fetcher per account (QUICK tries),
    sharing the primary Fetcher's range threads and buffers; the primary Fetcher itself is
    the last resort."""

    def __init__(self, primary: Fetcher, replicas: ReplicaSet, connections: int) -> None:
        self.primary = primary
        self.set = replicas
        self.connections = connections
        self.counts = [0] * len(replicas.accounts)  # this container's bodies per account
        self._quick: dict[int, Fetcher] = {}
        self._lock = threading.Lock()
        replicas.announce()

    def _fetcher(self, i: int) -> Fetcher:
        with self._lock:
            f = self._quick.get(i)
            if f is None:
                from node_agent.sync.fetch import Fetcher

                f = Fetcher(
                    self.set.accounts[i],
                    self.primary.container,
                    connections=self.connections,
                    retry=QUICK,
                    shared=self.primary,
                )
                self._quick[i] = f
            return f

    def close(self) -> None:
        for f in self._quick.values():
            f.close()
        log.info("%s", self.set.line(self.counts, self.primary.container))

    def fetch(
        self,
        name: str,
        size: int,
        md5: bytes | None,
        tmp: Path,
        etag: str | None,
        sha256: str | None,
        what: str,
    ) -> Fetched:
        want_sha = sha256 or content_address(name)
        if md5 is not None or want_sha is not None:  # else a replica's bytes cannot be checked
            for i in self.set.candidates():
                got = self._try(i, name, size, md5, want_sha, tmp, etag, what)
                if got is not None:
                    self._served(i)
                    return got
                tmp.unlink(missing_ok=True)  # nothing of a failed account is kept
        got = self.primary._fetch_pinned(name, size, md5, etag, tmp, what)
        self._served(0)
        return got

    def _served(self, i: int) -> None:
        self.set.served(i)
        with self._lock:
            self.counts[i] += 1

    def _try(
        self,
        i: int,
        name: str,
        size: int,
        md5: bytes | None,
        want_sha: str | None,
        tmp: Path,
        etag: str | None,
        what: str,
    ) -> Fetched | None:
        """The body from account `i` (QUICK tries), verified; None: try the next account."""
        f = self._fetcher(i)
        # the primary's own version is pinned; a replica's ETags are its own
        pinned = etag if i == 0 else None
        try:
            got = f._fetch(name, size, md5, pinned, tmp, what)
        except _Changed as e:
            if i == 0:  # the primary changed: its full path fetches the new version
                return None
            cause = "mismatch" if e.corrupt else "changed while read"
            detail = "its bytes do not match the primary's Content-MD5" if e.corrupt else what
            self.set.failed(i, cause, f"{what}: {detail}", down=False)
            return None
        except NotFound as e:
            self.set.failed(i, "not found", str(e), down=False)
            return None
        except AccessDenied as e:
            self.set.failed(i, "access denied", str(e), down=True)
            return None
        except StorageError as e:
            if ": not found (" in str(e):  # the SDK path's 404 (managed identity)
                self.set.failed(i, "not found", str(e), down=False)
                return None
            if "got " in str(e) and "expected" in str(e):  # the size check of Fetcher._fetch
                self.set.failed(i, "mismatch", str(e), down=False)
                return None
            self.set.failed(i, "unavailable", str(e), down=True)
            return None
        if want_sha is not None and got.sha256 != want_sha:
            self.set.failed(
                i,
                "mismatch",
                f"{what}: its bytes do not match the sha256 {want_sha[:12]}",
                down=False,
            )
            return None
        return replace(got, etag=etag or got.etag, changed=False, content_md5=md5)
