"""`node-agent doctor`: what is wrong with this node, one line per check."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from node_agent.batchenv import ENTITLEMENT_VARS, BatchNode
from node_agent.errors import NodeAgentError
from node_agent.ops.nodeview import task_records, tree_size
from node_agent.redact import Redactor
from node_agent.spec import JobSpec, load_spec
from node_agent.sync.cache import cache_budget_mb

RENDERER_BINARIES = ("blender", "Render", "kick", "vray", "3dsmaxcmdio")
MIN_FREE_BYTES = 2 * 1024**3


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def with_timeout(fn: Callable[[], str], seconds: float) -> str:
    """Run fn in a daemon thread; a hung mount or network call cannot hang the doctor."""
    result: list[str] = []
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


def _mount_checks(node: BatchNode) -> list[Check]:
    checks: list[Check] = []
    if not node.mounts_dir.is_dir():
        return checks
    for d in sorted(p for p in node.mounts_dir.iterdir() if p.is_dir()):
        if not os.path.ismount(d):
            continue
        try:
            n = with_timeout(lambda d=d: str(len(os.listdir(d))), 5.0)  # type: ignore[misc]
            checks.append(Check(f"mount {d.name}", True, f"{d} answers ({n} entries)"))
        except (OSError, TimeoutError) as e:
            checks.append(Check(f"mount {d.name}", False, f"{d} does not answer: {e}"))
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


def latest_spec(node: BatchNode) -> Path | None:
    specs = sorted((node.agent_dir / "jobs").glob("*/spec.json"), key=lambda p: p.stat().st_mtime)
    return specs[-1] if specs else None


def run_checks(
    node: BatchNode, env: Mapping[str, str], redactor: Redactor, spec_path: Path | None
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
    free = shutil.disk_usage(node.root_dir).free
    checks.append(
        Check(
            "free disk",
            free >= MIN_FREE_BYTES,
            f"{free / 2**30:.1f} GiB free under {node.root_dir} (minimum {MIN_FREE_BYTES / 2**30:.0f} GiB)",
        )
    )
    spec_path = spec_path or latest_spec(node)
    spec = None
    if spec_path is not None:
        try:
            spec = load_spec(spec_path)
        except NodeAgentError as e:
            checks.append(Check("job spec", False, str(e).splitlines()[0]))
    cache = tree_size(node.cache_dir) if node.cache_dir.is_dir() else 0
    budget = cache_budget_mb(node, spec.policies.cache_budget_mb if spec else None)
    checks.append(
        Check(
            "shared cache",
            budget is None or cache <= budget * 2**20,
            f"{cache / 2**20:.1f} MiB in {node.cache_dir}"
            + (f" (budget {budget} MiB)" if budget is not None else " (no budget set)"),
            required=False,
        )
    )
    found = {n: p for n in RENDERER_BINARIES if (p := shutil.which(n, path=env.get("PATH")))}
    wanted = spec.render.renderer if spec else None
    checks.append(
        Check(
            "renderers",
            bool(found),
            ", ".join(f"{k} ({v})" for k, v in found.items()) or "none on PATH",
            required=wanted == "blender",
        )
    )
    checks += _mount_checks(node)
    if spec is not None:
        checks.append(_storage_check(spec, redactor, env))
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


def report(checks: list[Check], tasks: list[dict[str, object]], color: bool) -> str:
    def mark(c: Check) -> str:
        word = "ok" if c.ok else ("FAIL" if c.required else "warn")
        if not color:
            return f"{word:>4}"
        code = "32" if c.ok else ("31" if c.required else "33")
        return f"\033[{code}m{word:>4}\033[0m"

    width = max(len(c.name) for c in checks)
    lines = [f"{mark(c)}  {c.name:<{width}}  {c.detail}" for c in checks]
    if tasks:
        lines.append("")
        lines.append("last tasks on this node:")
        for t in tasks:
            lines.append(
                f"  {t['finished_at']}  {t['job']}/{t['task']}  exit {t['exit_code']} ({t['exit_class']})  {t['wall_s']}s"
            )
    return "\n".join(lines)


def as_json(checks: list[Check], tasks: list[dict[str, object]]) -> dict[str, object]:
    ok = all(c.ok for c in checks if c.required)
    return {"ok": ok, "checks": [asdict(c) for c in checks], "last_tasks": tasks}
