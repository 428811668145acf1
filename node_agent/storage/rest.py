"""The lean Blob REST path: GETs, HEADs and listing pages of one container over one urllib3
connection pool, authenticated by a container SAS (storage.credentials.container_sas).

Why not the SDK here: measured for job prep's sync, the SDK costs ~0.7 ms of CPU per listed
blob (model deserialization), ~2 ms per small download and ~0.6 s to import; this path a
fraction of that. It is used by sync/fetch.py (which adds version pinning and parallel
ranges on top); everything else goes through storage.blob. Every request runs under the one
storage.retry policy; urllib3's own retries are off (`retries=False`).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import NamedTuple
from urllib.parse import quote, unquote
from xml.etree import ElementTree

import urllib3

from node_agent.errors import StorageError, network_reason
from node_agent.logs import get_logger
from node_agent.storage.retry import RetryPolicy, is_throttled, throttled_answer

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})

log = get_logger("sync")


class Listed(NamedTuple):
    name: str
    size: int
    etag: str
    md5: bytes | None


class VersionChanged(Exception):
    """The blob is not the version being fetched: a 412 on If-Match, or (`corrupt`) only
    its Content-MD5 said so."""

    def __init__(self, etag: str, *, corrupt: bool = False) -> None:
        super().__init__(etag)
        self.etag = etag
        self.corrupt = corrupt


class _Unavailable(StorageError):
    """A try that failed in a way worth retrying (no answer, 429, 5xx): `problem` says how."""

    def __init__(self, problem: str, *, throttled: bool = False) -> None:
        super().__init__(said(problem), transient=True)
        self.problem = problem
        self.throttled = throttled  # 503 ServerBusy or 429: storage.retry gives it 10x


class NotFound(StorageError):
    """404: no such blob (or container) there; a replica that has not caught up yet says
    this for a blob the primary lists (sync/replicas.py)."""


class AccessDenied(StorageError):
    """401/403: the credential was refused. The caller that knows the spec's storage names
    the credential (storage.credentials.denied); this text is the fallback."""

    def __init__(self, what: str, status: int, code: str) -> None:
        super().__init__(f"{what}: access denied ({status} {code}; check storage.auth)")
        self.what, self.status, self.code = what, status, code


class RestClient:
    """One container's blobs over the lean path."""

    def __init__(
        self,
        account_url: str,
        container: str,
        sas: str,
        retry: RetryPolicy,
        *,
        connections: int = 32,
        warn: bool = True,
    ) -> None:
        """`warn`: log the first retry (off where the caller says what it does instead)."""
        self.container = container
        self.sas = sas
        self.retry = retry
        self._warned = not warn  # one warning per source synced, not one per request in flight
        base = f"{account_url}/{container}"
        self.path = urllib3.util.parse_url(base).path or ""
        self.pool = urllib3.connection_from_url(
            base,
            maxsize=connections,
            block=True,
            retries=False,  # storage.retry retries, never urllib3 inside it
            timeout=urllib3.Timeout(connect=10, read=300),
        )

    def close(self) -> None:
        self.pool.close()

    def url(self, name: str) -> str:
        return f"{self.path}/{quote(name, safe='/')}?{self.sas}"

    def request(
        self, url: str, headers: dict[str, str] | None, what: str, method: str = "GET"
    ) -> urllib3.BaseHTTPResponse:
        """One request under the retry policy: connection errors and 429/5xx are retried, so
        a storage outage of a few seconds (a restarted front end, a throttling burst) costs
        time, not the phase. 412 (If-Match failed) is VersionChanged; 404/403/other answers
        are a StorageError at once."""

        def attempt() -> urllib3.BaseHTTPResponse:
            try:
                r = self.pool.request(method, url, headers=headers, preload_content=True)
            except (urllib3.exceptions.HTTPError, OSError) as e:
                raise _Unavailable(network_reason(str(e))) from None
            if r.status in (200, 206):
                return r
            if r.status == 412:  # If-Match: the blob is no longer that version
                raise VersionChanged((headers or {}).get("If-Match", "").strip('"'))
            if r.status in RETRY_STATUS:
                code = r.headers.get("x-ms-error-code") or ""
                busy = throttled_answer(r.status, code)
                # the code tells throttling (ServerBusy, OperationTimeout) from an outage
                raise _Unavailable(f"{r.status} {code}".rstrip(), throttled=busy)
            code = r.headers.get("x-ms-error-code", "")
            if r.status == 404:
                raise NotFound(f"{what}: not found ({code or 404})")
            if r.status in (401, 403):
                raise AccessDenied(what, r.status, code)
            raise StorageError(f"{what}: storage answered {r.status} {code}".rstrip())

        def warn(err: BaseException, _tries: int, _delay: float) -> None:
            if not self._warned:
                self._warned = True
                factor = self.retry.throttled_factor if is_throttled(err) else 1.0
                budget = self.retry.budget_s * factor
                how = "until nothing has got through for" if self.retry.liveness else "for up to"
                log.warning("%s: %s; retrying %s %.0f s", what, err, how, budget)

        def spent(err: BaseException, tries: int, seconds: float) -> BaseException:
            # still `transient`: a caller with another account to read from moves on
            return StorageError(
                f"{what}: {err} ({tries} attempts over {seconds:.0f} s)", transient=True
            )

        return self.retry.call(attempt, retry_on=_Unavailable, on_retry=warn, gave_up=spent)

    def list(self, prefix: str) -> Iterator[Listed]:
        """The container's blobs under `prefix`, page by page."""
        marker = ""
        what = f"listing container '{self.container}' prefix '{prefix}'"
        while True:
            url = (
                f"{self.path}?restype=container&comp=list&maxresults=5000"
                f"&prefix={quote(prefix, safe='')}&marker={quote(marker, safe='')}&{self.sas}"
            )
            root = ElementTree.fromstring(self.request(url, None, what).data)
            for el in root.iter("Blob"):
                yield _entry(el)
            marker = root.findtext("NextMarker") or ""
            if not marker:
                return


def said(problem: str) -> str:
    """'storage answered 503 ServerBusy' for a status (and its error code),
    'storage is unreachable (connection refused)' else."""
    if problem.split(" ", 1)[0].isdigit():
        return f"storage answered {problem}"
    return f"storage is unreachable ({problem})"


def _entry(b: ElementTree.Element) -> Listed:
    name_el = b.find("Name")
    name = (name_el.text or "") if name_el is not None else ""
    if name_el is not None and name_el.get("Encoded") == "true":
        name = unquote(name)
    props = b.find("Properties")
    get = props.findtext if props is not None else (lambda _k: None)
    md5 = get("Content-MD5")
    return Listed(
        name,
        int(get("Content-Length") or 0),
        (get("Etag") or "").strip('"'),
        base64.b64decode(md5) if md5 else None,
    )
