"""Make mounts idempotently: leave a readable mount alone, remount a stale one, refuse a
non-empty mount point, prove every mount by listing it with a timeout, unmount by scope.

Pool mounts (start task) live at <mounts dir>/<path>; job-scoped mounts at
<mounts dir>/jobs/<job id>/<path>. What is mounted is recorded in
<state dir>/mounts.json so job release and `node-agent mounts` can undo it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from node_agent import nodestate
from node_agent.azurite import AZURITE_KEY
from node_agent.batchenv import BatchNode
from node_agent.errors import MountError, NodeAgentError
from node_agent.mounts import azurefiles, blobfuse2, rclone
from node_agent.mounts.model import AzureFilesMount, Blobfuse2Mount, MountSpec, RcloneMount
from node_agent.mounts.plan import MountPaths, MountPlan
from node_agent.mounts.platform import Command, Platform, current, probe, run
from node_agent.redact import Redactor
from node_agent.runtime import write_atomic
from node_agent.safepath import ContainmentError, ensure_dirs

POOL = "pool"


@dataclass
class MountContext:
    node: BatchNode
    env: Mapping[str, str]
    redactor: Redactor
    log: logging.Logger
    platform: Platform
    probe_timeout: float = 30.0

    @classmethod
    def create(
        cls, node: BatchNode, env: Mapping[str, str], redactor: Redactor, log: logging.Logger
    ) -> MountContext:
        return cls(node, env, redactor, log, current(node.is_windows))


@dataclass
class MountResult:
    name: str
    driver: str
    target: str
    scope: str
    action: str  # "already mounted" | "mounted" | "remounted"
    entries: int
    seconds: float


def _key(m: MountSpec, scope: str) -> str:
    return m.name if scope == POOL else f"{scope}.{m.name}"


def target_for(ctx: MountContext, m: MountSpec, scope: str) -> Path:
    if isinstance(m, AzureFilesMount) and ctx.platform.windows:
        return Path(m.drive.upper())
    base = ctx.node.mounts_dir if scope == POOL else ctx.node.mounts_dir / "jobs" / scope
    return base / m.rel_path


def paths_for(ctx: MountContext, m: MountSpec, scope: str) -> MountPaths:
    key = _key(m, scope)
    return MountPaths(
        target=target_for(ctx, m, scope),
        config_dir=ctx.node.state_dir / "mounts",
        cache_dir=ctx.node.agent_dir / "mountcache" / key,
        log_file=ctx.node.logs_dir / f"mount-{key}.log",
    )


def resolve_secret(m: MountSpec, env: Mapping[str, str], redactor: Redactor) -> str | None:
    """The mount's secret from the variable its document names; registered for redaction."""
    if isinstance(m, AzureFilesMount):
        var: str | None = m.key_env
        field = "key_env"
    elif m.auth.mode == "emulator":
        return AZURITE_KEY
    else:
        var, field = m.auth.env, "auth.env"
    if not var:
        return None
    secret = env.get(var, "")
    if not secret:
        raise MountError(f"mount '{m.name}': {field}: environment variable {var} is not set")
    redactor.add(secret)
    redactor.add(secret.lstrip("?"))
    return secret


def plan_for(m: MountSpec, paths: MountPaths, secret: str | None, windows: bool) -> MountPlan:
    if isinstance(m, AzureFilesMount):
        return azurefiles.plan(m, paths, secret or "", windows)
    if windows:
        raise MountError(
            f"mount '{m.name}': driver '{m.driver}' is Linux-only; use azurefiles on Windows"
        )
    if isinstance(m, RcloneMount):
        return rclone.plan(m, paths, secret)
    assert isinstance(m, Blobfuse2Mount)
    return blobfuse2.plan(m, paths, secret)


def _secret_dir(config_dir: Path) -> Path:
    """state/mounts, a real 0700 folder: it is node_agent's own, so a link planted there (or
    at state/) is replaced by a real folder, never followed (the chmod, the locks and the
    key files would land in its target)."""
    ensure_dirs(
        config_dir.parent.parent, [config_dir.parent.name, config_dir.name], replace_links=True
    )
    os.chmod(config_dir, 0o700)
    return config_dir


def _write_secret_files(plan: MountPlan, config_dir: Path) -> None:
    _secret_dir(config_dir)
    for f in plan.files:
        write_atomic(f.path, f.text.encode(), mode=f.mode)


