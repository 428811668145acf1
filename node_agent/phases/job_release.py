"""Job release: upload this node's job prep and release logs, unmount the job's mounts,
remove the job's per-job files and working data, then trim the shared asset cache to its
budget (least recently used content first, never content of a job still on the node).

It never fails because something is already gone, and every wait is bounded so the
whole phase ends well within Batch's 15-minute limit for release tasks.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from node_agent.conventions import job_container, task_log
from node_agent.errors import ExitCode, NodeAgentError, SpecError
from node_agent.mounts.manager import MountContext, unmount_records
from node_agent.runtime import Phase
from node_agent.spec import JobSpec, spec_from_data
from node_agent.storage import BlobStore

UPLOAD_BUDGET_S = 300.0  # all log uploads together; Batch kills release tasks at 15 min
BATCH_LOGS = ("stdout.txt", "stderr.txt")


def _load_spec(phase: Phase) -> JobSpec | None:
    path = phase.node.job_spec_path()
    try:
        return spec_from_data(json.loads(path.read_text(encoding="utf-8")), str(path))
    except FileNotFoundError:
        phase.log.info(
            "no job spec on this node (%s): job prep did not run here or it is cleaned", path
        )
    except (OSError, ValueError, SpecError) as e:
        phase.log.warning("cannot read the stored job spec %s: %s", path, str(e).splitlines()[0])
    return None


def log_files(phase: Phase) -> list[tuple[Path, str]]:
    """(file, blob name) of this node's job prep and release logs, in upload order."""
    node, job = phase.node, str(phase.node.job_id)
    prep_id = node.job_prep_dir.name if node.job_prep_dir else "jobpreparation"
    release_id = node.task_id or "jobrelease"
    items: list[tuple[Path, str, str]] = []
    if node.job_prep_dir:
        items += [(node.job_prep_dir / n, prep_id, n) for n in BATCH_LOGS]
    items += [(p, prep_id, p.name) for p in sorted(node.logs_dir.glob(f"job-prep_{job}_*.log"))]
    items += [(p, release_id, p.name) for p in sorted(node.logs_dir.glob(f"mount-{job}.*.log"))]
    items += [(node.task_dir / n, release_id, n) for n in BATCH_LOGS]
    items += [
        (p, release_id, p.name) for p in sorted(node.logs_dir.glob(f"job-release_{job}_*.log"))
    ]
    return [(p, task_log(tid, f"{node.node_id}/{name}")) for p, tid, name in items if p.is_file()]


