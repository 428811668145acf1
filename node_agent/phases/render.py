"""The per-frame task: build the command, run and supervise the renderer, upload results.

Frames are uploaded while the renderer runs; logs and the summary are uploaded whatever
the outcome (the summary last, so it never points at a blob that is not there).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from node_agent.batchenv import ENTITLEMENT_TOKEN, ENTITLEMENT_VARS
from node_agent.classify import OutputMonitor
from node_agent.conventions import job_container
from node_agent.errors import ExitCode, NodeAgentError, RenderError, SpecError, UploadError
from node_agent.frames import parse_frames
from node_agent.mounts.manager import map_drives_before_task
from node_agent.mounts.model import AzureFilesMount, MountSpec
from node_agent.outputs import Layout, Retry, open_source, upload_logs, upload_preview
from node_agent.phases.render_result import missing_frames, summary_doc, verdict
from node_agent.poolconfig import load_pool_config
from node_agent.renderers import CommandContext, Launch, build_launch
from node_agent.runtime import Phase, write_atomic
from node_agent.spec import JobSpec, load_spec
from node_agent.supervise import Options, RunResult, supervise
from node_agent.watcher import ProgressiveUploader

if TYPE_CHECKING:
    from node_agent.storage import BlobStore

_SECRET_NAMES = ("KEY", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "SAS", "CONNECTION_STRING")


# Variables the Azure tools read a storage credential from; node_agent never passes them on.
WELL_KNOWN_SECRET_VARS = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_BATCH_ACCESS_KEY",
)


def _mount_secret_var(m: MountSpec) -> str | None:
    return m.key_env if isinstance(m, AzureFilesMount) else m.auth.env


def secret_vars(phase: Phase, spec: JobSpec) -> set[str]:
    """The variables node_agent holds a secret in: the spec's storage.auth.env, the secret
    variable of every mount (the job's, and the pool's as the start task kept its config),
    and the well-known Azure storage credential variables."""
    names = set(WELL_KNOWN_SECRET_VARS)
    if spec.storage.auth.env:
        names.add(spec.storage.auth.env)
    mounts = list(spec.mounts)
    pool_config = phase.node.state_dir / "pool-config.json"
    if pool_config.is_file():
        try:
            mounts += list(load_pool_config(pool_config).mounts)
        except SpecError as e:
            phase.log.warning("cannot read the pool's mounts (%s): %s", pool_config, e)
    names.update(v for v in map(_mount_secret_var, mounts) if v)
    if spec.storage.auth.env and spec.storage.auth.expose_to_renderer:
        names.discard(spec.storage.auth.env)  # the spec's explicit, loud opt-in
    return names


def renderer_env(
    phase: Phase, spec: JobSpec, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """Task environment + adapter + spec variables, then the entitlement pair exactly as Batch
    set it; without any variable node_agent holds a secret in (secret_vars), nor any other
    variable holding the same value. The renderer gets no storage credential."""
    env = dict(phase.env)
    env.update(extra or {})
    env.update(spec.render.env)
    secret_names = {n.upper() for n in secret_vars(phase, spec)}
    values = {phase.env.get(n, "").strip().lstrip("?") for n in secret_vars(phase, spec)}
    values = {v for v in values if len(v) >= 6}
    removed = sorted(
        k
        for k, v in env.items()
        if k.upper() not in ENTITLEMENT_VARS
        and (k.upper() in secret_names or v.strip().lstrip("?") in values)
    )
    for k in removed:
        del env[k]
    if removed:
        phase.log.info("not passed to the renderer (they hold secrets): %s", ", ".join(removed))
    for var in ENTITLEMENT_VARS:
        if var in phase.env:
            env[var] = phase.env[var]
        else:
            env.pop(var, None)
    return env


def _show_env(phase: Phase, name: str, value: str) -> str:
    if name == ENTITLEMENT_TOKEN or any(s in name.upper() for s in _SECRET_NAMES):
        return "***"
    return phase.redactor(value)


def _command_text(argv: list[str], windows: bool) -> str:
    return subprocess.list2cmdline(argv) if windows else shlex.join(argv)


def dry_run(phase: Phase, launch: Launch, env: dict[str, str], windows: bool) -> int:
    print("command: " + phase.redactor(_command_text(launch.argv, windows)))
    for i, arg in enumerate(launch.argv):
        print(f"argv[{i}]: {phase.redactor(arg)}")
    for path in launch.files:
        print(f"writes: {path}")
    for k in sorted(env):
        print(f"env: {k}={_show_env(phase, k, env[k])}")
    return 0


class _Sigterm:
    """While active, SIGTERM (Batch stopping the task) asks the supervisor to stop the renderer."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._old: Any = None

    def __enter__(self) -> threading.Event:
        try:
            self._old = signal.signal(signal.SIGTERM, lambda *_: self.event.set())
        except ValueError:  # not the main thread
            self._old = None
        return self.event

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def process_started_at() -> float:
    """Wall-clock start of this process, to ~10 ms on Linux (psutil's is rounded to the boot second)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of /proc/<pid>/stat: start time since boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - age
    except (OSError, ValueError, IndexError, AttributeError):
        return psutil.Process().create_time()


def run(phase: Phase, frames_text: str, spec_path: Path | None, dry: bool) -> int:
    agent_started = process_started_at()
    node = phase.node
    # Windows: drive mappings do not survive between tasks; map the pool's Azure Files again.
    map_drives_before_task(node, phase.env, phase.redactor, phase.log)
    spec = load_spec(spec_path or node.job_spec_path())
    if spec.storage.auth.env:
        phase.redactor.add(phase.env.get(spec.storage.auth.env))
        if spec.storage.auth.expose_to_renderer:
            phase.log.warning(
                "storage.auth.expose_to_renderer is on: the renderer gets $%s, the storage "
                "secret; it can reach the renderer's logs and outputs",
                spec.storage.auth.env,
            )
    try:
        frames = parse_frames(frames_text)
    except ValueError as e:
        raise NodeAgentError(f"--frames: {e}", ExitCode.USAGE) from None
    assets = node.job_assets_dir()
    out_dir = node.task_working_dir / "output"
    ctx = CommandContext(
        scene=assets / spec.render.scene,
        frames=frames,
        output_dir=out_dir,
        assets_dir=assets,
        task_dir=node.task_dir,
        job_id=str(node.job_id),
        task_id=str(node.task_id),
        windows=node.is_windows,
    )
    launch = build_launch(spec.render, ctx, {**phase.env, **spec.render.env})
    env = renderer_env(phase, spec, launch.env)
    if dry:
        return dry_run(phase, launch, env, node.is_windows)
    for path, text in launch.files.items():
        write_atomic(Path(path), text.encode("utf-8"))
    layout = Layout(
        spec.render.output.container or job_container(str(node.job_id)),
        str(node.task_id),
        spec.render.output.prefix,
    )
    meta = {"job": str(node.job_id), "task": str(node.task_id), "node": node.node_id}

    def make_store() -> BlobStore:  # in the uploader's thread, while the renderer starts
        from node_agent.storage import BlobStore

        return BlobStore(spec.storage, phase.redactor, phase.env)

    retry = Retry(budget_s=spec.policies.storage_retry_s)
    monitor = OutputMonitor(spec.render.renderer, report=lambda s: phase.log.info("%s", s))
    renderer_log = node.task_dir / "renderer.log"
    command = phase.redactor(_command_text(launch.argv, node.is_windows))
    phase.log.info("running: %s", command)
    times: dict[str, float] = {"agent_started_at": agent_started}
    result: RunResult | None = None
    start_error = ""
    with _Sigterm() as cancel:
        uploader = ProgressiveUploader(
            make_store, layout, out_dir, meta, retry=retry, on_fatal=lambda e: cancel.set()
        ).start()
        try:
            options = Options(
                env=env,
                cwd=node.task_working_dir,
                log_path=renderer_log,
                timeout_s=spec.render.timeout_s,
                stall_s=spec.render.stall_timeout_s,
                grace_s=spec.render.kill_grace_s,
                on_line=monitor,
                on_start=lambda pid: times.__setitem__("renderer_started_at", time.time()),
                cancel=cancel,
                last_activity=lambda: monitor.last_progress,
                redact=phase.redactor,
            )
            result = supervise(launch.argv, options)
        except OSError as e:
            start_error = f"cannot start '{launch.argv[0]}': {e.strerror or e}"
    times["renderer_ended_at"] = time.time()
    upload_error: UploadError | None = None
    errors: list[NodeAgentError] = []
    try:
        uploader.finish()
    except UploadError as e:
        upload_error = e
    except NodeAgentError as e:  # no blob store at all: nothing can be uploaded
        phase.log.error("renderer stopped, outputs stay in %s: %s", out_dir, e)
        raise
    outputs = uploader.done()  # exactly what storage holds from this task
    store = uploader.store
    times["uploads_done_at"] = time.time()
    missing = missing_frames(outputs, launch.expected, agent_started)
    not_uploaded = uploader.problems()
    code, reason = verdict(
        result, monitor.failure(), missing, launch.expected, upload_error, not_uploaded, start_error
    )
    preview = None
    if outputs:
        last = max(outputs, key=lambda u: (u.frame is not None, u.frame or 0, u.rel))
        preview = upload_preview(
            store,
            layout,
            lambda: open_source(out_dir, last.source),
            node.task_dir,
            meta,
            name=last.rel,
        )
    summary = summary_doc(
        node=node,
        frames=frames,
        command=launch.argv,
        code=code,
        reason=reason,
        result=result,
        monitor=monitor,
        outputs=outputs,
        times=times,
        preview=preview,
        not_uploaded=not_uploaded,
    )
    summary_path = node.task_dir / "summary.json"
    write_atomic(summary_path, phase.redactor(json.dumps(summary, indent=2)).encode())
    phase.log.info(
        "task %s: %s; %d output file(s) uploaded to %s",
        node.task_id,
        reason,
        len(outputs),
        layout.container,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    logs = [node.task_dir / n for n in ("stdout.txt", "stderr.txt", "renderer.log")]
    logs += _phase_log_files(phase)
    try:
        upload_logs(store, layout, [*logs, summary_path], meta, retry)
    except UploadError as e:
        errors.append(e)
    if code is ExitCode.UPLOAD and upload_error is not None:
        raise upload_error
    if code is not ExitCode.OK:
        raise RenderError(reason, code)
    if errors:
        raise errors[0]
    return 0


def _phase_log_files(phase: Phase) -> list[Path]:
    """The phase's own log file (written by logs.setup_logging), if any."""
    out = []
    for h in phase.log.handlers:
        name = getattr(h, "baseFilename", None)
        if name and os.path.isfile(name):
            out.append(Path(name))
    return out
