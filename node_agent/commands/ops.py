"""`node-agent doctor` and `node-agent status`: for ops on a node over SSH/RDP."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from node_agent.errors import ExitCode
from node_agent.redact import Redactor
from node_agent.runtime import run_command

_root = click.option(
    "--root",
    type=click.Path(path_type=Path),
    default=None,
    help="The node's AZ_BATCH_NODE_ROOT_DIR (default: from the task's variables, else "
    "/mnt/batch/tasks and Batch's other standard places).",
)


@click.command("doctor")
@_root
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Job spec whose storage to probe (default: the newest job on the node).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--verify-cache",
    "verify",
    is_flag=True,
    help="Also hash every object of the shared cache (reads all of it); a bad one is "
    "named and dropped with its state rows, so the next sync fetches it again.",
)
def doctor_cmd(root: Path | None, spec_path: Path | None, as_json: bool, verify: bool) -> None:
    """Say what is wrong with this node. Exit 0 only when every required check passes.

    Checks: Batch and entitlement variables (values redacted), node_agent's folders,
    free disk (minimum from the pool config the start task applied, else 2 GiB), shared
    cache size and budget (over budget is a warning), the sync state DB (PRAGMA
    quick_check; a corrupt one fails, the next job prep rebuilds it), with --verify-cache
    every cache object's hash, the job's renderer found as the
    render task finds it, every mount node_agent recorded (pool and job-scoped: ok,
    stale or not mounted; listed in a child process with a timeout), storage reachable
    with the job's credentials (one cheap request), and the last tasks that ran here
    with their exit class.
    """
    from node_agent.ops import doctor
    from node_agent.ops.nodeview import locate_node

    def go(r: Redactor) -> int:
        node = locate_node(root)
        checks, tasks = doctor.run_checks(node, dict(os.environ), r, spec_path, verify)
        doc = doctor.as_json(checks, tasks, node)
        if as_json:
            click.echo(r(json.dumps(doc, indent=2)))
        else:
            click.echo(r(doctor.report(checks, tasks, color=sys.stdout.isatty(), node=node)))
        return 0 if doc["ok"] else int(ExitCode.HEALTH)

    run_command(go)


@click.command("status")
@_root
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--all", "all_runs", is_flag=True, help="Every recorded phase run, not the last 30.")
def status_cmd(root: Path | None, as_json: bool, all_runs: bool) -> None:
    """What is on this node: every phase run (start task, job prep, render tasks, job
    release) with its exit, duration and cause; cached jobs with sizes and last use; render
    task summaries with their logs."""
    from node_agent.ops.nodeview import locate_node
    from node_agent.ops.status import status_doc, status_text

    def go(r: Redactor) -> int:
        node = locate_node(root)
        doc = status_doc(node, all_runs)
        text = json.dumps(doc, indent=2) if as_json else status_text(doc, node, all_runs)
        click.echo(r(text))
        return 0

    run_command(go)


@click.group("cache")
def cache_group() -> None:
    """The node's shared asset cache: what is in it (ls) and whether it is intact (verify)."""


@cache_group.command("ls")
@_root
@click.option("--job", default=None, help="Only the assets of this job's view.")
@click.option(
    "--path", "glob", default=None, help="Only asset paths (or blob names) matching this glob."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cache_ls_cmd(root: Path | None, job: str | None, glob: str | None, as_json: bool) -> None:
    """Each cached asset: size, last use, object id (sha256), the jobs whose view holds it
    and its path there; read from the sync state DB (read-only)."""
    from node_agent.ops import cachels
    from node_agent.ops.nodeview import locate_node

    def go(r: Redactor) -> int:
        node = locate_node(root)
        entries = cachels.select(cachels.cache_entries(node), job, glob)
        if as_json:
            click.echo(r(json.dumps(cachels.as_json(entries), indent=2)))
        else:
            click.echo(r(cachels.as_text(entries, node)))
        return 0

    run_command(go)


@cache_group.command("verify")
@_root
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cache_verify_cmd(root: Path | None, as_json: bool) -> None:
    """Hash every cache object (doctor --verify-cache): a bad one is named and dropped with
    its state rows, so the next sync fetches it again. Exit 20 when one was bad."""
    from node_agent.ops import doctor
    from node_agent.ops.nodeview import locate_node

    def go(r: Redactor) -> int:
        checks = doctor.verify_cache_checks(locate_node(root))
        doc = doctor.as_json(checks, [])
        if as_json:
            click.echo(r(json.dumps(doc, indent=2)))
        else:
            click.echo(r(doctor.report(checks, [], color=sys.stdout.isatty())))
        return 0 if doc["ok"] else int(ExitCode.HEALTH)

    run_command(go)


def register(cli: click.Group) -> None:
    cli.add_command(doctor_cmd)
    cli.add_command(status_cmd)
    cli.add_command(cache_group)
    from node_agent.commands.azurite_cmd import azurite_group

    cli.add_command(azurite_group)
