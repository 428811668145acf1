"""Job release: upload this node's job prep and release logs, unmount the job's mounts and
its view (the overlay job prep mounted on jobs/<job>/assets), remove the job's per-job files
and working data (never through a link, never outside node_agent/jobs), then trim the shared asset cache to its
budget (least recently used content first, never content of a job still on the node).

It never fails because something is already gone, and every wait is bounded so the
whole phase ends well within Batch's 15-minute limit for release tasks.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import time
from pathlib import Path
from urllib.parse import urlparse

from node_agent import safepath
from node_agent.conventions import job_container, task_log
from node_agent.errors import ExitCode, NodeAgentError, SpecError
from node_agent.mounts.manager import MountContext, unmount_records
from node_agent.runtime import Phase
from node_agent.spec import JobSpec, spec_from_data
from node_agent.storage import BlobStore
from node_agent.storage.retry import policy
from node_agent.sync.isolation import mounts_under, read_record, unmount_under

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
    out = []
    for p, tid, name in items:
        if p.is_symlink():  # planted by a task (the logs folder is node-wide): never followed
            phase.log.warning(
                "log %s is a symbolic link (to %s): not uploaded, links are never followed",
                p,
                os.readlink(p),
            )
        elif p.is_file():
            out.append((p, task_log(tid, f"{node.node_id}/{name}")))
    return out


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
        # every request under the spec's storage retry policy, each try bounded by what is
        # left of the phase's upload budget
        retry = policy(spec.policies)
        store = BlobStore(spec.storage, phase.redactor, phase.env, retry=retry)
        store.ensure_container(container)
        for i, (path, blob) in enumerate(files):
            if time.monotonic() > deadline:
                phase.log.error(
                    "log upload stopped after %.0fs: %d file(s) not uploaded",
                    budget_s,
                    len(files) - i,
                )
                return False
            # a hard deadline, a throttled (ServerBusy) upload's longer budget included
            left = retry.within(deadline - time.monotonic())
            store.with_retry(left).upload_file(path, container, blob, content_type="text/plain")
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


def _writable_dirs(path: str) -> None:
    # Read-only folders block deletion: make them writable, never following a link. Files
    # are left alone on POSIX (a view file shares its inode with the cache object); Windows
    # refuses to delete a read-only file, so there files are made writable too.
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, stat.S_IRWXU)
    for dirpath, _dirs, files in os.walk(path):  # os.walk never descends a link
        try:
            if os.path.islink(dirpath):  # swapped for a link meanwhile: leave its target
                continue
            os.chmod(dirpath, stat.S_IRWXU, follow_symlinks=False)
        except (OSError, NotImplementedError):  # Linux cannot chmod without following
            try:
                if not os.path.islink(dirpath):
                    os.chmod(dirpath, stat.S_IRWXU)
            except OSError:
                pass
        for name in files if os.name == "nt" else []:
            try:
                os.chmod(os.path.join(dirpath, name), stat.S_IWRITE | stat.S_IREAD)
            except OSError:
                pass


def remove_tree(path: Path, attempts: int = 3, pause_s: float = 1.0) -> bool:
    """Remove `path` if present with safepath.remove_tree (never through a link); True when
    it is gone. Retries a few times for files that are briefly locked (Windows: a renderer
    still closing); never raises."""
    for i in range(attempts):
        if not os.path.lexists(path):
            return True
        try:
            safepath.remove_tree(path)
        except OSError:
            _writable_dirs(str(path))
        if not os.path.lexists(path):
            return True
        if i + 1 < attempts:
            time.sleep(pause_s)
    return not os.path.lexists(path)


def _take_down_view(phase: Phase) -> bool:
    """Unmount the job's view (its overlay) and anything else mounted in the job folder;
    a busy one is detached lazily. False when something is still mounted there."""
    job_dir = phase.node.job_dir()
    try:
        mounted = mounts_under(job_dir)
        busy = unmount_under(job_dir, phase.log)
        if mounted:
            phase.log.info(
                "job view unmounted (%s view): %s%s",
                read_record(job_dir).get("mode", "unknown"),
                ", ".join(mounted),
                " (lazily: still in use)" if busy else "",
            )
    except OSError as e:
        phase.log.error("cannot unmount the job view under %s: %s", job_dir, e)
    left = mounts_under(job_dir)
    if left:
        phase.log.error("still mounted, so not removed: %s", ", ".join(left))
    return not left


def _contained(phase: Phase, d: Path, root: Path) -> bool:
    """`d` is a folder name directly in `root`, and `root` is a real folder (no link)."""
    try:
        if stat.S_ISLNK(os.lstat(root).st_mode):
            phase.log.error("%s is a symbolic link: the job folder is not removed", root)
            return False
    except FileNotFoundError:
        return True  # nothing there to remove
    if d.parent != root or not safepath.is_within(root, d.parent):
        phase.log.error("%s is not inside %s: not removed", d, root)
        return False
    return True


def _remove_job_folders(phase: Phase, view_down: bool) -> None:
    """The job's per-job folder (spec, view, overlay) and the job prep working folder."""
    node = phase.node
    targets: list[tuple[Path, bool]] = [
        (node.job_dir(), view_down and _contained(phase, node.job_dir(), node.jobs_dir))
    ]
    if node.job_prep_working_dir:
        wd = node.job_prep_working_dir
        targets.append((wd, not mounts_under(wd)))
    for d, ok in targets:
        if not ok:
            phase.log.warning("left %s in place (see above)", d)
            continue
        existed = os.path.lexists(d)
        if remove_tree(d):
            phase.log.info("removed %s" if existed else "nothing to remove at %s", d)
        else:
            phase.log.warning("could not remove all of %s (files in use?)", d)


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

    view_down = _take_down_view(phase)
    if spec is not None and spec.policies.cleanup == "keep":
        phase.log.info(
            "policies.cleanup is 'keep': leaving %s for inspection (the tasks' writes to "
            "assets/ are in .overlay/upper when the view was an overlay)",
            node.job_dir(),
        )
    else:
        _remove_job_folders(phase, view_down)
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
