"""`node-agent doctor`: what is wrong with this node, one line per check."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from node_agent import nodestate
from node_agent.batchenv import ENTITLEMENT_VARS, BatchNode
from node_agent.errors import NodeAgentError
from node_agent.mounts.manager import POOL
from node_agent.mounts.platform import Platform, current, probe
from node_agent.ops.history import node_history, runs_json, runs_text
from node_agent.ops.nodechecks import missing_credential, records_check, writable_checks
from node_agent.ops.nodeview import task_records, tree_size
from node_agent.redact import Redactor
from node_agent.renderers import find_executable, renderer_binaries
from node_agent.spec import JobSpec, load_spec
from node_agent.sync.cache import cache_budget_mb, verify_cache
from node_agent.sync.state import db_path, quick_check

MIN_FREE_BYTES = 2 * 1024**3


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


T = TypeVar("T")


def with_timeout(fn: Callable[[], T], seconds: float) -> T:
    """Run fn in a daemon thread; a hung mount or network call cannot hang the doctor."""
    result: list[T] = []
    error: list[BaseException] = []

    def go() -> None:
        try:
            result.append(fn())
        except BaseException as e:  # reported as the check's failure
            error.append(e)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise TimeoutError(f"no answer within {seconds:.0f}s")
    if error:
        raise error[0]
    return result[0]


def _env_checks(env: Mapping[str, str]) -> list[Check]:
    required = ("AZ_BATCH_NODE_ROOT_DIR", "AZ_BATCH_NODE_SHARED_DIR", "AZ_BATCH_NODE_ID")
    missing = [v for v in required if not env.get(v)]
    checks = [
        Check(
            "batch variables",
            not missing,
            "present"
            if not missing
            else f"not set: {', '.join(missing)} (normal in an SSH session)",
            required=False,
        )
    ]
    present = [v for v in ENTITLEMENT_VARS if env.get(v)]
    checks.append(
        Check(
            "entitlement variables",
            len(present) == len(ENTITLEMENT_VARS),
            ", ".join(f"{v}={'***' if 'TOKEN' in v else env[v]}" for v in present) or "not set",
            required=False,
        )
    )
    return checks


MOUNT_PROBE_S = 15.0


def _mount_check(platform: Platform, name: str, target: Path, fix: str) -> Check:
    """ok / stale / not mounted, from the mount table and a listing in a child process."""
    if not platform.is_mounted(target):
        return Check(name, False, f"{target}: not mounted ({fix})")
    try:
        p = with_timeout(lambda: probe(target, MOUNT_PROBE_S), MOUNT_PROBE_S + 5)
    except TimeoutError as e:
        return Check(name, False, f"{target}: stale: listing gave {e} ({fix})")
    if p.state == "ok":
        return Check(name, True, f"{target}: ok ({p.entries} entries)")
    state = "stale" if p.state in ("stale", "timeout") else p.state
    return Check(name, False, f"{target}: {state}: {p.detail} ({fix})")


def _mount_checks(node: BatchNode) -> list[Check]:
    """Every mount node_agent recorded (state/mounts.json: pool and job-scoped), then any
    other mount under the mounts folder (e.g. Batch's own mountConfiguration)."""
    platform = current(node.is_windows)
    checks: list[Check] = []
    recorded: set[str] = set()
    for rec in nodestate.read_mount_records(node):
        name, scope = str(rec.get("name")), str(rec.get("scope", POOL))
        target = Path(str(rec.get("target")))
        recorded.add(os.path.realpath(target))
        fix = (
            f"recorded by the start task; fix: node-agent mounts unmount --name {name}, "
            "then re-run the start task"
            if scope == POOL
            else f"recorded by job prep of {scope}; fix: re-run job prep, "
            f"or node-agent mounts unmount --job {scope}"
        )
        label = f"mount {name}" if scope == POOL else f"mount {scope}/{name}"
        checks.append(_mount_check(platform, label, target, fix))
    if not platform.windows:
        base = os.path.realpath(node.mounts_dir)
        for path in sorted(platform.mount_table()):
            if path.startswith(base + os.sep) and path not in recorded:
                rel = os.path.relpath(path, base)
                checks.append(
                    _mount_check(platform, f"mount {rel}", Path(path), "not made by node_agent")
                )
    return checks


def _storage_check(spec: JobSpec, redactor: Redactor, env: Mapping[str, str]) -> Check:
    from node_agent.storage import BlobStore

    def probe() -> str:
        store = BlobStore(spec.storage, redactor, env, probe=True)
        t0 = time.monotonic()
        store.probe()
        return f"{spec.storage.account_url} answered in {(time.monotonic() - t0) * 1000:.0f} ms"

    try:
        return Check("storage", True, with_timeout(probe, 15.0))
    except NodeAgentError as e:
        return Check("storage", False, redactor(str(e)))
    except (TimeoutError, OSError) as e:
        return Check("storage", False, redactor(f"{spec.storage.account_url}: {e}"))
    except Exception as e:  # any SDK failure is the check's answer, not a crash
        return Check(
            "storage", False, redactor(f"{spec.storage.account_url}: {type(e).__name__}: {e}")
        )


def _gib(n: float) -> str:
    return f"{n:,.2f}".rstrip("0").rstrip(".")


def _disk_check(node: BatchNode) -> Check:
    """Free space under the node root against the pool config's `min_free_temp_disk_gb`
    (as the start task applied it), else MIN_FREE_BYTES."""
    free = shutil.disk_usage(node.root_dir).free
    config = nodestate.kept_pool_config(node)
    if config is not None:
        min_bytes, source = config.min_free_temp_disk_gb * 2**30, "from the pool config"
    else:
        min_bytes, source = float(MIN_FREE_BYTES), "default; no pool config on this node"
    return Check(
        "free disk",
        free >= min_bytes,
        f"{_gib(free / 2**30)} GiB free under {node.root_dir} "
        f"(minimum {_gib(min_bytes / 2**30)} GiB, {source})",
    )


def _cache_check(node: BatchNode, spec: JobSpec | None) -> Check:
    """Size of the shared cache against its budget; over budget is a warning (job release
    trims it, and never evicts content of a job still on the node)."""
    cache = tree_size(node.cache_dir) if node.cache_dir.is_dir() else 0
    budget = cache_budget_mb(node, spec.policies.cache_budget_mb if spec else None)
    size = f"{cache / 2**20:.1f} MiB in {node.cache_dir}"
    if budget is None:
        return Check("shared cache", True, f"{size} (no budget set)", required=False)
    if cache <= budget * 2**20:
        return Check("shared cache", True, f"{size} (budget {budget} MiB)", required=False)
    return Check(
        "shared cache",
        False,
        f"{size}: over its budget of {budget} MiB (job release trims it; content of jobs "
        "still on the node is kept)",
        required=False,
    )


def _state_db_check(node: BatchNode) -> Check:
    """PRAGMA quick_check of the sync state DB (read-only: the next job prep heals it)."""
    path = db_path(node.state_dir)
    if not path.exists():
        return Check("state db", True, f"{path}: not created yet (no job prep on this node)")
    problem = quick_check(path)
    if problem is None:
        size = path.stat().st_size / 2**20
        return Check("state db", True, f"{path}: quick_check ok ({size:.1f} MiB)")
    return Check(
        "state db",
        False,
        f"{path}: corrupt: {problem} (the next job prep moves it aside and rebuilds it from "
        "the cache objects)",
    )


def verify_cache_checks(node: BatchNode) -> list[Check]:
    """`--verify-cache`: every cache object hashed; the bad ones named and dropped."""
    v = verify_cache(node.cache_dir, node.state_dir)
    summary = (
        f"{v.objects} objects, {v.bytes / 1e6:.1f} MB hashed in {v.seconds:.2f} s "
        f"({v.mb_per_s:.0f} MB/s): {len(v.bad)} bad"
    )
    if v.bad and v.not_dropped:
        summary += f", not dropped: {v.not_dropped}"
    elif v.bad:
        summary += f", {len(v.dropped)} dropped (the next sync fetches them again)"
    checks = [Check("cache objects", not v.bad, summary)]
    for h, problem in list(v.bad.items())[:20]:
        fate = "dropped" if h in v.dropped else "fixed meanwhile" if not v.not_dropped else "kept"
        checks.append(Check("cache object", False, f"{h}: {problem}: {fate}"))
    if len(v.bad) > 20:
        checks.append(Check("cache object", False, f"... and {len(v.bad) - 20} more"))
    return checks


def _exists(exe: str, env: Mapping[str, str]) -> str | None:
    if Path(exe).is_file():
        return exe
    return shutil.which(exe, path=env.get("PATH"))


def _renderer_check(node: BatchNode, spec: JobSpec | None, env: Mapping[str, str]) -> Check:
    """The spec's renderer resolved as the render task does (render.executable, the image's
    <NAME>_<version>_EXEC variable, then PATH); required whenever a spec names one. Without
    a spec: which known renderers are on PATH (information only)."""
    if spec is None:
        found = {n: p for n in renderer_binaries() if (p := shutil.which(n, path=env.get("PATH")))}
        return Check(
            "renderers",
            bool(found),
            (", ".join(f"{k} ({v})" for k, v in found.items()) or "none on PATH")
            + " (no job spec on this node)",
            required=False,
        )
    render = spec.render
    name = render.renderer
    task_env = {**env, **render.env}
    try:
        exe = find_executable(render, task_env, node.is_windows)
    except NodeAgentError as e:
        return Check("renderers", False, f"{name}: {str(e).splitlines()[0]}")
    if not exe and render.command and "{" not in render.command[0]:
        exe = render.command[0]  # a custom template that names its program
    if not exe:
        return Check(
            "renderers", True, f"{name}: the command template names no fixed program", False
        )
    path = _exists(exe, task_env)
    if path is None:
        source = "render.executable" if render.executable else "the program"
        var = next((v for v in task_env if v.upper().endswith("_EXEC") and task_env[v] == exe), "")
        if not render.executable and var:
            source = f"{var}"
        return Check("renderers", False, f"{name}: {source} '{exe}' does not exist on this node")
    return Check("renderers", True, f"{name} ({path})")


def latest_spec(node: BatchNode) -> Path | None:
    specs = sorted((node.agent_dir / "jobs").glob("*/spec.json"), key=lambda p: p.stat().st_mtime)
    return specs[-1] if specs else None


def run_checks(
    node: BatchNode,
    env: Mapping[str, str],
    redactor: Redactor,
    spec_path: Path | None,
    verify: bool = False,
) -> tuple[list[Check], list[dict[str, object]]]:
    checks = _env_checks(env)
    checks.append(
        Check(
            "node folders",
            node.agent_dir.is_dir(),
            str(node.agent_dir)
            if node.agent_dir.is_dir()
            else f"{node.agent_dir} missing: the start task has not run",
        )
    )
    checks.append(_disk_check(node))
    spec_path = spec_path or latest_spec(node)
    spec = None
    if spec_path is not None:
        try:
            spec = load_spec(spec_path)
        except NodeAgentError as e:
            checks.append(Check("job spec", False, str(e).splitlines()[0]))
    checks.append(_cache_check(node, spec))
    checks.append(_state_db_check(node))
    checks += writable_checks(node)
    checks += records_check(node)
    if verify:
        checks += verify_cache_checks(node)
    checks.append(_renderer_check(node, spec, env))
    checks += _mount_checks(node)
    if spec is not None:
        checks.append(missing_credential(spec, env) or _storage_check(spec, redactor, env))
    else:
        checks.append(
            Check(
                "storage", True, "skipped: no job spec on this node (pass --spec)", required=False
            )
        )
    tasks: list[dict[str, object]] = [
        {
            "job": r.job,
            "task": r.task,
            "exit_code": r.exit_code,
            "exit_class": r.exit_class,
            "wall_s": r.wall_s,
            "finished_at": r.finished_at,
            "task_dir": str(r.task_dir),
        }
        for r in task_records(node)[:10]
    ]
    return checks, tasks


DOCTOR_RUNS = 10


def report(
    checks: list[Check],
    tasks: list[dict[str, object]],
    color: bool,
    node: BatchNode | None = None,
) -> str:
    def mark(c: Check) -> str:
        word = "ok" if c.ok else ("FAIL" if c.required else "warn")
        if not color:
            return f"{word:>4}"
        code = "32" if c.ok else ("31" if c.required else "33")
        return f"\033[{code}m{word:>4}\033[0m"

    width = max(len(c.name) for c in checks)
    lines = [f"{mark(c)}  {c.name:<{width}}  {c.detail}" for c in checks]
    if node is not None:
        lines += ["", "last phase runs on this node (newest first):"]
        lines += ["  " + line for line in runs_text(node_history(node), node, DOCTOR_RUNS)]
    if tasks:
        lines.append("")
        lines.append("last render task summaries on this node:")
        for t in tasks:
            lines.append(
                f"  {t['finished_at']}  {t['job']}/{t['task']}  exit {t['exit_code']} ({t['exit_class']})  {t['wall_s']}s"
            )
    return "\n".join(lines)


def as_json(
    checks: list[Check], tasks: list[dict[str, object]], node: BatchNode | None = None
) -> dict[str, object]:
    ok = all(c.ok for c in checks if c.required)
    doc: dict[str, object] = {"ok": ok, "checks": [asdict(c) for c in checks], "last_tasks": tasks}
    if node is not None:
        doc["phase_runs"] = runs_json(node_history(node), DOCTOR_RUNS)
    return doc
