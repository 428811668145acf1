#!/usr/bin/env python3
"""Scale benchmark: a herd of N nodes starting one job at once against one throttled account.

Each node is a real `node-agent job-prep` process with its own Batch node layout
(AZ_BATCH_* folders and variables, as tests/helpers/node.py and the local pool give a node),
its own node cache, and the same job: every node fetches the whole asset set, as 1,000 fresh
render nodes do when a job starts. All of them talk to one Azurite through
bench/throttle_proxy.py, which answers `503 ServerBusy` above `--rate` requests/s (and
`--egress-mbps`, if given), as an Azure storage account does over its scalability targets.

What it reports per herd size (docs/scale.md reads it):
  total time (first start to last exit), requests admitted, 503s answered, bytes per node,
  fairness (fastest and slowest node), the throttle's own bound (ideal = admitted requests /
  rate) and the ratio of the total to it, how well the herd kept the throttle busy
  (admitted per second while it was saturated), and, per request, how many 503s it met and
  how long it waited before getting through (the client's retries seen from the server).
The herd "does not collapse" when every node succeeds, 503s stay a bounded multiple of the
admitted requests, and the total stays within 1.5x of the ideal.

    make bench-scale                                   # N = 8,16,32, small dataset
    python bench/bench_scale.py --nodes 8 --files 60   # a quick check
    python bench/bench_scale.py --files 2000 --big 4 --big-mb 64 --rate 200   # bigger

The machine's own bound is measured too (`--baseline`, on by default): the same herd with no
throttle. When that is close to the throttled time, the throttle is not what bounds the run and
the rate should be lowered (or the machine is busy).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
PY = sys.executable

from bench_sync import unmount_all  # noqa: E402
from throttle_proxy import ThrottleProxy  # noqa: E402

CONTAINER = "scale"
PREFIX = "job/"
JOB = "scalejob"


@dataclass
class NodeRun:
    node: int
    seconds: float
    cpu_s: float
    exit_code: int
    fetched: int | None  # bytes the job prep says it downloaded
    tail: str = ""


def node_env(root: Path, node: int, isolation: str) -> dict[str, str]:
    """What Batch gives a job preparation task on node `node` rooted at `root`."""
    task = root / "workitems" / JOB / "job-1" / "jobpreparation"
    for d in (root / "shared", root / "startup", root / "fsmounts", task / "wd"):
        d.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZ_BATCH_")}
    env.update(
        AZ_BATCH_NODE_ROOT_DIR=str(root),
        AZ_BATCH_NODE_SHARED_DIR=str(root / "shared"),
        AZ_BATCH_NODE_STARTUP_DIR=str(root / "startup"),
        AZ_BATCH_NODE_MOUNTS_DIR=str(root / "fsmounts"),
        AZ_BATCH_NODE_ID=f"tvmps_scale_{node:04d}",
        AZ_BATCH_POOL_ID="scalepool",
        AZ_BATCH_JOB_ID=JOB,
        AZ_BATCH_TASK_ID="jobpreparation",
        AZ_BATCH_TASK_DIR=str(task),
        AZ_BATCH_TASK_WORKING_DIR=str(task / "wd"),
    )
    if isolation:
        env["NODE_AGENT_VIEW_ISOLATION"] = isolation
    return env


def spec_doc(account_url: str, scene: str, retry_s: float) -> dict[str, object]:
    return {
        "job_id": JOB,
        "storage": {"account_url": account_url, "auth": {"kind": "emulator"}},
        "assets": [{"name": "scene", "container": CONTAINER, "prefix": PREFIX}],
        "render": {"renderer": "blender", "scene": scene, "frames": "1"},
        "policies": {
            "free_space_reserve_mb": 0,
            "missing_dependencies": "warn",
            "storage_retry_s": retry_s,
        },
    }


def seed(account_url: str, files: int, size: int, big: int, big_mb: int) -> tuple[str, int]:
    """Upload the job's assets straight to Azurite (not through the proxy); returns the scene
    name and the asset bytes."""
    from node_agent.redact import Redactor
    from node_agent.spec import Storage
    from node_agent.storage import BlobStore

    storage = Storage.model_validate({"account_url": account_url, "auth": {"kind": "emulator"}})
    store = BlobStore(storage, Redactor())
    store.ensure_container(CONTAINER)
    cc = store.container(CONTAINER)
    blobs = {f"{PREFIX}tex/t{i // 100:03d}/{i:06d}.bin": size for i in range(files)}
    blobs |= {f"{PREFIX}scene/big{i:02d}.bin": big_mb * 1024 * 1024 for i in range(big)}

    def one(item: tuple[str, int]) -> None:
        cc.upload_blob(item[0], os.urandom(item[1]), overwrite=True, max_concurrency=4)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, blobs.items()))
    return next(iter(blobs))[len(PREFIX) :], sum(blobs.values())


def run_node(
    cmd: list[str], env: dict[str, str], log: Path, out: list[NodeRun], i: int, home: Path
) -> None:
    t0 = time.monotonic()
    with open(log, "wb") as fh:
        p = subprocess.Popen(cmd, env=env, cwd=home, stdout=fh, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - t0
    text = log.read_text(errors="replace")
    m = re.search(r"downloaded \(([\d.]+) MB\)", text)
    fetched = int(float(m.group(1)) * 1e6) if m else None
    tail = "" if p.returncode == 0 else text[-600:]
    out[i] = NodeRun(i, seconds, ru.ru_utime + ru.ru_stime, p.returncode, fetched, tail)


def herd(
    args: argparse.Namespace,
    az_url: str,
    work: Path,
    n: int,
    scene: str,
    rate: float,
    *,
    unthrottled: bool = False,
) -> dict[str, Any]:
    """N job preps at once, each on a fresh node, through a proxy throttling at `rate` (and
    the egress limit, unless `unthrottled`)."""
    egress = 0.0 if unthrottled else args.egress_mbps * 1e6 / 8
    proxy = ThrottleProxy(az_url, n, rate=rate, burst=args.burst, egress_bps=egress)
    base = work / f"herd-{n}-{'free' if not rate else int(rate)}"
    try:
        cmds = []
        for i in range(n):
            root = base / f"node{i:03d}"
            spec = root / "spec.json"
            env = node_env(root, i, args.isolation)
            if args.home:  # job prep from another checkout (a change measured against this one)
                env["PYTHONPATH"] = str(args.home)
                env["NODE_AGENT_HOME"] = str(args.home)
            spec.write_text(json.dumps(spec_doc(proxy.url(i), scene, args.retry_s)))
            cmds.append(([PY, "-m", "node_agent", "job-prep", "--spec", str(spec)], env, root))
        runs: list[NodeRun] = [NodeRun(i, 0, 0, -1, None) for i in range(n)]
        proxy.reset()
        t0 = time.monotonic()
        threads = [
            threading.Thread(
                target=run_node, args=(c, e, r / "job-prep.log", runs, i, args.home or REPO)
            )
            for i, (c, e, r) in enumerate(cmds)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = time.monotonic() - t0
        return summarize(proxy, runs, total, rate, n, egress)
    finally:
        proxy.close()
        unmount_all(base)
        shutil.rmtree(base, ignore_errors=True)


def summarize(
    proxy: ThrottleProxy, runs: list[NodeRun], total: float, rate: float, n: int, egress: float
) -> dict[str, Any]:
    st = proxy.stats
    admitted = sum(s.admitted for s in st)
    busy = sum(s.busy for s in st)
    waits = sorted(w for s in st for w in s.waits)
    secs = [proxy.timeline[k] for k in sorted(proxy.timeline)]
    # seconds in which the throttle refused someone: demand exceeded the rate
    saturated = [a for a, b in secs if b > 0]
    times = [r.seconds for r in runs]
    sent = sum(s.bytes_out for s in st)
    # the throttle's own bound: the slower of its request rate and its egress
    ideal = max(admitted / rate if rate else 0.0, sent / egress if egress else 0.0)
    row: dict[str, Any] = {
        "nodes": n,
        "rate": rate or None,
        "ok": sum(1 for r in runs if r.exit_code == 0),
        "failed": [
            {"node": r.node, "exit": r.exit_code, "tail": r.tail} for r in runs if r.exit_code
        ],
        "total_s": round(total, 2),
        "admitted": admitted,
        "busy_503": busy,
        "busy_per_admitted": round(busy / admitted, 3) if admitted else None,
        "ideal_s": round(ideal, 2) if ideal else None,
        "ratio_to_ideal": round(total / ideal, 3) if ideal else None,
        "egress_bps": egress or None,
        "admitted_per_s_saturated": round(statistics.median(saturated), 1) if saturated else None,
        "peak_503_per_s": max((b for _a, b in secs), default=0),
        "requests_retried": sum(s.retried for s in st),
        "max_503_one_request": max((s.max_busy_per_request for s in st), default=0),
        "wait_p50_s": round(waits[len(waits) // 2], 2) if waits else 0.0,
        "wait_p99_s": round(waits[int(len(waits) * 0.99)], 2) if waits else 0.0,
        "wait_max_s": round(waits[-1], 2) if waits else 0.0,
        "node_min_s": round(min(times), 2),
        "node_max_s": round(max(times), 2),
        "fairness_min_over_max": round(min(times) / max(times), 3) if max(times) else None,
        "node_cpu_median_s": round(statistics.median(r.cpu_s for r in runs), 2),
        "bytes_per_node_median": int(statistics.median(s.bytes_out for s in st)),
        "fetched_per_node": sorted({r.fetched for r in runs if r.fetched is not None}),
        "timeline": secs,  # [admitted, 503s] per second since the herd started
    }
    return row


def fmt(row: dict[str, Any]) -> str:
    free = row.get("unthrottled_s")
    return (
        f"N={row['nodes']:>3} ok {row['ok']}/{row['nodes']} | total {row['total_s']:6.1f}s"
        f" ideal {row['ideal_s'] or 0:6.1f}s ({row['ratio_to_ideal'] or 0:.2f}x)"
        f" | req {row['admitted']:6d} 503 {row['busy_503']:6d}"
        f" ({row['busy_per_admitted'] or 0:.2f}/req, peak {row['peak_503_per_s']}/s)"
        f" | busy-rate {row['admitted_per_s_saturated'] or 0:.0f}/s"
        f" | 503s/req max {row['max_503_one_request']} wait p99 {row['wait_p99_s']}s"
        f" max {row['wait_max_s']}s | node {row['node_min_s']:.1f}-{row['node_max_s']:.1f}s"
        f" ({row['fairness_min_over_max'] or 0:.2f}) | {row['bytes_per_node_median'] / 1e6:.1f}"
        f" MB/node" + (f" | no throttle {free:.1f}s" if free else "")
    )


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--nodes", default="8,16,32", help="comma list of herd sizes")
    ap.add_argument("--files", type=int, default=150, help="small files per job")
    ap.add_argument("--size", type=int, default=16_384, help="bytes per small file")
    ap.add_argument("--big", type=int, default=1, help="big files per job (ranged GETs)")
    ap.add_argument("--big-mb", type=int, default=24)
    ap.add_argument("--rate", type=float, default=100.0, help="account requests/s (503 above)")
    ap.add_argument("--burst", type=float, default=0.0, help="token bucket size (rate/10)")
    ap.add_argument("--egress-mbps", type=float, default=0.0, help="account egress (0: none)")
    ap.add_argument("--retry-s", type=float, default=60.0, help="policies.storage_retry_s")
    ap.add_argument("--isolation", default="", help="NODE_AGENT_VIEW_ISOLATION (default auto)")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument(
        "--home", type=Path, default=None, help="run job prep from this checkout instead"
    )
    ap.add_argument("--no-baseline", action="store_true", help="skip the unthrottled herd")
    ap.add_argument("--note", default="", help="free text saved with the results (load...)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args()

    from node_agent.azurite import AzuriteServer

    sizes = [int(x) for x in args.nodes.split(",") if x]
    load_before = os.getloadavg()
    t_start = time.monotonic()
    rows: list[dict[str, Any]] = []
    with AzuriteServer() as az, tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        try:
            print(
                f"seeding: {args.files} x {args.size} B + {args.big} x {args.big_mb} MB", flush=True
            )
            scene, asset_bytes = seed(az.account_url, args.files, args.size, args.big, args.big_mb)
            for n in sizes:
                for _rep in range(args.reps):
                    free = None
                    if not args.no_baseline:
                        free = herd(args, az.account_url, work, n, scene, 0.0, unthrottled=True)
                    row = herd(args, az.account_url, work, n, scene, args.rate)
                    if free is not None:
                        row["unthrottled_s"] = free["total_s"]
                        row["unthrottled_ok"] = free["ok"]
                    row["load_during"] = [round(x, 2) for x in os.getloadavg()]
                    rows.append(row)
                    print(fmt(row), flush=True)
                    for f in row["failed"][:3]:
                        print(
                            f"  node {f['node']} exit {f['exit']}: {f['tail'][-300:]}", flush=True
                        )
        finally:
            unmount_all(work)
    doc = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "note": args.note,
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "asset_bytes_per_node": asset_bytes,
        "total_s": round(time.monotonic() - t_start, 1),
        "results": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"scale-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(doc, indent=2))
    print("\n".join(fmt(r) for r in rows))
    shown = path.resolve()
    print(f"results: {shown.relative_to(REPO) if shown.is_relative_to(REPO) else shown}")


if __name__ == "__main__":
    main()
