#!/usr/bin/env python3
"""Render-task overhead: what `node-agent render` adds around a 24-frame Blender render.

Starts its own Azurite, builds the demo scene once, then runs `node-agent render --frames
1-24` as a Batch task would (N repetitions) and reports, per run and as medians:
  start_to_renderer_s        node-agent process start -> renderer process started
  popen_to_renderer_s        the same from the caller's view (includes interpreter start)
  last_frame_to_uploaded_s   last frame file written -> every frame uploaded (progressive)
  last_frame_to_uploads_done_s  last frame written -> all outputs uploaded after the
                             renderer exited (includes Blender's own exit time)
  last_frame_to_task_end_s   last frame written -> node-agent exited (logs, summary, preview)
and, first, the CLI's start-up (best of 5): `python -c pass`, `node-agent --version`,
`--help` and `import node_agent.cli`, with each one's excess over the interpreter's start.
Targets: start_to_renderer_s at most 0.25 s (issue 16), last_frame_to_uploaded_s under 0.5 s.

    make bench-render
    python bench/bench_render.py --reps 1 --frames 1-8
    python bench/bench_render.py --reps 7 --compare /tmp/base   # another checkout, alternated

`--compare DIR` runs each repetition twice, this checkout's node_agent and DIR's (PYTHONPATH,
alternating which goes first), and reports both medians: on a shared machine the load hits
both alike.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from node_agent.azurite import AzuriteServer  # noqa: E402


def _ts(text: str) -> float:
    return (
        dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
        .replace(tzinfo=dt.timezone.utc)
        .timestamp()
    )


def _node_env(root: Path, job: str, task: str) -> dict[str, str]:
    task_dir = root / "workitems" / job / "job-1" / task
    for d in (root / "shared", root / "startup", task_dir / "wd"):
        d.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZ_BATCH_")}
    env.update(
        AZ_BATCH_NODE_ROOT_DIR=str(root),
        AZ_BATCH_NODE_SHARED_DIR=str(root / "shared"),
        AZ_BATCH_NODE_STARTUP_DIR=str(root / "startup"),
        AZ_BATCH_NODE_ID="bench-node",
        AZ_BATCH_JOB_ID=job,
        AZ_BATCH_TASK_ID=task,
        AZ_BATCH_TASK_DIR=str(task_dir),
        AZ_BATCH_TASK_WORKING_DIR=str(task_dir / "wd"),
    )
    return env


def build_scene(out: Path) -> None:
    subprocess.run(
        [
            "blender",
            "-b",
            "--python-exit-code",
            "1",
            "-noaudio",
            "-P",
            str(REPO / "examples" / "make_scene.py"),
            "--",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )


def one_run(
    work: Path, scene: Path, account_url: str, frames: str, rep: int, code: Path = REPO
) -> dict[str, Any]:
    which = "this" if code == REPO else "other"
    root = work / f"node{rep}-{which}"
    task = f"bench-{rep}-{which}"  # its own outputs: never a re-run of the other
    env = _node_env(root, "bench", task)
    env["PYTHONPATH"] = str(code)  # which checkout's node_agent runs (--compare)
    assets = root / "shared" / "node_agent" / "jobs" / "bench" / "assets"
    assets.mkdir(parents=True)
    shutil.copy(scene / "spin.blend", assets)
    shutil.copytree(scene / "textures", assets / "textures")
    spec = {
        "job_id": "bench",
        "storage": {"account_url": account_url, "auth": {"kind": "emulator"}},
        "assets": [{"name": "scene", "container": "assets"}],
        "render": {
            "renderer": "blender",
            "scene": "spin.blend",
            "frames": frames,
            "timeout_s": 3600,
        },
    }
    spec_path = root / "job.json"
    spec_path.write_text(json.dumps(spec))
    task_dir = Path(env["AZ_BATCH_TASK_DIR"])
    argv = [
        sys.executable,
        "-m",
        "node_agent",
        "render",
        "--frames",
        frames,
        "--spec",
        str(spec_path),
    ]
    with open(task_dir / "stdout.txt", "wb") as out, open(task_dir / "stderr.txt", "wb") as err:
        t_popen = time.time()
        rc = subprocess.run(argv, env=env, cwd=code, stdout=out, stderr=err, check=False).returncode
        t_end = time.time()
    if rc != 0:
        sys.exit(f"render failed (exit {rc}); see {task_dir / 'stderr.txt'}")
    s = json.loads((task_dir / "summary.json").read_text())
    out_dir = task_dir / "wd" / "output"
    last_frame = max((out_dir / o["file"]).stat().st_mtime for o in s["outputs"])
    last_upload = max(_ts(o["uploaded_at"]) for o in s["outputs"])
    times = s["times"]
    return {
        "frames": len(s["outputs"]),
        "render_wall_s": s["wall_s"],
        "start_to_renderer_s": s["overhead"]["start_to_renderer_s"],
        "popen_to_renderer_s": round(_ts(times["renderer_started_at"]) - t_popen, 3),
        "last_frame_to_uploaded_s": round(last_upload - last_frame, 3),
        "last_frame_to_uploads_done_s": round(_ts(times["uploads_done_at"]) - last_frame, 3),
        "renderer_exit_after_last_frame_s": round(_ts(times["renderer_ended_at"]) - last_frame, 3),
        "last_frame_to_task_end_s": round(t_end - last_frame, 3),
    }


def startup(reps: int = 5) -> dict[str, float]:
    """Best-of-`reps` wall time of the interpreter's own start and of `node-agent --version`,
    `--help` and `import node_agent.cli` (what every task pays before any work; issue 16's
    target: within 0.1 s of the interpreter), interleaved so load hits each alike."""
    cmds = {
        "python_start_s": ["-c", "pass"],
        "version_s": ["-m", "node_agent", "--version"],
        "help_s": ["-m", "node_agent", "--help"],
        "import_cli_s": ["-c", "import node_agent.cli"],
    }
    best = dict.fromkeys(cmds, float("inf"))
    for _ in range(reps):
        for key, args in cmds.items():
            t0 = time.monotonic()
            subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, check=True)
            best[key] = min(best[key], time.monotonic() - t0)
    out = {k: round(v, 3) for k, v in best.items()}
    for k in ("version_s", "help_s", "import_cli_s"):
        out[k.replace("_s", "_over_python_s")] = round(best[k] - best["python_start_s"], 3)
    return out


def main() -> None:
    # a stopped benchmark (timeout, Ctrl-C) still stops its Azurite and removes its files
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--frames", default="1-24")
    ap.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "render-blender-24.json"
    )
    ap.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="DIR",
        help="another checkout of node_agent: run it too, alternated with this one",
    )
    args = ap.parse_args()
    codes = [REPO] + ([args.compare.resolve()] if args.compare else [])
    load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    start = startup()
    for k, v in start.items():
        print(f"start-up {k:32} {v:.3f}")
    print(
        "target node-agent --version, --help within 0.1 s of python's start: "
        + (
            "met"
            if max(start["version_over_python_s"], start["help_over_python_s"]) < 0.1
            else "NOT met"
        )
    )
    if shutil.which("blender") is None:
        sys.exit("bench_render: needs blender on PATH")
    work = Path(tempfile.mkdtemp(prefix="bench-render-"))
    try:
        with AzuriteServer() as az:
            build_scene(work / "scene")
            by_code: dict[Path, list[dict[str, Any]]] = {c: [] for c in codes}
            for i in range(args.reps):
                for c in codes[i % 2 :] + codes[: i % 2]:  # alternate which goes first
                    by_code[c].append(
                        one_run(work, work / "scene", az.account_url, args.frames, i, c)
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    runs = by_code[REPO]
    keys = [k for k in runs[0] if k != "frames"]
    med = {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}
    compared: dict[str, Any] = {}
    if args.compare:
        other = by_code[codes[1]]
        compared = {
            "dir": str(codes[1]),
            "runs": other,
            "median": {k: round(statistics.median(r[k] for r in other), 3) for k in keys},
        }
        print(f"compared with {codes[1]} (alternated, same Azurite):")
        print(f"{'metric':36} {'this':>8} {'compare':>8}")
        for k in keys:
            print(f"{k:36} {med[k]:8.3f} {compared['median'][k]:8.3f}")
    print(
        f"{'metric':36} "
        + " ".join(f"{'run ' + str(i + 1):>8}" for i in range(len(runs)))
        + f" {'median':>8}"
    )
    for k in keys:
        print(f"{k:36} " + " ".join(f"{r[k]:8.3f}" for r in runs) + f" {med[k]:8.3f}")
    targets = {"start_to_renderer_s": 0.25, "last_frame_to_uploaded_s": 0.5}
    for k, limit in targets.items():
        print(f"target {k} <= {limit}s: {'met' if med[k] <= limit else 'NOT met'} ({med[k]:.3f}s)")
    doc = {
        "benchmark": "render-task overhead, Blender, frames " + args.frames,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "runs": runs,
        "median": med,
        "targets_s": targets,
        "startup_best_of_5_s": start,
        # 1/5/15-minute load averages before and after: the machine may be shared
        "load_average": {
            "before": load_before,
            "after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
    }
    if compared:
        doc["compared"] = compared
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")


if __name__ == "__main__":
    main()
