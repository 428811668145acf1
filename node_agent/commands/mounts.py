"""`node-agent mounts list|unmount`: see and undo node_agent's mounts over SSH."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from node_agent.errors import ExitCode
from node_agent.redact import Redactor
from node_agent.runtime import run_command

_root = click.option(
    "--root",
    type=click.Path(path_type=Path),
    default=None,
    help="The node's AZ_BATCH_NODE_ROOT_DIR (default: from the environment or Batch's standard places).",
)


@click.group("mounts")
def mounts_group() -> None:
    """The mounts the start task (pool) and job prep (job-scoped) made on this node."""


@mounts_group.command("list")
@_root
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(root: Path | None, as_json: bool) -> None:
    """Each recorded mount, whether it is mounted, and whether it answers a listing."""
    from node_agent.mounts.manager import read_records
    from node_agent.mounts.platform import current, probe
    from node_agent.ops.nodeview import locate_node

    def go(r: Redactor) -> int:
        node = locate_node(root)
        platform = current(node.is_windows)
        rows = []
        for rec in read_records(node):
            target = str(rec.get("target"))
            mounted = platform.is_mounted(Path(target))
            state = probe(Path(target), 15).state if mounted else "not mounted"
            rows.append({**rec, "state": state})
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        for row in [] if as_json else rows:
            click.echo(
                f"{row['name']:<20} {row['driver']:<10} {row['scope']:<20} {row['state']:<12} {row['target']}"
            )
        if not rows and not as_json:
            click.echo("no mounts recorded on this node")
        return 0 if all(row["state"] == "ok" for row in rows) else int(ExitCode.MOUNT)

    run_command(go)


@mounts_group.command("unmount")
@_root
@click.option("--job", "job_id", default=None, help="Unmount this job's mounts.")
@click.option("--name", default=None, help="Unmount the mount with this name.")
@click.option("--all", "everything", is_flag=True, help="Unmount every recorded mount.")
def unmount_cmd(root: Path | None, job_id: str | None, name: str | None, everything: bool) -> None:
    """Unmount recorded mounts (lazily, so stale ones go too). Safe to repeat."""
    from node_agent.logs import get_logger
    from node_agent.mounts.manager import MountContext, unmount_records
    from node_agent.ops.nodeview import locate_node

    if not (job_id or name or everything):
        raise click.UsageError("say which: --job JOB, --name NAME or --all")

    def go(r: Redactor) -> int:
        node = locate_node(root)
        ctx = MountContext.create(node, dict(os.environ), r, get_logger("mounts"))
        done = unmount_records(ctx, scope=job_id, name=name)
        click.echo(f"unmounted: {', '.join(done) if done else 'nothing (already gone)'}")
        return 0

    run_command(go)


def register(cli: click.Group) -> None:
    cli.add_command(mounts_group)
