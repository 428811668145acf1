"""`node-agent`: the command line for the four Batch phases, the local pool and ops tools."""

from __future__ import annotations

import gc

# no cyclic GC pass while this module's imports make their objects (~2.5 ms of every start);
# the collector's state is restored at the end of the module
_GC_WAS_ENABLED = gc.isenabled()
gc.disable()

from pathlib import Path  # noqa: E402

import click  # noqa: E402

from node_agent import __version__  # noqa: E402
from node_agent.commands.batch import pool_settings_option  # noqa: E402
from node_agent.errors import ExitCode  # noqa: E402
from node_agent.redact import Redactor  # noqa: E402
from node_agent.runtime import flush_stdout, run_command, start_phase, stdout_gone  # noqa: E402

EXIT_CODES_HELP = "Exit codes: " + ", ".join(f"{c.value} {c.name.lower()}" for c in ExitCode)

_log_format = click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines on stderr and in the phase log file.",
)
_verbose = click.option("-v", "--verbose", is_flag=True, help="Also print debug lines.")


class _Commands(click.Group):
    """The command group. The commands of node_agent/commands/ are added on first need (a
    name not defined here, or the listing of --help): the commands defined here, the Batch
    phases among them, start without importing those modules (~7 ms of every frame task's
    start, issue 16)."""

    _loaded = False

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            _register_command_modules(self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and not self._loaded:
            self._load()
            found = super().get_command(ctx, cmd_name)
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return super().list_commands(ctx)


@click.group(
    cls=_Commands,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES_HELP,
)
# the version itself, not package_name: that looks it up with importlib.metadata (~15 ms of
# every start); tests/integration/test_startup_imports.py keeps it equal to pyproject's
@click.version_option(version=__version__, prog_name="node-agent")
def cli() -> None:
    """node_agent: the on-node toolkit that makes an Azure Batch pool a render farm.

    The four Batch task kinds call: start-task (once per node), job-prep (once per
    node per job), render (each frame task) and job-release (when the job ends).
    Outside Batch, `local run` plays a whole pool on this machine.
    """


@cli.command("start-task", epilog=EXIT_CODES_HELP)
@click.option(
    "--pool-config",
    type=click.Path(path_type=Path),
    default=None,
    help="The node's pool config (the `node_config` of the Batch pool settings): mounts and "
    "health checks (docs/ops.md).",
)
@_log_format
@_verbose
def start_task_cmd(pool_config: Path | None, log_format: str, verbose: bool) -> None:
    """Prepare this node: node_agent's folders, node facts, mounts, health. Safe to re-run."""
    from node_agent.phases import start_task

    def go(r: Redactor) -> int:
        phase = start_phase("start-task", log_format=log_format, verbose=verbose, redactor=r)
        return start_task.run(phase, pool_config)

    run_command(go)


@cli.command("job-prep", epilog=EXIT_CODES_HELP)
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(path_type=Path),
    default="job.json",
    show_default=True,
    help="The job spec (a resource file of the job preparation task).",
)
@_log_format
@_verbose
def job_prep_cmd(spec_path: Path, log_format: str, verbose: bool) -> None:
    """Bring the job's spec and assets onto this node. Safe to re-run."""
    from node_agent.phases import job_prep

    def go(r: Redactor) -> int:
        phase = start_phase(
            "job-prep", need_job=True, log_format=log_format, verbose=verbose, redactor=r
        )
        return job_prep.run(phase, spec_path)

    run_command(go)


@cli.command("render", epilog=EXIT_CODES_HELP)
@click.option("--frames", required=True, help="Frames of this task: 1-10, 1-100x5, 1,5,10-12.")
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Job spec; default: the one job prep stored on this node.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the command line and environment; run nothing, write nothing. Outside a "
    "Batch task (no AZ_BATCH_* variable) it assumes a stand-in node under "
    "<temp>/node-agent-dry-run (docs/td-guide.md) and needs --spec.",
)
@_log_format
@_verbose
def render_cmd(
    frames: str, spec_path: Path | None, dry_run: bool, log_format: str, verbose: bool
) -> None:
    """Render this task's frames, supervise the renderer, upload frames and logs."""
    import gc

    # every frame task pays its start: no cyclic GC pass over the ~100k objects the imports
    # and the spec's models make (~10 ms) until the renderer runs (render.execute's on_start,
    # or render.run's end when it does not start)
    gc.disable()
    from node_agent.phases import render

    def go(r: Redactor) -> int:
        stand_in = render.dry_run_node(spec_path) if dry_run else None
        phase = start_phase(
            "render",
            need_job=True,
            log_format=log_format,
            verbose=verbose,
            redactor=r,
            stand_in=stand_in,
        )
        return render.run(phase, frames, spec_path, dry_run)

    run_command(go)


@cli.command("job-release", epilog=EXIT_CODES_HELP)
@_log_format
@_verbose
def job_release_cmd(log_format: str, verbose: bool) -> None:
    """Clean up after the job on this node; never fails because something is already gone."""
    from node_agent.phases import job_release

    def go(r: Redactor) -> int:
        phase = start_phase(
            "job-release", need_job=True, log_format=log_format, verbose=verbose, redactor=r
        )
        return job_release.run(phase)

    run_command(go)


