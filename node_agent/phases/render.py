"""The per-frame task: prepare the command, execute the renderer under the supervisor,
publish the results (render_result judges them).

Frames are uploaded while the renderer runs; logs and the summary are uploaded whatever
the outcome (the summary last, so it never points at a blob that is not there).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from node_agent.batchenv import BatchNode
from node_agent.classify import OutputMonitor
from node_agent.conventions import job_container
from node_agent.errors import ExitCode, NodeAgentError, RenderError, UploadError, UsageError
from node_agent.frames import parse_frames
from node_agent.output_record import Ledger, Stored
from node_agent.outputs import Layout, open_source, upload_logs, upload_preview
from node_agent.phases import render_rerun
from node_agent.phases.render_env import renderer_env, show_env
from node_agent.phases.render_process import Sigterm, process_started_at
from node_agent.phases.render_result import missing_frames, summary_doc, verdict
from node_agent.renderers import CommandContext, Launch, build_launch
from node_agent.runtime import Phase, write_atomic
from node_agent.spec import JobSpec, load_spec
from node_agent.storage.retry import RetryPolicy, policy
from node_agent.supervise import Options, RunResult, supervise
from node_agent.watcher import ProgressiveUploader, Uploaded

if TYPE_CHECKING:
    from node_agent.storage import BlobStore


def _command_text(argv: list[str], windows: bool) -> str:
    return subprocess.list2cmdline(argv) if windows else shlex.join(argv)


def dry_run(phase: Phase, launch: Launch, env: dict[str, str], windows: bool) -> int:
    print("command: " + phase.redactor(_command_text(launch.argv, windows)))
    for i, arg in enumerate(launch.argv):
        print(f"argv[{i}]: {phase.redactor(arg)}")
    for path in launch.files:
        print(f"writes: {path}")
    for k in sorted(env):
        print(f"env: {k}={show_env(phase, k, env[k])}")
    return 0


def dry_run_node(spec_path: Path | None, env: Mapping[str, str] | None = None) -> BatchNode | None:
    """`render --dry-run` outside a Batch task (no AZ_BATCH_NODE_ROOT_DIR): the stand-in
    node (BatchNode.stand_in) for the spec's job, said in one line on stderr; None on a node."""
    env = os.environ if env is None else env
    if env.get("AZ_BATCH_NODE_ROOT_DIR"):
        return None
    if spec_path is None:
        raise UsageError("--dry-run outside a Batch task needs --spec (no job prep ran here)")
    spec = load_spec(spec_path)
    node = BatchNode.stand_in(spec.job_id)
    print(
        f"node-agent: dry run outside Batch: no AZ_BATCH_* variable, assuming the stand-in "
        f"node at {node.root_dir} (job {node.job_id}, task {node.task_id}); nothing is written",
        file=sys.stderr,
    )
    return node


@dataclass(frozen=True)
class Prepared:
    """Everything decided before the renderer starts (nothing written yet)."""

    spec: JobSpec
    frames: list[int]
    launch: Launch
    env: dict[str, str]
    out_dir: Path
    layout: Layout
    meta: dict[str, str]
    retry: RetryPolicy
    agent_started: float
    # a re-run: frames an earlier run of this task already stored whole (render_rerun)
    skipped: dict[int, Stored] = field(default_factory=dict)
    store: BlobStore | None = None  # made early when storage was read before the render
    ledger: Ledger | None = None  # what the uploader records for a later re-run
    # Batch's retry of an attempt that ended with a cause no retry fixes: (code, reason)
    not_retried: tuple[ExitCode, str] | None = None

    @property
    def nothing_to_render(self) -> bool:
        return self.not_retried is not None or (bool(self.skipped) and not self.launch.expected)


@dataclass(frozen=True)
class Executed:
    """How the renderer's run went, and the uploader that ran beside it."""

    result: RunResult | None
    start_error: str
    monitor: OutputMonitor
    uploader: ProgressiveUploader
    times: dict[str, float]


def run(phase: Phase, frames_text: str, spec_path: Path | None, dry: bool) -> int:
    """Prepare the command, execute the renderer (frames uploaded as they appear), publish
    the verdict, summary and logs. Raises the task's exit class (first real cause)."""
    try:
        prepared = prepare(phase, frames_text, spec_path, read_storage=not dry)
        if dry:
            return dry_run(phase, prepared.launch, prepared.env, phase.node.is_windows)
        executed = execute(phase, prepared)
    finally:
        gc.enable()  # paused by the CLI for the start (re-enabled once the renderer runs)
    return publish(phase, prepared, executed)


