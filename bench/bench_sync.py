#!/usr/bin/env python3
"""Asset sync benchmark: node_agent sync vs rclone copy vs a plain azure-storage-blob loop.

Starts its own Azurite on a free port, seeds the datasets, then for each scenario runs
the tools alternately (order rotated each repetition), after one warm-up, and reports
medians of wall time and client CPU-seconds (user+sys of the tool's process), bytes
fetched, and ratios to rclone. Writes JSON under bench/results/.

    make bench-sync                     # defaults: dataset a (10,000 x 20 KB) and b (16 x 64 MB)
    python bench/bench_sync.py --files-a 2000 --reps 3 --datasets a

`node_agent@base` is `node-agent sync` from another checkout (--base-home), alternated with
`node_agent` in every scenario, for before/after figures in the same run:

    python bench/bench_sync.py --datasets b --reps 3 \
        --tools node_agent,node_agent@base,rclone --base-home /tmp/base-checkout

`job_prep` is a whole `node-agent job-prep` on a local node: the sync into the job's
hard-link view plus presenting it to tasks isolated from the cache (an overlay mount or
a copy, --isolation). `job_prep@base` runs the same from another checkout (--base-home),
alternating with `job_prep`, to measure what a change costs on the same machine and data:

    python bench/bench_sync.py --datasets a --scenarios cold,no-op \
        --tools job_prep,job_prep@base --base-home /tmp/base-checkout --isolation overlay
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PY = sys.executable


# --- the plain SDK loop (run as its own process) -----------------------------------
def sdk_loop(conn: str, container: str, prefix: str, dest: str) -> None:
    from azure.storage.blob import ContainerClient

    cc = ContainerClient.from_connection_string(conn, container)
    root = Path(dest)

    def one(b: object) -> int:
        name, size = b.name, int(b.size)  # type: ignore[attr-defined]
        mtime = b.last_modified.timestamp()  # type: ignore[attr-defined]
        target = root / name[len(prefix) :]
        try:
            st = target.stat()
            if st.st_size == size and abs(st.st_mtime - mtime) < 1e-3:
                return 0
        except FileNotFoundError:
            pass
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        with open(tmp, "wb") as fh:
            cc.download_blob(name).readinto(fh)
        os.utime(tmp, (mtime, mtime))
        os.replace(tmp, target)
        return size

    with ThreadPoolExecutor(8) as pool:
        n = sum(pool.map(one, cc.list_blobs(name_starts_with=prefix)))
    print(f"sdk-loop: {n} bytes")


# --- running tools ------------------------------------------------------------------
PEAK_RSS: dict[str, int] = {}  # tool -> peak RSS (kB) in the current scenario


_GNU_TIME = "/usr/bin/time"
_MAXRSS = re.compile(r"\nbench-maxrss-kb (\d+)\n?$")


def timed(
    cmd: list[str], env: dict[str, str] | None = None, cwd: Path = REPO, tool: str | None = None
) -> tuple[float, float, str]:
    """Wall time, CPU (user+sys) and output of `cmd`; its peak RSS goes into PEAK_RSS[tool].

    The peak RSS is GNU time's %M when it is installed: ru_maxrss of our own child would be
    this benchmark's RSS (over 700 MB with dataset b seeded), as Linux carries the high-water
    mark of the image the child was forked from across exec."""
    wrap = os.path.exists(_GNU_TIME)
    full = [_GNU_TIME, "-f", "\nbench-maxrss-kb %M", *cmd] if wrap else cmd
    t0 = time.monotonic()
    p = subprocess.Popen(
        full, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out = p.stdout.read() if p.stdout else ""
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    maxrss = ru.ru_maxrss
    m = _MAXRSS.search(out) if wrap else None
    if m:
        maxrss, out = int(m.group(1)), out[: m.start()]
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} {' '.join(cmd[1:3])} failed ({p.returncode}):\n{out[-3000:]}")
    tool = tool or (
        "job_prep"
        if "job-prep" in cmd
        else "node_agent"
        if "node_agent" in cmd
        else (
            ("rclone_sync" if cmd[1] == "sync" else "rclone") if cmd[0] == "rclone" else "sdk_loop"
        )
    )
    PEAK_RSS[tool] = max(PEAK_RSS.get(tool, 0), maxrss)
    return wall, ru.ru_utime + ru.ru_stime, out


_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "Bytes": 1}


def fetched_bytes(tool: str, out: str) -> int | None:
    if tool.startswith(("node_agent", "job_prep")):
        m = re.search(r"downloaded \(([\d.]+) MB\)", out)
        return int(float(m.group(1)) * 1e6) if m else None
    if tool == "sdk_loop":
        m = re.search(r"sdk-loop: (\d+) bytes", out)
        return int(m.group(1)) if m else None
    m = re.search(r"Transferred:\s+([\d.]+) (\w+) /", out)
    return int(float(m.group(1)) * _UNITS.get(m.group(2), 1)) if m else None


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below root, deepest first (a job_prep run leaves its overlay)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    r = os.path.realpath(root)
    points = [ln.split(" - ")[0].split()[4].replace("\\040", " ") for ln in lines]
    return sorted((p for p in points if p == r or p.startswith(r + "/")), key=len, reverse=True)


def unmount_all(root: Path) -> None:
    for target in mounts_under(root):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)


def node_env(node: Path, job: str, isolation: str) -> dict[str, str]:
    """The variables Batch gives a job preparation task on a node rooted at `node`."""
    task = node / "workitems" / job / "job-1" / "jobpreparation"
    for d in (node / "shared", node / "startup", node / "fsmounts", task / "wd"):
        d.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZ_BATCH_")}
    env.update(
        AZ_BATCH_NODE_ROOT_DIR=str(node),
        AZ_BATCH_NODE_SHARED_DIR=str(node / "shared"),
        AZ_BATCH_NODE_STARTUP_DIR=str(node / "startup"),
        AZ_BATCH_NODE_MOUNTS_DIR=str(node / "fsmounts"),
        AZ_BATCH_NODE_ID="bench-node",
        AZ_BATCH_JOB_ID=job,
        AZ_BATCH_TASK_ID="jobpreparation",
        AZ_BATCH_TASK_DIR=str(task),
        AZ_BATCH_TASK_WORKING_DIR=str(task / "wd"),
    )
    if isolation:
        env["NODE_AGENT_VIEW_ISOLATION"] = isolation
    return env


class Bench:
    def __init__(self, args: argparse.Namespace, account_url: str, conn: str, work: Path) -> None:
        from node_agent.redact import Redactor
        from node_agent.spec import Storage
        from node_agent.storage import BlobStore
        from node_agent.sync.access import Access

        self.args, self.url, self.conn, self.work = args, account_url, conn, work
        storage = Storage.model_validate({"account_url": account_url, "auth": {"kind": "emulator"}})
        self.store = BlobStore(storage, Redactor())
        self.container = "bench"
        self.store.ensure_container(self.container)
        self.sas = Access(storage, Redactor()).container_sas(self.container)
        self.results: list[dict[str, object]] = []
        self.doc: dict[str, object] = {}
        self.scene: dict[str, str] = {}  # prefix -> a file job prep checks as render.scene
        self.seed_s: dict[str, float] = {}  # dataset -> seconds its seeding took

    def cmd(
        self, tool: str, prefix: str, dest: Path, cache: Path, extra: list[str] | None = None
    ) -> list[str]:
        if tool in ("node_agent", "node_agent@base"):
            return [
                PY,
                "-m",
                "node_agent",
                "sync",
                f"{self.container}/{prefix}",
                str(dest),
                "--account-url",
                self.url,
                "--cache",
                str(cache),
                "--reserve-mb",
                "0",
                *(extra or []),
            ]
        if tool.startswith("job_prep"):
            spec = self.work / f"spec-{prefix.strip('/')}.json"
            assets = {"name": "bench", "container": self.container, "prefix": prefix}
            spec.write_text(
                json.dumps(
                    {
                        "job_id": "bench",
                        "storage": {"account_url": self.url, "auth": {"kind": "emulator"}},
                        "assets": [assets],
                        "render": {
                            "renderer": "blender",
                            "scene": self.scene.get(prefix, "x"),
                            "frames": "1",
                        },
                        "policies": {"free_space_reserve_mb": 0},
                    }
                )
            )
            return [PY, "-m", "node_agent", "job-prep", "--spec", str(spec)]
        if tool in ("rclone", "rclone_sync"):
            # rclone_sync deletes what the source no longer has, as a job's view does: the
            # fair peer for "1% changed" (issue 16); rclone (copy) keeps it
            sas_url = f"{self.store.container(self.container).url}?{self.sas}"
            return [
                "rclone",
                "sync" if tool == "rclone_sync" else "copy",
                "--azureblob-sas-url",
                sas_url,
                f":azureblob:{self.container}/{prefix.rstrip('/')}",
                str(dest),
                "--fast-list",
                "--transfers",
                "8",
                "--checkers",
                "16",
                "-v",
                "--stats",
                "1h",
            ]
        return [PY, __file__, "sdk-loop", self.conn, self.container, prefix, str(dest)]

    # --- seeding / mutating --------------------------------------------------------
    def upload(self, blobs: dict[str, bytes], *, block_list: bool = False) -> None:
        cc = self.store.container(self.container)

        def one(item: tuple[str, bytes]) -> None:
            name, data = item
            if block_list:
                bc = cc.get_blob_client(name)
                ids = []
                for i in range(0, len(data), 8 * 1024 * 1024):
                    bid = f"{i:016d}".encode().hex()
                    bc.stage_block(bid, data[i : i + 8 * 1024 * 1024])
                    ids.append(bid)
                bc.commit_block_list(ids)
            else:
                cc.upload_blob(name, data, overwrite=True, max_concurrency=4)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, blobs.items()))

    def put_many(self, names: list[str], size: int, threads: int = 16) -> float:
        """Seed many small blobs fast; returns the seconds it took.

        The lean path instead of the SDK's upload_blob (~2-3 ms of client CPU each, which
        made 100,000 blobs a 9-minute seed): one PUT Blob per name over a urllib3 pool,
        signed by a container SAS with create/write permission, `threads` at a time.
        Bodies are made per request, so the benchmark never holds them all.
        PUT Blob: https://learn.microsoft.com/rest/api/storageservices/put-blob
        (x-ms-blob-type: BlockBlob; SAS permission c/w creates or overwrites)."""
        import urllib3

        from node_agent.storage.credentials import AZURITE_ACCOUNT, AZURITE_KEY, sign_container_sas

        now = time.time()
        sas = sign_container_sas(
            AZURITE_ACCOUNT,
            AZURITE_KEY,
            self.container,
            start=datetime.fromtimestamp(now - 300, timezone.utc),
            expiry=datetime.fromtimestamp(now + 6 * 3600, timezone.utc),
            permission="rcw",
        )
        base = f"{self.url}/{self.container}"
        path = urllib3.util.parse_url(base).path or ""
        pool = urllib3.connection_from_url(base, maxsize=threads, block=True, retries=3)
        headers = {"x-ms-blob-type": "BlockBlob", "Content-Type": "application/octet-stream"}

        def worker(part: list[str]) -> None:
            for name in part:
                r = pool.request(
                    "PUT",
                    f"{path}/{quote(name, safe='/')}?{sas}",
                    body=os.urandom(size),
                    headers=headers,
                )
                if r.status != 201:
                    raise SystemExit(f"seeding {name}: {r.status} {r.data[:200]!r}")

        t0 = time.monotonic()
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(worker, [names[i::threads] for i in range(threads)]))
        pool.close()
        return time.monotonic() - t0

    def mutate(self, prefix: str, names: list[str], size: int, rng: random.Random) -> None:
        """1 % of files: same size new bytes, new size, new files, deleted files (a quarter each)."""
        k = max(4, len(names) // 100) // 4
        picks = rng.sample(names, 3 * k)
        self.upload(
            {n: os.urandom(size) for n in picks[:k]}
            | {n: os.urandom(size + 100) for n in picks[k : 2 * k]}
        )
        new = [f"{prefix}new/{rng.getrandbits(64):016x}.bin" for _ in range(k)]
        self.upload({n: os.urandom(size) for n in new})
        cc = self.store.container(self.container)
        for n in picks[2 * k :]:
            cc.delete_blob(n)
            names.remove(n)
        names.extend(new)

    # --- scenarios -------------------------------------------------------------------
    def scenario(
        self,
        dataset: str,
        name: str,
        prefix: str,
        tools: list[str],
        *,
        fresh: bool,
        before_rep: object = None,
        extra: dict[str, list[str]] | None = None,
        base: float | None = None,
    ) -> None:
        if self.args.scenarios and name not in self.args.scenarios.split(","):
            return
        runs: dict[str, list[tuple[float, float, int | None]]] = {t: [] for t in tools}
        for rep in range(self.args.warmup + self.args.reps):
            if callable(before_rep):
                before_rep()
            order = tools[rep % len(tools) :] + tools[: rep % len(tools)]
            for tool in order:
                dest, cache = (
                    self.work / dataset / tool / "dest",
                    self.work / dataset / tool / "cache",
                )
                if fresh:
                    unmount_all(self.work / dataset / tool)
                    shutil.rmtree(self.work / dataset / tool, ignore_errors=True)
                dest.mkdir(parents=True, exist_ok=True)
                cmd = self.cmd(tool, prefix, dest, cache, (extra or {}).get(tool))
                if tool.startswith("job_prep"):
                    env = node_env(
                        self.work / dataset / tool / "node", "bench", self.args.isolation
                    )
                    home = tool.endswith("@base") and self.args.base_home
                    wall, cpu, out = timed(cmd, env, Path(home) if home else REPO, tool)
                elif tool.endswith("@base") and self.args.base_home:
                    wall, cpu, out = timed(cmd, cwd=Path(self.args.base_home), tool=tool)
                else:
                    wall, cpu, out = timed(cmd, tool=tool)
                if rep >= self.args.warmup:
                    runs[tool].append((wall, cpu, fetched_bytes(tool, out)))
        self.record(dataset, name, runs, base)

    def rclone_median(self, dataset: str, scenario: str) -> float | None:
        for row in self.results:
            if row["dataset"] == dataset and row["scenario"] == scenario:
                return float(row["tools"]["rclone"]["median_s"])  # type: ignore[index]
        return None

    def record(
        self,
        dataset: str,
        name: str,
        runs: dict[str, list[tuple[float, float, int | None]]],
        base: float | None = None,
    ) -> None:
        row: dict[str, object] = {"dataset": dataset, "scenario": name, "tools": {}}
        peak = dict(PEAK_RSS)
        PEAK_RSS.clear()
        med = {t: statistics.median(r[0] for r in rs) for t, rs in runs.items() if rs}
        base = base or med.get("rclone") or med.get("rclone x2")
        before = med.get("job_prep@base")
        for tool, rs in runs.items():
            if not rs:
                continue
            b = [r[2] for r in rs if r[2] is not None]
            row["tools"][tool] = {  # type: ignore[index]
                "median_s": round(med[tool], 3),
                "cpu_s": round(statistics.median(r[1] for r in rs), 3),
                "peak_rss_mb": round(peak.get(tool.split()[0], 0) / 1024, 1),
                "bytes": int(statistics.median(b)) if b else None,
                "runs_s": [round(r[0], 3) for r in rs],
                "ratio_to_rclone": round(med[tool] / base, 3) if base else None,
            }
            if med.get("rclone_sync"):
                row["tools"][tool]["ratio_to_rclone_sync"] = round(
                    med[tool] / med["rclone_sync"], 3
                )  # type: ignore[index]
            if before:
                row["tools"][tool]["ratio_to_base"] = round(med[tool] / before, 3)  # type: ignore[index]
        self.results.append(row)
        print(format_row(row), flush=True)

    def concurrent(self, dataset: str, prefix: str) -> None:
        """Two job preps of the same assets at once (node_agent: shared node cache; rclone: one folder)."""
        if self.args.scenarios and "concurrent" not in self.args.scenarios.split(","):
            return
        runs: dict[str, list[tuple[float, float, int | None]]] = {
            "node_agent x2": [],
            "rclone x2": [],
        }
        for rep in range(self.args.warmup + self.args.reps):
            for tool in ("node_agent", "rclone"):
                base = self.work / dataset / f"conc-{tool}"
                shutil.rmtree(base, ignore_errors=True)
                cmds = [
                    self.cmd(
                        tool,
                        prefix,
                        base / (f"dest{i}" if tool == "node_agent" else "dest"),
                        base / "cache",
                    )
                    for i in range(2)
                ]
                t0 = time.monotonic()
                with ThreadPoolExecutor(2) as pool:
                    outs = list(pool.map(timed, cmds))
                wall = time.monotonic() - t0
                got = [fetched_bytes(tool, o[2]) for o in outs]
                if rep >= self.args.warmup:
                    runs[f"{tool} x2"].append(
                        (wall, sum(o[1] for o in outs), sum(g or 0 for g in got))
                    )
        self.record(dataset, "two concurrent preps", runs)
        one = None
        for row in self.results:
            if row["dataset"] == dataset and row["scenario"] == "cold":
                one = row["tools"]["node_agent"]["median_s"]  # type: ignore[index]
        self.results[-1]["node_agent_one_job_cold_s"] = one


def format_row(row: dict[str, object]) -> str:
    parts = [f"{row['dataset']:<3} {row['scenario']:<24}"]
    for tool, r in row["tools"].items():  # type: ignore[attr-defined]
        ratio = f"{r['ratio_to_rclone']:.2f}x" if r["ratio_to_rclone"] is not None else "-"
        if "ratio_to_base" in r:
            ratio = f"{r['ratio_to_base']:.3f}x of base"
        if "ratio_to_rclone_sync" in r:
            ratio += f", {r['ratio_to_rclone_sync']:.2f}x of rclone sync"
        mb = f"{r['bytes'] / 1e6:.1f}MB" if r["bytes"] is not None else "?"
        rss = f" rss {r['peak_rss_mb']:.0f}MB" if r.get("peak_rss_mb") else ""
        parts.append(f"{tool}: {r['median_s']:.2f}s cpu {r['cpu_s']:.2f}s {mb}{rss} ({ratio})")
    return " | ".join(parts)


def main() -> None:
    # a stopped benchmark (timeout, Ctrl-C) still stops its Azurite and removes its files
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--files-a", type=int, default=10_000)
    ap.add_argument("--size-a", type=int, default=20_000)
    ap.add_argument("--files-b", type=int, default=16)
    ap.add_argument("--size-b-mb", type=int, default=64)  # the dataset b
    ap.add_argument("--files-c", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--scenarios", default="", help="comma list of scenario names (default: all)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--datasets", default="a,b")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument(
        "--tools",
        default="node_agent,rclone,sdk_loop",
        help="comma list: node_agent (node-agent sync), node_agent@base (the same from "
        "--base-home), rclone, sdk_loop, job_prep (a whole job prep, view isolation "
        "included), job_prep@base (the same, --base-home)",
    )
    ap.add_argument(
        "--base-home", default="", help="another checkout, for node_agent@base and job_prep@base"
    )
    ap.add_argument(
        "--isolation", default="", help="NODE_AGENT_VIEW_ISOLATION for job_prep: overlay|copy"
    )
    args = ap.parse_args()

    from node_agent.azurite import AzuriteServer

    tools = [t for t in args.tools.split(",") if t]
    with AzuriteServer() as az, tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        b = Bench(args, az.account_url, az.connection_string, Path(tmp))
        try:
            run_all(args, b, az, tools)
        finally:
            unmount_all(Path(tmp))  # job_prep's overlays, before the folder is removed
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"sync-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(b.doc, indent=2))
    print("\n".join(format_row(r) for r in b.doc["results"]))  # type: ignore[union-attr]
    shown = path.resolve()
    print(f"results: {shown.relative_to(REPO) if shown.is_relative_to(REPO) else shown}")


def run_all(args: argparse.Namespace, b: Bench, az: Any, tools: list[str]) -> None:
    t_start = time.monotonic()
    if "a" in args.datasets:
        names = [f"a/f{i // 100:03d}/{i:05d}.bin" for i in range(args.files_a)]
        print(f"seeding a: {args.files_a} x {args.size_a} B", flush=True)
        b.seed_s["a"] = round(b.put_many(names, args.size_a), 1)
        b.scene["a/"] = names[0][len("a/") :]
        b.scenario("a", "cold", "a/", tools, fresh=True)
        b.scenario("a", "no-op", "a/", tools, fresh=False)
        rng = random.Random(1)
        b.scenario(
            "a",
            "1% changed",
            "a/",
            tools,
            fresh=False,
            before_rep=lambda: b.mutate("a/", names, args.size_a, rng),
        )
        same = rng.sample(names, max(1, len(names) // 100))
        cc = b.store.container(b.container)
        b.scenario(
            "a",
            "1% re-uploaded same bytes",
            "a/",
            tools,
            fresh=False,
            before_rep=lambda: b.upload({n: cc.download_blob(n).readall() for n in same}),
        )
        if "node_agent" in tools and "rclone" in tools:  # they read rclone's copy
            # manifest: push the dataset as a project, pin it, measure the pinned no-op
            src = b.work / "a" / "rclone" / "dest"
            push = [
                PY,
                "-m",
                "node_agent",
                "assets",
                "push",
                str(src),
                "--project",
                "pa",
                "--container",
                b.container,
                "--account-url",
                az.account_url,
            ]
            out = timed(push, {**os.environ, "XDG_CACHE_HOME": str(b.work / "home")})[2]
            mh = out.split("manifest ")[-1].strip()
            pin = {"node_agent": ["--manifest", mh]}
            b.scenario(
                "a",
                "manifest-pinned no-op",
                "pa",
                ["node_agent"],
                fresh=False,
                extra=pin,
                base=b.rclone_median("a", "no-op"),
            )  # ratio to rclone's plain no-op
            b.concurrent("a", "a/")
    if "c" in args.datasets:  # many tiny files: memory
        names_c = [f"c/d{i // 1000:03d}/{i:06d}.bin" for i in range(args.files_c)]
        print(f"seeding c: {args.files_c} x 2 KB", flush=True)
        seed_s = b.put_many(names_c, 2048)
        print(f"seeded c in {seed_s:.1f} s ({args.files_c / seed_s:.0f} puts/s)", flush=True)
        b.seed_s["c"] = round(seed_s, 1)
        b.scene["c/"] = names_c[0][len("c/") :]
        tools_c = [t for t in tools if t != "sdk_loop"]
        b.scenario("c", "cold", "c/", tools_c, fresh=True)
        b.scenario("c", "no-op", "c/", tools_c, fresh=False)
    if "b" in args.datasets:
        size = args.size_b_mb * 1024 * 1024
        names_b = [f"b/big{i:02d}.bin" for i in range(args.files_b)]
        print(f"seeding b: {args.files_b} x {args.size_b_mb} MB (half as block lists)", flush=True)
        half = len(names_b) // 2
        b.upload({n: os.urandom(size) for n in names_b[:half]})
        b.upload({n: os.urandom(size) for n in names_b[half:]}, block_list=True)
        b.scene["b/"] = names_b[0][len("b/") :]
        b.scenario("b", "cold", "b/", tools, fresh=True)
        b.scenario("b", "no-op", "b/", tools, fresh=False)
    finish(args, b, t_start)


def finish(args: argparse.Namespace, b: Bench, t_start: float) -> None:
    b.doc = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "total_s": round(time.monotonic() - t_start, 1),
        "seed_s": b.seed_s,
        "results": b.results,
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "sdk-loop":
        sdk_loop(*sys.argv[2:6])
    else:
        main()