@cli.command("validate", epilog=EXIT_CODES_HELP)
@click.argument("spec_path", type=click.Path(path_type=Path))
@click.option(
    "--assets",
    "assets_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="A local folder laid out like the job's assets: check that render.scene is there "
    "and that every file the scene needs is (textures, libraries, caches, references, "
    "through render.path_map); each missing one is a line, exit 12.",
)
@click.option(
    "--storage",
    is_flag=True,
    help="Check what the spec's asset sources hold in storage instead of a local folder "
    "(listed, or the pinned manifest; scene files downloaded to a temporary folder); "
    "each missing dependency is a line, exit 12.",
)
@click.option(
    "--allow-missing",
    is_flag=True,
    help="With --assets/--storage: missing dependencies are warnings.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Warnings (frames outside the scene's range) are errors: exit 2.",
)
def validate_cmd(
    spec_path: Path, assets_dir: Path | None, storage: bool, allow_missing: bool, strict: bool
) -> None:
    """Check a job spec; print one line per problem (exit 2) or a short description."""
    from node_agent import preflight
    from node_agent.errors import UsageError
    from node_agent.preflight_storage import check_storage
    from node_agent.spec import load_spec

    def go(r: Redactor) -> int:
        spec = load_spec(spec_path)
        notes: list[str] = []
        if assets_dir is not None and storage:
            raise UsageError("give --assets DIR or --storage, not both")
        if assets_dir is not None:
            spec, notes = preflight.with_scene_frames(spec, assets_dir)
            preflight.strict_notes(notes, strict=strict)
            notes += preflight.validate_assets(spec.render, assets_dir, allow_missing=allow_missing)
        elif storage:
            log = preflight.say_logger(
                "validate", lambda s: click.echo(f"node-agent: {s}", err=True)
            )
            spec = check_storage(
                spec,
                allow_missing=allow_missing,
                strict=strict,
                log=log,
                where=f"render.scene '{spec.render.scene}' in storage",
                redactor=r,
            )
        elif spec.render.frames is None:
            notes = ["render.frames: omitted: the scene's range is read with --assets / submit"]
        frames = spec.render.frame_list if spec.render.frames is not None else []
        for note in notes:
            click.echo(f"node-agent: warning: {note}", err=True)
        click.echo(
            f"{spec_path}: ok: job {spec.job_id}, {spec.render.renderer}, {len(frames)} frames "
            f"in tasks of {spec.render.frames_per_task}"
        )
        return 0

    run_command(go)


@cli.group("local")
def local_group() -> None:
    """Run jobs on a local pool: Batch's node layout and task kinds, on this machine."""


@local_group.command("run", epilog=EXIT_CODES_HELP)
@click.argument("spec_path", type=click.Path(path_type=Path))
@click.option("--nodes", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--slots", default=1, show_default=True, type=click.IntRange(1, 64), help="Task slots per node."
)
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=Path(".localpool"),
    show_default=True,
    help="Where the nodes' folders live.",
)
@click.option("--fresh", is_flag=True, help="Delete the pool's folders first (new nodes).")
@click.option(
    "--allow-missing",
    is_flag=True,
    help="Run although the upload lacks scene dependencies (checked in storage before any "
    "node starts; exit 12 naming each otherwise). Job prep still checks on the node.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="A frame range outside the scene's is an error (exit 2) before any node starts.",
)
@pool_settings_option
def local_run_cmd(
    spec_path: Path,
    nodes: int,
    slots: int,
    workdir: Path,
    fresh: bool,
    allow_missing: bool,
    strict: bool,
    pool_settings: Path | None,
) -> None:
    """Run a job on a local pool of NODES nodes with SLOTS task slots each.

    The job is the one `batch job-json` prints: its tasks, command lines, retries and
    exitConditions (a jobAction terminate ends the job)."""
    from node_agent.localpool.pool import run_local_job

    def go(r: Redactor) -> int:
        return run_local_job(
            spec_path,
            nodes=nodes,
            slots=slots,
            workdir=workdir,
            fresh=fresh,
            pool_settings=pool_settings,
            allow_missing=allow_missing,
            strict=strict,
        )

    run_command(go)


def _register_command_modules(group: click.Group) -> None:
    """The command modules of node_agent/commands/, each adding its commands to `group`
    (no name defined in this module: _Commands looks here first)."""
    from node_agent.commands import batch, job, mounts, ops, sync

    for module in (batch, job, mounts, ops, sync):
        module.register(group)


if _GC_WAS_ENABLED:
    gc.enable()


def main(argv: list[str] | None = None) -> int:
    """Every command ends here; `| head` closing stdout ends it quietly (runtime.BROKEN_PIPE)."""
    try:
        code = _main(argv)
    except BrokenPipeError:  # click's own output (--help, usage) to a closed pipe
        return stdout_gone()
    return flush_stdout() or code


def _main(argv: list[str] | None) -> int:
    try:
        cli.main(args=argv, prog_name="node-agent", standalone_mode=False)
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.ClickException as e:
        e.show()
        return int(ExitCode.USAGE)
    except click.exceptions.Abort:
        return int(ExitCode.INTERRUPTED)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    return 0