def _load_spec(phase: Phase, spec_path: Path | None) -> JobSpec:
    spec = load_spec(spec_path or phase.node.job_spec_path())
    if spec.storage.auth.env:
        phase.redactor.add(phase.env.get(spec.storage.auth.env))
        if spec.storage.auth.expose_to_renderer:
            phase.log.warning(
                "storage.auth.expose_to_renderer is on: the renderer gets $%s, the storage "
                "secret; it can reach the renderer's logs and outputs",
                spec.storage.auth.env,
            )
    return spec


def prepare(
    phase: Phase, frames_text: str, spec_path: Path | None, read_storage: bool = True
) -> Prepared:
    """The spec, the frames, the renderer's command and environment, where outputs go.
    With `read_storage`, frames an earlier run of this task stored whole are left out of
    the command (render_rerun); a dry run does not read storage."""
    agent_started = process_started_at()
    node = phase.node
    if node.is_windows:  # drive mappings do not survive between tasks: map them again
        # imported here: the mount model and its SDK cost a Linux task ~50 ms of its start
        from node_agent.mounts.manager import map_drives_before_task

        map_drives_before_task(node, phase.env, phase.redactor, phase.log)
    spec = _load_spec(phase, spec_path)
    try:
        frames = parse_frames(frames_text)
    except ValueError as e:
        raise UsageError(f"--frames: {e}") from None
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
    launch_env = {**phase.env, **spec.render.env}
    launch = build_launch(spec.render, ctx, launch_env)
    layout = Layout(
        spec.render.output.container or job_container(str(node.job_id)),
        str(node.task_id),
        spec.render.output.prefix,
    )
    meta = {"job": str(node.job_id), "task": str(node.task_id), "node": node.node_id}
    retry = policy(spec.policies)
    rerun = render_rerun.Narrowed(launch)
    store = None
    spec_bytes = (spec_path or node.job_spec_path()).read_bytes()
    ledger = Ledger(str(node.job_id), str(node.task_id), hashlib.sha256(spec_bytes).hexdigest())
    if read_storage:  # a re-run renders only the frames not in storage (render_rerun)
        reader, store = render_rerun.open_reader(
            spec.storage, phase.redactor, phase.env, layout.container, retry
        )
        try:
            rerun = render_rerun.narrow(
                phase.log, reader, spec.render, ctx, launch, launch_env, layout, ledger
            )
        finally:
            reader.close()
    launch = rerun.launch
    env = renderer_env(phase, spec, launch.env)
    return Prepared(
        spec,
        frames,
        launch,
        env,
        out_dir,
        layout,
        meta,
        retry,
        agent_started,
        rerun.skipped,
        store,
        ledger,
        rerun.not_retried,
    )


def _store_factory(
    phase: Phase, spec: JobSpec, made: BlobStore | None = None
) -> Callable[[], BlobStore]:
    """The uploader's store, made in its thread while the renderer starts (or the one the
    task made to read storage first): the uploader then creates the output container."""

    def make_store() -> BlobStore:
        if made is not None:
            return made
        from node_agent.storage import BlobStore

        return BlobStore(spec.storage, phase.redactor, phase.env, retry=policy(spec.policies))

    return make_store


def _options(
    phase: Phase,
    p: Prepared,
    monitor: OutputMonitor,
    times: dict[str, float],
    cancel: threading.Event,
    uploader: ProgressiveUploader,
) -> Options:
    render = p.spec.render

    def on_start(pid: int) -> None:
        times["renderer_started_at"] = time.time()
        gc.enable()  # paused by the CLI for the start
        uploader.begin()  # the storage SDK loads now, beside the renderer

    return Options(
        env=p.env,
        cwd=phase.node.task_working_dir,
        log_path=phase.node.task_dir / "renderer.log",
        timeout_s=render.timeout_s,
        stall_s=render.stall_timeout_s,
        grace_s=render.kill_grace_s,
        on_line=monitor,
        on_start=on_start,
        cancel=cancel,
        last_activity=lambda: monitor.last_progress,
        redact=phase.redactor,
    )


def execute(phase: Phase, p: Prepared) -> Executed:
    """Write the launch's files, run the renderer under the supervisor while the uploader
    sends frames as they appear. SIGTERM to node-agent or a fatal upload error cancels."""
    for path, text in p.launch.files.items():
        write_atomic(Path(path), text.encode("utf-8"))
    monitor = OutputMonitor(p.spec.render.renderer, report=lambda s: phase.log.info("%s", s))
    if not p.nothing_to_render:
        command = phase.redactor(_command_text(p.launch.argv, phase.node.is_windows))
        phase.log.info("running: %s", command)
    times: dict[str, float] = {"agent_started_at": p.agent_started}
    result: RunResult | None = None
    start_error = ""
    with Sigterm() as cancel:
        uploader = ProgressiveUploader(
            _store_factory(phase, p.spec, p.store),
            p.layout,
            p.out_dir,
            p.meta,
            retry=p.retry,
            on_fatal=lambda e: cancel.set(),
            ledger=p.ledger,
        ).start(defer_store=True)
        try:
            if not p.nothing_to_render:
                opts = _options(phase, p, monitor, times, cancel, uploader)
                result = supervise(p.launch.argv, opts)
        except OSError as e:
            start_error = f"cannot start '{p.launch.argv[0]}': {e.strerror or e}"
        finally:
            uploader.begin()  # the renderer did not start (or nothing to render)
    times["renderer_ended_at"] = time.time()
    return Executed(result, start_error, monitor, uploader, times)


