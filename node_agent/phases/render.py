"""The per-frame task: build the command, run and supervise the renderer, upload results."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

from node_agent.batchenv import ENTITLEMENT_TOKEN, ENTITLEMENT_VARS
from node_agent.conventions import job_container
from node_agent.errors import ExitCode, NodeAgentError, RenderError
from node_agent.frames import format_frames, parse_frames
from node_agent.outputs import upload_logs, upload_outputs
from node_agent.renderers import EXTENSIONS, CommandContext, build_command, expected_frame_name
from node_agent.runtime import Phase, write_atomic
from node_agent.spec import JobSpec, load_spec
from node_agent.storage import BlobStore
from node_agent.supervise import RunResult, run_supervised


def renderer_env(phase: Phase, spec: JobSpec) -> dict[str, str]:
    """Task environment + the spec's variables, with the entitlement pair exactly as Batch set it."""
    env = dict(phase.env)
    env.update(spec.render.env)
    for var in ENTITLEMENT_VARS:
        if var in phase.env:
            env[var] = phase.env[var]
        else:
            env.pop(var, None)
    return env


def classify(result: RunResult, missing: list[int]) -> tuple[ExitCode, str]:
    if result.timed_out:
        return ExitCode.TIMEOUT, "renderer exceeded render.timeout_s and was killed"
    if result.stalled:
        return ExitCode.TIMEOUT, "renderer printed nothing for render.stall_timeout_s and was killed"
    if result.signal is not None:
        return ExitCode.CRASH, f"renderer was killed by signal {result.signal}"
    if result.returncode:
        return ExitCode.RENDER_FAILED, f"renderer exited with code {result.returncode}"
    if missing:
        return ExitCode.MISSING_FRAMES, f"renderer exited 0 but frames {format_frames(missing)} are missing"
    return ExitCode.OK, "ok"


def run(phase: Phase, frames_text: str, spec_path: Path | None, dry_run: bool) -> int:
    node = phase.node
    spec = load_spec(spec_path or node.job_spec_path())
    try:
        frames = parse_frames(frames_text)
    except ValueError as e:
        raise NodeAgentError(f"--frames: {e}", ExitCode.USAGE) from None
    assets = node.job_assets_dir()
    out_dir = node.task_working_dir / "output"
    ctx = CommandContext(
        scene=assets / spec.render.scene, frames=frames, output_dir=out_dir, assets_dir=assets,
        task_dir=node.task_dir, job_id=str(node.job_id), task_id=str(node.task_id),
        windows=node.is_windows,
    )
    env = renderer_env(phase, spec)
    argv = build_command(spec.render, ctx, env)
    if dry_run:
        print("command: " + shlex.join(argv))
        for k in sorted(set(spec.render.env) | set(ENTITLEMENT_VARS)):
            if k in env:
                print(f"env: {k}={'***' if k == ENTITLEMENT_TOKEN else phase.redactor(env[k])}")
        return 0
    out_dir.mkdir(parents=True, exist_ok=True)
    store = BlobStore(spec.storage, phase.redactor, phase.env)
    container = spec.render.output.container or job_container(str(node.job_id))
    store.ensure_container(container)
    renderer_log = node.task_dir / "renderer.log"
    phase.log.info("running: %s", shlex.join(argv))
    result = run_supervised(
        argv, env=env, cwd=node.task_working_dir, log_path=renderer_log,
        timeout_s=spec.render.timeout_s, stall_s=spec.render.stall_timeout_s,
    )
    ext = EXTENSIONS[spec.render.output.format]
    missing = [
        f for f in frames
        if not (out_dir / expected_frame_name(spec.render.output.pattern, f, ext)).is_file()
    ]
    code, reason = classify(result, missing)
    meta = {"job": str(node.job_id), "task": str(node.task_id), "node": node.node_id}
    outputs: list[dict[str, object]] = []
    upload_error: NodeAgentError | None = None
    try:
        outputs = upload_outputs(store, container, str(node.task_id), out_dir, meta, spec.render.output.prefix)
    except NodeAgentError as e:
        upload_error = e
    summary = {
        "job": node.job_id, "task": node.task_id, "node": node.node_id,
        "frames": format_frames(frames), "command": argv, "exit_class": code.name.lower(),
        "exit_code": int(code), "reason": reason, "renderer_returncode": result.returncode,
        "wall_s": round(result.wall_s, 3), "cpu_s": round(result.cpu_s, 3),
        "peak_rss_bytes": result.peak_rss, "outputs": outputs,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    summary_path = node.task_dir / "summary.json"
    write_atomic(summary_path, phase.redactor(json.dumps(summary, indent=2)).encode())
    sys.stdout.flush()
    sys.stderr.flush()
    logs = [node.task_dir / n for n in ("stdout.txt", "stderr.txt", "renderer.log")]
    upload_logs(store, container, str(node.task_id), [*logs, summary_path], meta)
    phase.log.info(
        "task %s: %s; %d frame file(s) uploaded to %s in %.1fs", node.task_id, reason,
        len(outputs), container, result.wall_s,
    )
    if upload_error is not None:
        raise upload_error
    if code is not ExitCode.OK:
        raise RenderError(reason, code)
    return 0