def reachable(account_url: str, timeout: float = 10.0) -> bool:
    """One TCP connection to the storage endpoint: skip uploads fast when it is down."""
    url = urlparse(account_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def upload_logs(phase: Phase, spec: JobSpec | None, budget_s: float = UPLOAD_BUDGET_S) -> bool:
    """Upload the logs to the job's File Conventions container; False if any failed."""
    if spec is None:
        phase.log.warning("logs not uploaded: no job spec on this node to tell where storage is")
        return True
    files = log_files(phase)
    if not files:
        phase.log.info("no job prep or release logs on this node to upload")
        return True
    if not reachable(spec.storage.account_url):
        phase.log.error("log upload failed: storage %s is unreachable", spec.storage.account_url)
        return False
    container = job_container(spec.job_id)
    deadline = time.monotonic() + budget_s
    for h in phase.log.handlers:
        h.flush()
    try:
        store = BlobStore(spec.storage, phase.redactor, phase.env)
        store.ensure_container(container)
        for i, (path, blob) in enumerate(files):
            if time.monotonic() > deadline:
                phase.log.error(
                    "log upload stopped after %.0fs: %d file(s) not uploaded",
                    budget_s,
                    len(files) - i,
                )
                return False
            store.upload_file(path, container, blob, content_type="text/plain")
    except NodeAgentError as e:
        phase.log.error("log upload failed: %s", str(e).splitlines()[0])
        return False
    phase.log.info(
        "uploaded %d log file(s) to %s/%s",
        len(files),
        container,
        files[0][1].split("/")[0] + "/...",
    )
    return True


def _make_writable(func: Callable[..., Any], path: str, _exc: object) -> None:
    # Read-only files (common on Windows) block deletion: clear the flag and retry once.
    try:
        os.chmod(path, stat.S_IWRITE | stat.S_IREAD | stat.S_IEXEC)
        func(path)
    except OSError:
        pass


def remove_tree(path: Path, attempts: int = 3, pause_s: float = 1.0) -> bool:
    """Remove `path` if present; True when it is gone. Retries a few times for files that
    are briefly locked (Windows: a renderer still closing); never raises."""
    for i in range(attempts):
        if not path.exists() and not path.is_symlink():
            return True
        if path.is_symlink() or path.is_file():
            try:
                path.unlink()
            except OSError:
                pass
        else:
            shutil.rmtree(path, onerror=_make_writable)
        if not path.exists():
            return True
        if i + 1 < attempts:
            time.sleep(pause_s)
    return not path.exists()


def _working_dirs(phase: Phase) -> list[Path]:
    """The job's per-job files and the job prep working folder (asset copies, temp files)."""
    node = phase.node
    dirs = [node.job_dir()]
    if node.job_prep_working_dir:
        dirs.append(node.job_prep_working_dir)
    return dirs


def _keep_cache_budget(phase: Phase, spec: JobSpec | None) -> None:
    """Trim the shared cache; a cache over budget is logged, never a failed release."""
    from node_agent.sync.cache import cache_budget_mb, jobs_on_node, trim_when_idle

    budget_mb = cache_budget_mb(phase.node, spec.policies.cache_budget_mb if spec else None)
    if budget_mb is None:
        phase.log.info("shared cache: no budget set (policies.cache_budget_mb), nothing trimmed")
        return
    node = phase.node
    in_use = jobs_on_node(node) - {str(node.job_id)}
    try:
        s = trim_when_idle(node, budget_mb * 1024 * 1024, in_use)
    except (OSError, sqlite3.Error) as e:
        phase.log.warning("shared cache not trimmed: %s", e)
        return
    if s is None:
        phase.log.warning("shared cache not trimmed: a job prep held the cache for 2 minutes")
        return
    mb = 1024 * 1024
    phase.log.info(
        "shared cache: %.1f MB -> %.1f MB (budget %d MB): evicted %d object(s), %.1f MB freed;"
        " %d object(s) kept for job(s) still on this node%s",
        s.bytes_before / mb,
        s.bytes_after / mb,
        budget_mb,
        s.evicted,
        s.bytes_freed / mb,
        s.protected,
        f" ({', '.join(sorted(in_use))})" if in_use else "",
    )
    if s.bytes_after > budget_mb * mb:
        phase.log.warning("shared cache is still over its budget: the rest is in use")


def run(phase: Phase) -> int:
    node = phase.node
    t0 = time.monotonic()
    spec = _load_spec(phase)
    uploaded = upload_logs(phase, spec)
    code = 0 if uploaded else int(ExitCode.UPLOAD)

    ctx = MountContext.create(node, phase.env, phase.redactor, phase.log)
    try:
        gone = unmount_records(ctx, scope=str(node.job_id))
        phase.log.info(
            "unmounted %d job mount(s)%s", len(gone), f": {', '.join(gone)}" if gone else ""
        )
    except NodeAgentError as e:
        phase.log.error("%s", str(e).splitlines()[0])
        code = code or int(e.exit_code)

    if spec is not None and spec.policies.cleanup == "keep":
        phase.log.info("policies.cleanup is 'keep': leaving %s for inspection", node.job_dir())
    else:
        for d in _working_dirs(phase):
            existed = d.exists()
            if remove_tree(d):
                phase.log.info("removed %s" if existed else "nothing to remove at %s", d)
            else:
                phase.log.warning("could not remove all of %s (files in use?)", d)
    _keep_cache_budget(phase, spec)
    phase.log.info("job release done in %.1fs", time.monotonic() - t0)
    if code:
        raise NodeAgentError(
            "job release: cleanup done, but "
            + (
                "log upload failed (see the phase log)"
                if not uploaded
                else "a job mount could not be unmounted"
            ),
            ExitCode(code),
        )
    return 0