def _mount_point(m: MountSpec, target: Path, mounts_dir: Path) -> None:
    """Make the mount point a real folder below the node's mounts folder; a link on the way
    (a folder a task could write) is refused, never mounted over: the file system would
    cover the link's target (/etc, a tool's folder) for every later task."""
    if target.is_symlink():
        raise MountError(
            f"mount '{m.name}': mount point {target} is a symbolic link (to "
            f"{os.readlink(target)}): refused, a mount never follows a link"
        )
    if target.exists() and not target.is_dir():
        raise MountError(f"mount '{m.name}': mount point {target} exists and is not a folder")
    try:
        parts = list(target.relative_to(mounts_dir).parts)
    except ValueError:  # elsewhere (a test layout): its parents are the caller's
        target.mkdir(parents=True, exist_ok=True)
        return
    try:
        ensure_dirs(mounts_dir, parts, replace_links=False)
    except ContainmentError as e:
        raise MountError(f"mount '{m.name}': {e}") from None


# --- the record of what is mounted --------------------------------------------------
def read_records(node: BatchNode) -> list[dict[str, object]]:
    """Every mount node_agent recorded (state/mounts.json); [] when none."""
    return nodestate.read_mount_records(node)


def _update_records(
    node: BatchNode, add: dict[str, object] | None = None, drop: str | None = None
) -> None:
    node.state_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(nodestate.mount_records_path(node)) + ".lock", timeout=60):
        records = [
            r
            for r in read_records(node)
            if r.get("target") not in (drop, (add or {}).get("target"))
        ]
        if add:
            records.append(add)
        nodestate.write_mount_records(node, records)


# --- mount / unmount -------------------------------------------------------------
def ensure_mount(ctx: MountContext, m: MountSpec, scope: str = POOL) -> MountResult:
    """Mount `m` unless it is already mounted and readable. Two phases making the same
    mount at once (e.g. job prep of two jobs) take turns on a per-mount lock."""
    lock_dir = _secret_dir(ctx.node.state_dir / "mounts")
    try:
        with FileLock(str(lock_dir / f"{_key(m, scope)}.lock"), timeout=300):
            return _ensure_mount(ctx, m, scope)
    except Timeout:
        raise MountError(f"mount '{m.name}': another phase held its lock for 300s") from None


def _ensure_mount(ctx: MountContext, m: MountSpec, scope: str) -> MountResult:
    t0 = time.monotonic()
    secret = resolve_secret(m, ctx.env, ctx.redactor)
    paths = paths_for(ctx, m, scope)
    plan = plan_for(m, paths, secret, ctx.platform.windows)
    target = paths.target
    action = "mounted"
    if ctx.platform.is_mounted(target):
        p = probe(target, ctx.probe_timeout)
        if p.state == "ok":
            ctx.log.info(
                "mount %s: already mounted at %s and readable (%d entries)",
                m.name,
                target,
                p.entries,
            )
            _record(ctx, m, scope, target)
            return MountResult(
                m.name,
                m.driver,
                str(target),
                scope,
                "already mounted",
                p.entries,
                time.monotonic() - t0,
            )
        ctx.log.warning(
            "mount %s: stale mount at %s (%s): unmounting", m.name, target, p.detail or p.state
        )
        unmount_target(ctx, target, m.driver)
        action = "remounted"
    if plan.makes_dir:
        _mount_point(m, target, ctx.node.mounts_dir)
        if plan.needs_empty_target and any(target.iterdir()):
            raise MountError(
                f"mount '{m.name}': mount point {target} is not empty: refusing to mount over its files"
            )
    _write_secret_files(plan, paths.config_dir)
    paths.cache_dir.mkdir(parents=True, exist_ok=True)
    paths.log_file.parent.mkdir(parents=True, exist_ok=True)
    for cmd in plan.mount:
        ctx.log.info("mount %s: %s", m.name, ctx.redactor(cmd.display()))
        run(cmd, f"mount '{m.name}'", ctx.redactor, ctx.env)
    p = probe(target, ctx.probe_timeout)
    if p.state != "ok":
        unmount_target(ctx, target, m.driver)
        raise MountError(
            f"mount '{m.name}': {target} is not readable after mounting ({p.state}: {p.detail})"
        )
    _record(ctx, m, scope, target)
    seconds = time.monotonic() - t0
    ctx.log.info(
        "mount %s: %s at %s in %.1fs (%d entries)", m.name, action, target, seconds, p.entries
    )
    return MountResult(m.name, m.driver, str(target), scope, action, p.entries, seconds)


