"""Job preparation: keep the job's spec on the node, make the job's own mounts (scope = the
job id, undone by job release), bring its assets (incremental sync into the job's hard-link
view) and present them to the tasks isolated from the cache (an overlay or a copy)."""

from __future__ import annotations

import json
from pathlib import Path

from node_agent import preflight
from node_agent.assets import sync_job_assets
from node_agent.batch.jobcontrol import end_job_after
from node_agent.errors import AssetError, MountError, NodeAgentError, SpecError
from node_agent.mounts.manager import MountContext, ensure_mount, pool_probe_timeout
from node_agent.runtime import Phase, write_atomic
from node_agent.spec import JobSpec, load_spec
from node_agent.sync.access import Access
from node_agent.sync.isolation import JobView, requested_mode


def make_job_mounts(phase: Phase, spec: JobSpec) -> None:
    """Mount `spec.mounts` under fsmounts/jobs/<job id>/ (idempotent: a readable mount is
    left alone, a stale one remounted). Any failure is one MountError line (exit 21)."""
    if not spec.mounts:
        return
    node = phase.node
    scope = str(node.job_id)  # what job release unmounts (AZ_BATCH_JOB_ID, the spec's job_id)
    ctx = MountContext.create(node, phase.env, phase.redactor, phase.log)
    ctx.probe_timeout = pool_probe_timeout(node, ctx.probe_timeout)
    for m in spec.mounts:
        try:
            ensure_mount(ctx, m, scope=scope)
        except MountError:
            raise
        except NodeAgentError as e:
            raise MountError(f"job mount '{m.name}': {str(e).splitlines()[0]}") from None
        except (OSError, ValueError) as e:
            raise MountError(f"job mount '{m.name}': {type(e).__name__}: {e}") from None
    phase.log.info("job mounts ready: %s", ", ".join(m.name for m in spec.mounts))


def run(phase: Phase, spec_path: Path) -> int:
    """Job preparation; on a failure no retry can fix (exitpolicy: exit 2, 5, 12, an
    authorization 4) the job is terminated from here (batch/jobcontrol.py), because Batch
    never ends a job whose job preparation failed. The exit code stays the cause's."""
    try:
        return _prepare(phase, spec_path)
    except NodeAgentError as e:
        outcome = end_job_after(int(e.exit_code), str(e), phase.env, phase.redactor, phase.log)
        phase.log.info("job control: %s", outcome.note)
        raise


def _prepare(phase: Phase, spec_path: Path) -> int:
    node = phase.node
    spec = load_spec(spec_path)
    mode = requested_mode(phase.env)
    job_dir = node.job_dir()
    view = JobView(job_dir)
    # a re-run (node reboot) takes the tasks' view down first: the lower layer changes next
    view.take_down(phase.log)
    write_atomic(node.job_spec_path(), spec.model_dump_json(indent=2).encode())
    make_job_mounts(phase, spec)
    access = Access(spec.storage, phase.redactor, phase.env)
    assets = node.job_assets_dir()
    phase.log.info("syncing %d asset source(s) into %s", len(spec.assets), view.lower)
    summary = sync_job_assets(node, spec, access)
    phase.log.info("%s", summary.line())
    shown = view.present(mode, phase.log)
    record = json.dumps(
        {**summary.record(), "view_isolation": shown.mode, "view_reason": shown.reason}
    ).encode()
    write_atomic(job_dir / "prep.json", record)
    write_atomic(node.task_dir / "sync-summary.json", record)
    if summary.refused:
        raise AssetError(
            f"{summary.refused} blob name(s) refused (first: {summary.refused_names[0]}); "
            "the other assets were synced"
        )
    scene = assets / spec.render.scene
    if not scene.is_file():
        raise SpecError(f"render.scene: '{spec.render.scene}' is not in the job's assets")
    # the scene's own dependencies, looked up on the view the tasks will see (issue 13)
    preflight.enforce(
        spec.render,
        assets,
        allow_missing=spec.policies.missing_dependencies == "warn",
        log=phase.log,
        where=f"job prep: render.scene '{spec.render.scene}'",
    )
    return 0
