"""A throttled account must not fail job prep while the sync makes progress (docs/scale.md,
"What node_agent should change", change 1), and outage detection stays: against a real
Azurite behind a loopback proxy (helpers.throttle), job prep as a process.

- One blob answered 503 ServerBusy (or a plain 500) for 12 s under a 3 s
  policies.storage_retry_s, while the job's other blobs trickle in: job prep succeeds (the
  budget runs from the fetch's last success; a throttled request's is 10x).
- Nothing getting through: a plain 500 everywhere fails within the budget; ServerBusy
  everywhere fails after 10x the budget (storage_down for good: test_faults.py)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import make_spec_doc, node_env, run_agent
from helpers.sync import make_spec, seed
from helpers.throttle import ThrottleProxy

from node_agent.azurite import AzuriteServer
from node_agent.errors import ExitCode, StorageError
from node_agent.redact import Redactor
from node_agent.spec import spec_from_data
from node_agent.storage import BlobStore
from node_agent.storage.retry import RetryPolicy

BUDGET_S = 3  # policies.storage_retry_s: far below the 12 s the hot blob is refused
REFUSE_S = 12.0  # > the old give-up point, 4 tries: (1+2+4 s) x 0.5-1.5 jitter <= 10.5 s
OTHERS, PACE_S = 60, 0.3  # the other blobs come one at a time for ~18 s


@pytest.fixture
def proxies() -> Iterator[list[ThrottleProxy]]:
    made: list[ThrottleProxy] = []
    yield made
    for p in made:
        p.close()


def _job_prep(tmp_path: Path, url: str, job: str, prefix: str) -> tuple[int, str, float]:
    doc = make_spec(url, "throttle", prefix, job)
    doc["policies"] = {"storage_retry_s": BUDGET_S}
    spec = tmp_path / f"{job}.yaml"
    spec.write_text(yaml.safe_dump(doc))
    t0 = time.monotonic()
    res = run_agent(["job-prep", "--spec", str(spec)], node_env(tmp_path / "node", job))
    return res.returncode, res.stderr, time.monotonic() - t0


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "ServerBusy"), (500, "InternalError")],
    ids=["503-ServerBusy", "500-while-others-succeed"],
)
def test_throttled_request_keeps_waiting_while_others_succeed(
    tmp_path: Path,
    azurite: AzuriteServer,
    store: BlobStore,
    proxies: list[ThrottleProxy],
    status: int,
    code: str,
) -> None:
    """The account throttles one request far past the budget while it serves the job's
    other blobs (a herd's fair share): job prep waits it out and succeeds. Failed before
    the change: exit 4, "storage answered 503 (4 attempts over 5 s)"."""
    prefix = f"hot{status}/"
    files = {f"{prefix}a-hot.bin": b"h" * 4096, f"{prefix}scene.blend": b"scene"}
    files.update({f"{prefix}b-{i:03}.bin": bytes([i]) * 1024 for i in range(OTHERS)})
    seed(store, "throttle", files)
    hot = f"/{prefix}a-hot.bin"
    proxy = ThrottleProxy(
        azurite.account_url,
        lambda m, p: m == "GET" and p.endswith(hot),
        refuse_s=REFUSE_S,
        status=status,
        code=code,
        pace_s=PACE_S,
    )
    proxies.append(proxy)
    job = f"hot-{status}"
    rc, err, _took = _job_prep(tmp_path, proxy.url, job, prefix)
    assert rc == 0, err
    refused = proxy.refused
    assert len(refused) >= 4 and refused[-1] - refused[0] > BUDGET_S, refused
    view = tmp_path / "node" / "shared" / "node_agent" / "jobs" / job / "assets"
    got = {str(p.relative_to(view)): p.read_bytes() for p in view.rglob("*") if p.is_file()}
    assert got == {k[len(prefix) :]: v for k, v in files.items()}


def _attempts_over(err: str) -> float:
    errors = [ln for ln in err.splitlines() if ln.startswith("node-agent:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    m = re.search(r"\((\d+) attempts over (\d+) s\)", errors[0])
    assert m, errors[0]
    return float(m.group(2))


def test_non_throttle_5xx_with_nothing_getting_through_fails_within_the_budget(
    tmp_path: Path, azurite: AzuriteServer, proxies: list[ThrottleProxy]
) -> None:
    """Storage answering 500 to everything (the listing included: nothing gets through):
    an outage, not throttling; job prep fails on the spec's budget, not 10x it."""
    proxies.append(
        ThrottleProxy(
            azurite.account_url, lambda m, p: True, refuse_s=None, status=500, code="InternalError"
        )
    )
    rc, err, took = _job_prep(tmp_path, proxies[-1].url, "down-500", "any/")
    assert rc == ExitCode.STORAGE == 4, err
    assert "storage answered 500" in err
    assert BUDGET_S <= _attempts_over(err) < BUDGET_S + 13, err  # one more wait at most
    assert took < 45, took


def test_server_busy_with_nothing_getting_through_fails_after_ten_budgets(
    tmp_path: Path, azurite: AzuriteServer, proxies: list[ThrottleProxy]
) -> None:
    """ServerBusy to everything: the account is up and says "slow down", so a throttled
    request gets 10x the budget (30 s here), then job prep fails with one line, exit 4."""
    proxies.append(ThrottleProxy(azurite.account_url, lambda m, p: True, refuse_s=None))
    rc, err, took = _job_prep(tmp_path, proxies[-1].url, "down-busy", "any/")
    assert rc == ExitCode.STORAGE == 4, err
    assert "storage answered 503" in err
    assert 10 * BUDGET_S <= _attempts_over(err) < 10 * BUDGET_S + 13, err
    assert took < 75, took


@pytest.mark.parametrize(("status", "code", "ok"), [(503, "ServerBusy", True), (500, "", False)])
def test_sdk_upload_throttled_gets_ten_budgets(
    tmp_path: Path,
    store: BlobStore,
    azurite: AzuriteServer,
    proxies: list[ThrottleProxy],
    status: int,
    code: str,
    ok: bool,
) -> None:
    """The SDK path (uploads, job release, managed identity) too: PUTs refused for 1.5 s
    under a 0.3 s budget succeed when refused as 503 ServerBusy (3 s), fail as a plain 500."""
    store.ensure_container("throttle-up")
    proxies.append(
        ThrottleProxy(
            azurite.account_url,
            lambda m, p: m == "PUT" and p.endswith("/f.png"),
            refuse_s=1.5,
            status=status,
            code=code or "InternalError",
        )
    )
    via = BlobStore(spec_from_data(make_spec_doc(proxies[-1].url)).storage, Redactor())
    via.retry = RetryPolicy(first_delay_s=0.05, max_delay_s=0.2, budget_s=0.3)
    src = tmp_path / "f.png"
    src.write_bytes(b"frame")
    if ok:
        via.upload_file(src, "throttle-up", "t/f.png")
        assert store.read_blob("throttle-up", "t/f.png") == b"frame"
    else:
        with pytest.raises(StorageError, match="storage answered 500"):
            via.upload_file(src, "throttle-up", "t/f.png")
    assert len(proxies[-1].refused) >= 4
