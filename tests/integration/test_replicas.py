"""`storage.replicas` (issue 16): each node reads asset bodies from the account its node id
picks, falls back to the next on failure, throttling, 404 (a lagging replica) and bytes that
do not match the primary's listing; the listing always comes from the primary.

Three real Azurite processes (the session's, the primary, and two more started here, each
with its own data folder); job prep runs as a process, as on a node."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import make_spec, node_env, run_agent, seed
from helpers.throttle import ThrottleProxy

from node_agent.azurite import AZURITE_KEY, AzuriteServer, free_port
from node_agent.redact import Redactor
from node_agent.spec import spec_from_data
from node_agent.storage import BlobStore
from node_agent.sync.replicas import pick

C = "replicated"
FILES = {f"p/f{i:02}.bin": os.urandom(2000 + i) for i in range(12)}
FILES["p/scene.blend"] = b"scene"
BIG = os.urandom(3 * 1024 * 1024)  # ranged on the lean path (above fetch.SMALL)


@pytest.fixture(scope="module")
def extra() -> Iterator[list[AzuriteServer]]:
    """Two more Azurite processes: the replicas."""
    servers: list[AzuriteServer] = []
    try:
        for _ in range(2):
            servers.append(AzuriteServer().start())
        yield servers
    finally:
        for s in servers:
            s.cleanup()


@pytest.fixture
def proxies() -> Iterator[list[ThrottleProxy]]:
    made: list[ThrottleProxy] = []
    yield made
    for p in made:
        p.close()


def _store(url: str) -> BlobStore:
    doc = make_spec(url, C, "p/")
    return BlobStore(spec_from_data(doc).storage, Redactor())


def _seed_all(urls: list[str], files: dict[str, bytes], container: str) -> None:
    for url in urls:
        seed(_store(url), container, files)


def _node_for(account: int, n: int) -> str:
    """A node id that picks account `account` (0: the primary) out of `n`."""
    return next(f"tvmps_{i}" for i in range(1000) if pick(f"tvmps_{i}", n) == account)


def _prep(
    tmp_path: Path, primary: str, replicas: list[object], node_id: str, job: str, **extra: object
) -> tuple[int, str, Path, float]:
    container = str(extra.pop("container", C))
    prefix = str(extra.pop("prefix", "p/"))
    doc = make_spec(primary, container, prefix, job, **extra)
    doc["storage"]["replicas"] = replicas  # type: ignore[index]
    spec = tmp_path / f"{job}.yaml"
    spec.write_text(yaml.safe_dump(doc))
    root = tmp_path / f"node-{node_id}"
    env = node_env(root, job)
    env["AZ_BATCH_NODE_ID"] = node_id
    t0 = time.monotonic()
    res = run_agent(["job-prep", "--spec", str(spec)], env)
    view = root / "shared" / "node_agent" / "jobs" / job / "assets"
    return res.returncode, res.stdout + res.stderr, view, time.monotonic() - t0


def _counts(log: str) -> dict[str, int]:
    """account URL -> bodies it served, from the 'asset bodies per account' line."""
    lines = [ln for ln in log.splitlines() if "asset bodies per account (" in ln]
    assert len(lines) == 1, log
    return {
        url: int(n) for url, n in re.findall(r"(?:primary|replica \[\d\]) (\S+): (\d+)", lines[0])
    }


def _view(view: Path) -> dict[str, bytes]:
    return {p.relative_to(view).as_posix(): p.read_bytes() for p in view.rglob("*") if p.is_file()}


def _want(files: dict[str, bytes]) -> dict[str, bytes]:
    return {k.removeprefix("p/"): v for k, v in files.items()}


def _warnings(log: str) -> list[str]:
    """The sync's warnings about accounts (not preflight's about the stand-in scene)."""
    return [ln for ln in log.splitlines() if " WARNING " in ln and "preflight:" not in ln]


def test_nodes_read_from_the_replica_their_id_picks(
    tmp_path: Path, azurite: AzuriteServer, extra: list[AzuriteServer]
) -> None:
    urls = [azurite.account_url] + [s.account_url for s in extra]
    files = {**FILES, "p/big.bin": BIG}
    _seed_all(urls, files, "rep-pick")
    for account in (1, 2):
        node = _node_for(account, 3)
        rc, log, view, _ = _prep(
            tmp_path, urls[0], urls[1:], node, f"pick-{account}", container="rep-pick"
        )
        assert rc == 0, log
        assert _view(view) == _want(files)
        assert f"asset bodies: reading from replica [{account - 1}] {urls[account]}" in log
        counts = _counts(log)
        assert counts[urls[account]] == len(files), counts
        assert sum(counts.values()) == len(files)
        assert _warnings(log) == []
        # the job prep's sync summary (the task's sync-summary.json) records the same counts
        job = f"pick-{account}"
        summary = tmp_path / f"node-{node}" / "workitems" / job / "job-1" / "jobpreparation"
        record = json.loads((summary / "sync-summary.json").read_text())
        assert record["bodies_by_account"] == counts, record


def test_a_replica_that_is_down_falls_back_to_the_next(
    tmp_path: Path, azurite: AzuriteServer, extra: list[AzuriteServer]
) -> None:
    down = f"http://127.0.0.1:{free_port()}/devstoreaccount1"  # nothing listens there
    urls = [azurite.account_url, down, extra[1].account_url]
    _seed_all([urls[0], urls[2]], FILES, "rep-down")
    rc, log, view, took = _prep(
        tmp_path, urls[0], urls[1:], _node_for(1, 3), "down", container="rep-down"
    )
    assert rc == 0, log
    assert _view(view) == _want(FILES)
    warns = _warnings(log)
    assert len(warns) == 1, warns
    assert down in warns[0] and "unavailable" in warns[0] and "refused" in warns[0]
    counts = _counts(log)
    assert counts[down] == 0 and counts[urls[2]] == len(FILES), counts
    assert took < 30, took


def test_a_throttling_replica_falls_back_in_bounded_time(
    tmp_path: Path,
    azurite: AzuriteServer,
    extra: list[AzuriteServer],
    proxies: list[ThrottleProxy],
) -> None:
    _seed_all([azurite.account_url, extra[0].account_url, extra[1].account_url], FILES, "rep-busy")
    busy = ThrottleProxy(extra[0].account_url, lambda m, p: m == "GET", refuse_s=None)
    proxies.append(busy)
    urls = [azurite.account_url, busy.url, extra[1].account_url]
    rc, log, view, took = _prep(
        tmp_path, urls[0], urls[1:], _node_for(1, 3), "busy", container="rep-busy"
    )
    assert rc == 0, log
    assert _view(view) == _want(FILES)
    warns = _warnings(log)
    assert len(warns) == 1 and busy.url in warns[0] and "503" in warns[0], warns
    counts = _counts(log)
    assert counts[busy.url] == 0 and counts[urls[2]] == len(FILES), counts
    # the spec's default budget would keep a throttled request waiting up to 600 s
    assert took < 30, took
    assert 1 <= len(busy.refused) <= 40, len(busy.refused)


def test_a_lagging_replica_404_falls_back(
    tmp_path: Path, azurite: AzuriteServer, extra: list[AzuriteServer]
) -> None:
    files = {**FILES, "p/new.bin": b"just uploaded"}
    _seed_all([azurite.account_url, extra[1].account_url], files, "rep-lag")
    lagging = {k: v for k, v in files.items() if k != "p/new.bin"}
    _seed_all([extra[0].account_url], lagging, "rep-lag")
    urls = [azurite.account_url, extra[0].account_url, extra[1].account_url]
    rc, log, view, _ = _prep(
        tmp_path, urls[0], urls[1:], _node_for(1, 3), "lag", container="rep-lag"
    )
    assert rc == 0, log
    assert _view(view) == _want(files)
    warns = _warnings(log)
    assert len(warns) == 1 and urls[1] in warns[0] and "not found" in warns[0], warns
    counts = _counts(log)
    assert counts[urls[1]] == len(files) - 1 and counts[urls[2]] == 1, counts


def test_a_replica_with_other_bytes_is_never_cached(
    tmp_path: Path, azurite: AzuriteServer, extra: list[AzuriteServer]
) -> None:
    good = b"the primary's bytes " * 10
    bad = b"another version!!!! " * 10  # same size: only Content-MD5 tells them apart
    files = {**FILES, "p/tex.png": good}
    _seed_all([azurite.account_url, extra[1].account_url], files, "rep-mm")
    _seed_all([extra[0].account_url], {**FILES, "p/tex.png": bad}, "rep-mm")
    urls = [azurite.account_url, extra[0].account_url, extra[1].account_url]
    rc, log, view, _ = _prep(
        tmp_path, urls[0], urls[1:], _node_for(1, 3), "mismatch", container="rep-mm"
    )
    assert rc == 0, log
    assert _view(view)["tex.png"] == good
    warns = _warnings(log)
    assert len(warns) == 1 and urls[1] in warns[0] and "mismatch" in warns[0], warns
    objects = tmp_path / f"node-{_node_for(1, 3)}" / "shared" / "node_agent" / "cache" / "objects"
    bad_sha = hashlib.sha256(bad).hexdigest()
    assert not (objects / bad_sha[:2] / bad_sha).exists()
    assert not any(p.read_bytes() == bad for p in objects.rglob("*") if p.is_file())


def _push(url: str, folder: Path, home: Path) -> str:
    env = {**os.environ, "XDG_CACHE_HOME": str(home)}
    args = ["assets", "push", str(folder), "--project", "shot", "--container", C]
    r = run_agent([*args, "--account-url", url], env, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout.split("manifest ")[-1].strip()


def test_manifest_content_is_read_from_the_replica_and_checked_by_sha256(
    tmp_path: Path, azurite: AzuriteServer, extra: list[AzuriteServer]
) -> None:
    ws = tmp_path / "ws"
    (ws / "tex").mkdir(parents=True)
    (ws / "scene.blend").write_bytes(b"pinned scene")
    for i in range(6):
        (ws / "tex" / f"t{i}.png").write_bytes(os.urandom(3000 + i))
    urls = [azurite.account_url] + [s.account_url for s in extra]
    pins = {_push(url, ws, tmp_path / f"home{i}") for i, url in enumerate(urls)}
    assert len(pins) == 1  # content-addressed: the same manifest everywhere
    pin = pins.pop()
    # replica [0] holds other bytes under one content address: refused by sha256
    victim = hashlib.sha256((ws / "tex" / "t0.png").read_bytes()).hexdigest()
    seed(_store(urls[1]), C, {f"shot/content/{victim}": os.urandom(3000)})
    for account in (1, 2):
        node = _node_for(account, 3)
        rc, log, view, _ = _prep(
            tmp_path, urls[0], urls[1:], node, f"pinned-{account}", manifest=pin, prefix="shot"
        )
        assert rc == 0, log
        want = {p.relative_to(ws).as_posix(): p.read_bytes() for p in ws.rglob("*") if p.is_file()}
        assert _view(view) == want
        counts = _counts(log)
        warns = _warnings(log)
        if account == 1:
            assert counts[urls[1]] == 6 and counts[urls[2]] == 1, counts
            assert len(warns) == 1 and "sha256" in warns[0] and urls[1] in warns[0], warns
        else:
            assert counts[urls[2]] == 7, counts
            assert warns == []


@pytest.mark.parametrize(
    ("replicas", "said"),
    [
        (
            ["https://r1.blob.core.windows.net/?sv=2021-08-06&sig=c2VjcmV0c2ln"],
            "storage.replicas[0].account_url: the URL of r1.blob.core.windows.net must not "
            "carry a SAS",
        ),
        (
            ["https://r1.blob.core.windows.net", "http://r2.example.com"],
            "storage.replicas[1].account_url: 'http://r2.example.com' must be https://",
        ),
        (
            ["http://127.0.0.1:10000/devstoreaccount1/"],
            "storage.replicas[0]: 'http://127.0.0.1:10000/devstoreaccount1' is account_url itself",
        ),
        (
            ["https://r1.blob.core.windows.net", "https://R1.blob.core.windows.net/"],
            "storage.replicas: [0] and [1] name the same account",
        ),
    ],
    ids=["sas", "plain-http", "primary-again", "twice"],
)
def test_replica_spec_errors_are_one_line_exit_2(
    tmp_path: Path, replicas: list[str], said: str
) -> None:
    doc = make_spec("http://127.0.0.1:10000/devstoreaccount1", C, "p/")
    doc["storage"]["replicas"] = replicas  # type: ignore[index]
    f = tmp_path / "job.yaml"
    f.write_text(yaml.safe_dump(doc))
    res = run_agent(["validate", str(f)])
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0], lines
    assert "c2VjcmV0c2ln" not in res.stderr + res.stdout


def test_a_replica_with_its_own_key(
    tmp_path: Path, azurite: AzuriteServer, extra: list[AzuriteServer]
) -> None:
    """Key kinds: each replica has its own `auth` (its own variable); one whose variable is
    not set is said before any sync, on every node (exit 2), never with a secret."""
    urls = [azurite.account_url, extra[0].account_url]
    _seed_all(urls, FILES, "rep-key")
    replica = {"account_url": urls[1], "auth": {"kind": "account_key", "env": "REPLICA_KEY"}}
    doc = make_spec(urls[0], "rep-key", "p/", "key")
    doc["storage"] = {
        "account_url": urls[0],
        "auth": {"kind": "account_key", "env": "PRIMARY_KEY"},
        "replicas": [replica],
    }
    spec = tmp_path / "key.yaml"
    spec.write_text(yaml.safe_dump(doc))
    node = _node_for(1, 2)
    env = node_env(tmp_path / "node", "key")
    env.update(AZ_BATCH_NODE_ID=node, PRIMARY_KEY=AZURITE_KEY)
    env.pop("REPLICA_KEY", None)
    res = run_agent(["job-prep", "--spec", str(spec)], env)
    assert res.returncode == 2, res.stderr
    assert "storage.replicas[0].auth.env: environment variable REPLICA_KEY is not set" in (
        res.stderr
    )
    assert AZURITE_KEY not in res.stdout + res.stderr
    env["REPLICA_KEY"] = AZURITE_KEY
    res = run_agent(["job-prep", "--spec", str(spec)], env)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log
    assert _counts(log) == {urls[0]: 0, urls[1]: len(FILES)}
    assert AZURITE_KEY not in log
