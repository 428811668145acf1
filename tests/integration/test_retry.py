"""The one storage retry policy (storage.retry), against a real Azurite behind a flaky proxy:
N failures then success succeed after N+1 tries; failure beyond the budget is one line
(StorageError, exit 4); and a failing upload reaches storage exactly the policy's tries,
not tries x the SDK's own retries (no retry nested in another)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from helpers import make_spec_doc, node_env, run_agent
from helpers.proxy import Rule, StorageProxy

from node_agent.azurite import AzuriteServer
from node_agent.errors import ExitCode, StorageError, UploadError
from node_agent.outputs import Retry, upload_with_retry
from node_agent.redact import Redactor
from node_agent.spec import spec_from_data
from node_agent.storage import BlobStore
from node_agent.sync import fetch
from node_agent.sync.access import Access


@pytest.fixture
def flaky(azurite: AzuriteServer) -> Iterator[Callable[[Rule, int], StorageProxy]]:
    made: list[StorageProxy] = []

    def make(rule: Rule, fails: int) -> StorageProxy:
        made.append(StorageProxy(azurite.account_url, busy=rule, fails=fails))
        return made[-1]

    yield make
    for p in made:
        p.close()


def _store(url: str) -> BlobStore:
    return BlobStore(spec_from_data(make_spec_doc(url)).storage, Redactor())


def _blob_put(name: str) -> Rule:
    return lambda method, path: method == "PUT" and path.endswith("/" + name)


def test_upload_fails_twice_then_succeeds_after_three_tries(
    tmp_path: Path, store: BlobStore, flaky: Callable[[Rule, int], StorageProxy]
) -> None:
    store.ensure_container("retry-up")
    proxy = flaky(_blob_put("ok.png"), 2)
    src = tmp_path / "ok.png"
    src.write_bytes(b"frame bytes")
    upload_with_retry(
        _store(proxy.url), src, "retry-up", "t1/ok.png", {}, Retry(first_delay_s=0.05)
    )
    assert proxy.count("PUT", "/t1/ok.png") == 3
    assert store.read_blob("retry-up", "t1/ok.png") == b"frame bytes"


def test_one_failing_upload_reaches_storage_exactly_the_policys_tries(
    tmp_path: Path, store: BlobStore, flaky: Callable[[Rule, int], StorageProxy]
) -> None:
    """No retry nested in another: 3 policy tries are 3 requests, not 3 x (1 + the SDK's
    retry_total). Fails on code whose SDK client retries inside the upload loop."""
    store.ensure_container("retry-up")
    proxy = flaky(_blob_put("busy.png"), -1)
    src = tmp_path / "busy.png"
    src.write_bytes(b"frame bytes")
    with pytest.raises(UploadError) as e:
        upload_with_retry(
            _store(proxy.url),
            src,
            "retry-up",
            "t1/busy.png",
            {},
            Retry(attempts=3, first_delay_s=0.05),
        )
    assert e.value.exit_code == ExitCode.UPLOAD
    assert "after 3 attempts" in str(e.value) and len(str(e.value).splitlines()) == 1
    assert proxy.count("PUT", "/t1/busy.png") == 3


def test_sdk_calls_run_under_the_policy(
    tmp_path: Path, store: BlobStore, flaky: Callable[[Rule, int], StorageProxy]
) -> None:
    """BlobStore (job release's log uploads, submit, push): N failures then success take
    N+1 requests; a refusal (404) is not retried."""
    store.ensure_container("retry-sdk")
    proxy = flaky(_blob_put("log.txt"), 2)
    src = tmp_path / "log.txt"
    src.write_text("log")
    via = _store(proxy.url)
    via.retry = Retry(first_delay_s=0.05)
    via.upload_file(src, "retry-sdk", "j/log.txt")
    assert proxy.count("PUT", "/j/log.txt") == 3
    with pytest.raises(StorageError, match="not found"):
        via.read_blob("retry-sdk", "j/missing.txt")
    assert proxy.count("GET", "/j/missing.txt") == 1


def test_fetch_fails_three_times_then_succeeds(
    tmp_path: Path, store: BlobStore, flaky: Callable[[Rule, int], StorageProxy]
) -> None:
    store.ensure_container("retry-get")
    store.container("retry-get").upload_blob("a.bin", b"x" * 1000, overwrite=True)
    proxy = flaky(lambda m, p: m == "GET" and p.endswith("/a.bin"), 3)
    spec = spec_from_data(make_spec_doc(proxy.url))
    f = fetch.Fetcher(Access(spec.storage, Redactor()), "retry-get", connections=2, retry_s=0)
    f.rest.retry = Retry(attempts=4, first_delay_s=0.05)
    try:
        got = f.fetch("a.bin", 1000, None, tmp_path / "a")
    finally:
        f.close()
    assert got.size == 1000 and not got.changed
    assert proxy.count("GET", "/a.bin") == 4


def test_storage_busy_beyond_the_budget_is_one_line_exit_4(
    tmp_path: Path, store: BlobStore, flaky: Callable[[Rule, int], StorageProxy]
) -> None:
    """Job prep against storage answering 503 ServerBusy to everything,
    policies.storage_retry_s 2: exit 4 with one line saying how long it tried, within 10x
    the budget (throttling: storage.retry.THROTTLED_FACTOR) plus one wait."""
    proxy = flaky(lambda m, p: True, -1)
    doc = make_spec_doc(proxy.url)
    doc["job_id"] = "busy-job"
    doc.setdefault("policies", {})["storage_retry_s"] = 2  # type: ignore[union-attr]
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(doc))
    t0 = time.monotonic()
    res = run_agent(
        ["job-prep", "--spec", str(spec)], node_env(tmp_path / "node", "busy-job"), timeout=300
    )
    took = time.monotonic() - t0
    assert res.returncode == ExitCode.STORAGE == 4, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("node-agent:")]
    assert len(errors) == 1 and "storage answered 503" in errors[0], res.stderr
    assert "attempts over" in errors[0] and "Traceback" not in res.stderr
    assert took < 45, took  # 20 s (10 x 2 s), then at most one 12 s wait, + start-up