def _finish_uploads(phase: Phase, p: Prepared, x: Executed) -> UploadError | None:
    try:
        x.uploader.finish()
    except UploadError as e:
        return e
    except NodeAgentError as e:  # no blob store at all: nothing can be uploaded
        phase.log.error("renderer stopped, outputs stay in %s: %s", p.out_dir, e)
        raise
    return None


def publish(phase: Phase, p: Prepared, x: Executed) -> int:
    """Finish the uploads, judge the run (render_result.verdict), write the summary (exactly
    what storage holds), upload the logs and the summary last. The exit class is raised."""
    node = phase.node
    upload_error = _finish_uploads(phase, p, x)
    outputs = x.uploader.done()  # exactly what storage holds from this task
    x.times["uploads_done_at"] = time.time()
    missing = missing_frames(outputs, p.launch.expected, p.agent_started)
    not_uploaded = x.uploader.problems()
    failure = x.monitor.failure()
    code, reason = verdict(
        x.result,
        failure,
        missing,
        p.launch.expected,
        upload_error,
        not_uploaded,
        x.start_error,
        timeout_s=p.spec.render.timeout_s,
        stall_s=p.spec.render.stall_timeout_s,
    )
    if p.not_retried is not None:
        code, reason = p.not_retried
    elif p.nothing_to_render and upload_error is None and not not_uploaded:
        code, reason = (
            ExitCode.OK,
            (
                f"all {len(p.frames)} frame(s) already in storage from an earlier run of this "
                "task; nothing rendered"
            ),
        )
    summary_path = _write_summary(phase, p, x, code, reason, outputs, not_uploaded)
    phase.log.info(
        "task %s: %s; %d output file(s) uploaded to %s",
        node.task_id,
        reason,
        len(outputs),
        p.layout.container,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    logs = [node.task_dir / n for n in ("stdout.txt", "stderr.txt", "renderer.log")]
    logs += _phase_log_files(phase)
    log_error: UploadError | None = None
    try:
        upload_logs(x.uploader.store, p.layout, [*logs, summary_path], p.meta, p.retry)
    except UploadError as e:
        log_error = e
    if p.ledger is not None and p.not_retried is None:  # the verdict for Batch's retry
        stored = len(p.launch.expected) - len(missing)
        render_rerun.record_verdict(
            phase.log, x.uploader.store, p.layout, p.ledger, code, reason, x.result, stored
        )
    if code is ExitCode.UPLOAD and upload_error is not None:
        raise upload_error
    if code is not ExitCode.OK:
        raise RenderError(reason, code)
    if log_error is not None:
        raise log_error
    return 0


def _write_summary(
    phase: Phase,
    p: Prepared,
    x: Executed,
    code: ExitCode,
    reason: str,
    outputs: list[Uploaded],
    not_uploaded: dict[str, str],
) -> Path:
    """The preview (of the last frame) and summary.json, written redacted; its path."""
    preview = None
    if outputs:
        last = max(outputs, key=lambda u: (u.frame is not None, u.frame or 0, u.rel))
        preview = upload_preview(
            x.uploader.store,
            p.layout,
            lambda: open_source(p.out_dir, last.source),
            p.meta,
            name=last.rel,
        )
    summary = summary_doc(
        node=phase.node,
        frames=p.frames,
        command=p.launch.argv,
        code=code,
        reason=reason,
        result=x.result,
        monitor=x.monitor,
        outputs=outputs,
        times=x.times,
        preview=preview,
        not_uploaded=not_uploaded,
        skipped=p.skipped,
        not_started=p.not_retried is not None,
    )
    summary_path = phase.node.task_dir / "summary.json"
    write_atomic(summary_path, phase.redactor(json.dumps(summary, indent=2)).encode())
    return summary_path


def _phase_log_files(phase: Phase) -> list[Path]:
    """The phase's own log file (written by logs.setup_logging), if any."""
    out = []
    for h in phase.log.handlers:
        name = getattr(h, "baseFilename", None)
        if name and os.path.isfile(name):
            out.append(Path(name))
    return out