def _record(ctx: MountContext, m: MountSpec, scope: str, target: Path) -> None:
    _update_records(
        ctx.node,
        add={
            "name": m.name,
            "driver": m.driver,
            "target": str(target),
            "scope": scope,
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )


def unmount_target(ctx: MountContext, target: Path, driver: str) -> bool:
    """Unmount `target` if mounted (lazily, so a stale mount goes too); True if it was."""
    fstype = ctx.platform.fstype(target)
    if fstype is not None:
        cmd = ctx.platform.unmount_command(target, fstype)
        ctx.log.info("unmount %s: %s", target, cmd.display())
        run(cmd, f"unmount {target}", ctx.redactor, ctx.env)
    if driver == "rclone" and not ctx.platform.windows:
        n = rclone.stop_daemons(str(target))
        if n:
            ctx.log.info("unmount %s: stopped %d rclone process(es)", target, n)
    if ctx.platform.is_mounted(target):
        raise MountError(f"unmount {target}: still mounted after unmounting")
    return fstype is not None


def unmount_records(
    ctx: MountContext, scope: str | None = None, name: str | None = None
) -> list[str]:
    """Unmount recorded mounts of `scope` (or named `name`); never fails for what is gone."""
    done: list[str] = []
    failed: list[str] = []
    for r in read_records(ctx.node):
        if (scope is not None and r.get("scope") != scope) or (
            name is not None and r.get("name") != name
        ):
            continue
        try:  # one mount that will not go must not keep the others (and their keys) mounted
            target = Path(str(r["target"]))
            unmount_target(ctx, target, str(r.get("driver", "")))
        except (NodeAgentError, KeyError, OSError) as e:
            failed.append(
                f"{r.get('name')}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
            )
            continue
        _update_records(ctx.node, drop=str(target))
        if not ctx.platform.windows:
            _remove_empty_dirs(target, ctx.node.mounts_dir)
        done.append(str(r.get("name")))
    if failed:
        raise MountError("could not unmount " + "; ".join(failed))
    return done


def _remove_empty_dirs(target: Path, stop: Path) -> None:
    d = target
    while d != stop and stop in d.parents:
        try:
            d.rmdir()  # only ever removes an empty folder: never deletes through a mount
        except OSError:
            return
        d = d.parent


def ensure_mounts(
    ctx: MountContext, mounts: list[MountSpec], scope: str = POOL
) -> list[MountResult]:
    return [ensure_mount(ctx, m, scope) for m in mounts]


def results_json(results: list[MountResult]) -> list[dict[str, object]]:
    return [asdict(r) for r in results]


def pool_probe_timeout(node: BatchNode, default: float = 30.0) -> float:
    """`probe_timeout_s` of the pool config the start task kept, else `default`."""
    config = nodestate.kept_pool_config(node)
    return float(config.probe_timeout_s) if config is not None else default


def task_drive_commands(node: BatchNode) -> list[Command]:
    """Windows: `net use` for each Azure Files mount of the pool, to run before every task
    (a mapping does not survive between tasks). Reads the pool config the start task kept."""
    config = nodestate.read_pool_config(node)
    if config is None:
        return []
    return [azurefiles.net_use_command(m) for m in config.mounts if isinstance(m, AzureFilesMount)]


def map_task_drives(ctx: MountContext) -> list[str]:
    """Run `task_drive_commands` (Windows only; a no-op elsewhere); returns the drives mapped."""
    if not ctx.platform.windows:
        return []
    mapped = []
    for cmd in task_drive_commands(ctx.node):
        drive = cmd.argv[2]
        if not ctx.platform.is_mounted(Path(drive)):
            run(cmd, f"map drive {drive}", ctx.redactor, ctx.env)
        mapped.append(drive)
    return mapped


def map_drives_before_task(
    node: BatchNode, env: Mapping[str, str], redactor: Redactor, log: logging.Logger
) -> list[str]:
    """What the render phase calls first: map the pool's Azure Files drives on a Windows
    node (`map_task_drives`); nothing on Linux, where the start task's mounts persist."""
    if not node.is_windows:
        return []
    mapped = map_task_drives(MountContext.create(node, env, redactor, log))
    if mapped:
        log.info("mapped drive(s) for this task: %s", ", ".join(mapped))
    return mapped
