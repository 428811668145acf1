"""`node-agent job ...` (watch, download, report, terminate, requeue) and `node-agent pool
...` (resize, delete): the client a TD follows a job with, on a local pool (`--local
WORKDIR`) or a Batch account (the endpoint and credentials of `batch submit`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from node_agent.errors import UsageError
from node_agent.redact import Redactor
from node_agent.runtime import run_command

_F = Callable[..., Any]


def _batch_options(f: _F) -> _F:
    for opt in reversed(
        [
            click.option(
                "--endpoint",
                envvar="AZURE_BATCH_ENDPOINT",
                default=None,
                help="Batch account URL (default: $AZURE_BATCH_ENDPOINT).",
            ),
            click.option(
                "--account",
                "account_name",
                envvar="AZURE_BATCH_ACCOUNT",
                default=None,
                help="Account name for shared key auth (default: $AZURE_BATCH_ACCOUNT or the URL).",
            ),
            click.option(
                "--key-env",
                default="AZURE_BATCH_ACCESS_KEY",
                show_default=True,
                help="Variable holding the shared key; unset means Entra ID (azure-identity).",
            ),
            click.option(
                "--poll",
                "poll_s",
                type=float,
                default=5.0,
                show_default=True,
                help="Seconds between looks at the job or pool.",
            ),
        ]
    ):
        f = opt(f)
    return f


def _wait_option(default: float, until: str) -> Callable[[_F], _F]:
    """`--wait` (wait_s): how long a command waits for `until`."""
    return click.option(
        "--wait",
        "wait_s",
        type=float,
        default=default,
        show_default=True,
        help=f"Seconds to wait for {until}.",
    )


def _job_options(f: _F) -> _F:
    f = click.option(
        "--spec",
        "spec_path",
        type=click.Path(path_type=Path),
        default=None,
        help="The job's spec (its storage: frames, logs, summaries). Local pool: default the "
        "copy on its nodes, else its Azurite.",
    )(f)
    f = click.option(
        "--local",
        "local",
        type=click.Path(path_type=Path),
        default=None,
        help="A local pool's folder (`local run --workdir`) instead of a Batch account.",
    )(f)
    return _batch_options(f)


def _batch(
    endpoint: str | None,
    account: str | None,
    key_env: str,
    job: str,
    spec: Path | None,
    r: Redactor,
) -> Any:
    from node_agent.batch.submit import SubmitOptions
    from node_agent.jobclient.batchrest import BatchBackend

    if not endpoint:
        raise UsageError(
            "no Batch account: pass --endpoint (or $AZURE_BATCH_ENDPOINT), or --local WORKDIR"
        )
    opts = SubmitOptions(endpoint=endpoint, account_name=account, key_env=key_env)
    return BatchBackend(opts, job, spec, r)


def _backend(kw: dict[str, Any], job: str, r: Redactor) -> Any:
    if kw["local"] is not None:
        from node_agent.jobclient.local import LocalBackend

        return LocalBackend(kw["local"], job, kw["spec_path"], r)
    return _batch(kw["endpoint"], kw["account_name"], kw["key_env"], job, kw["spec_path"], r)


@click.group("job")
def job_group() -> None:
    """Follow a job: watch it, download its frames, make its report, terminate or requeue it."""


@job_group.command("watch")
@click.argument("job")
@_job_options
@click.option(
    "--timeout", "timeout_s", type=float, default=None, help="Stop looking after this long (s)."
)
@click.option("--plain", is_flag=True, help="Plain lines even on a terminal.")
def watch_cmd(job: str, timeout_s: float | None, plain: bool, **kw: Any) -> None:
    """Live view of JOB's tasks (queued/preparing/running/done/failed), frames uploaded,
    per-node job prep, each failure's reason and logs. Exits with the job's result: 0 when
    every task succeeded, else the failed task's exit code."""
    from node_agent.jobclient.watch import watch

    def go(r: Redactor) -> int:
        backend = _backend(kw, job, r)
        view = watch(
            backend,
            poll_s=kw["poll_s"],
            timeout_s=timeout_s,
            fancy=False if plain else None,
            out=lambda s: click.echo(r(s)),
        )
        if not view.finished:
            raise UsageError(f"job {job} still runs after --timeout {timeout_s:g}s")
        return view.result()

    run_command(go)


def _blobs(backend: Any) -> Any:
    blobs = backend.blobs()
    if blobs is None:
        raise UsageError(
            f"job {backend.job_id}: its storage is unknown: pass --spec (the spec it was "
            "submitted with)"
        )
    return blobs


@job_group.command("download")
@click.argument("job")
@click.argument("dest", type=click.Path(path_type=Path))
@_job_options
@click.option("--follow", is_flag=True, help="Keep downloading new frames until the job ends.")
@click.option(
    "--logs", is_flag=True, help="Also each task's $TaskLog files, into DEST/logs/<task>/."
)
def download_cmd(job: str, dest: Path, follow: bool, logs: bool, **kw: Any) -> None:
    """JOB's frames ($TaskOutput) into DEST, one flat folder named by the output pattern.
    Files already there and identical are skipped; each file written is checked against the
    blob's Content-MD5 (else its size) before it takes its name."""
    from node_agent.jobclient.download import download, refused_error

    def go(r: Redactor) -> int:
        backend = _backend(kw, job, r)
        exists = getattr(backend, "exists", None)
        if follow and exists is not None:  # a local run just started: wait for its job
            t0 = time.monotonic()
            while not exists() and time.monotonic() - t0 < 60:
                time.sleep(0.5)
        blobs = _blobs(backend)
        ended = backend.finished if follow else None
        stats = download(
            blobs,
            dest,
            logs=logs,
            follow=ended,
            poll_s=kw["poll_s"],
            say=lambda s: click.echo(r(s)),
        )
        click.echo(
            f"job {job}: {len(stats.downloaded)} file(s) downloaded ({stats.bytes / 1e6:.2f} MB), "
            f"{len(stats.skipped)} already there and identical, into {dest}"
            + (f" ({stats.passes} passes)" if follow else "")
        )
        if stats.refused:
            raise refused_error(job, stats.refused)
        return 0

    run_command(go)


@job_group.command("report")
@click.argument("job")
@_job_options
@click.option(
    "-o",
    "--out",
    "out",
    type=click.Path(path_type=Path),
    default=None,
    help="The HTML file (default: report-<job>.html).",
)
def report_cmd(job: str, out: Path | None, **kw: Any) -> None:
    """One self-contained HTML page of JOB: contact sheet, tasks with node, times, exit and
    log tail, a per-node timeline, bytes synced and uploaded. Opens from disk, no server."""
    from node_agent.jobclient.report import write_report

    def go(r: Redactor) -> int:
        target = out or Path(f"report-{job}.html")
        view = write_report(_backend(kw, job, r), target, r)
        size = target.stat().st_size / 1e3
        click.echo(
            f"job {job}: report written to {target} ({size:.0f} kB; {view.counts()['done']} task(s) done)"
        )
        return 0

    run_command(go)


def _batch_only(kw: dict[str, Any], job: str, r: Redactor, what: str) -> Any:
    if kw.get("local") is not None:
        raise UsageError(
            f"{what} talks to Batch: a local pool run ends with `local run` (Ctrl-C stops it)"
        )
    return _batch(kw["endpoint"], kw["account_name"], kw["key_env"], job, kw.get("spec_path"), r)


@job_group.command("terminate")
@click.argument("job")
@_job_options
@click.option(
    "--reason",
    default="UserTerminate",
    show_default=True,
    help="The terminate reason the portal shows.",
)
@_wait_option(600, "the job to end")
def terminate_cmd(job: str, reason: str, wait_s: float, **kw: Any) -> None:
    """End JOB now: no task starts, running tasks are stopped, job release runs."""
    from node_agent.jobclient.actions import terminate

    def go(r: Redactor) -> int:
        b = _batch_only(kw, job, r, "job terminate")
        with b.client:
            terminate(b, reason, kw["poll_s"], wait_s, lambda s: click.echo(r(s)))
        return 0

    run_command(go)


@job_group.command("requeue")
@click.argument("job")
@_job_options
@click.option(
    "--failed", "failed", is_flag=True, required=True, help="Requeue the failed tasks' frames."
)
def requeue_cmd(job: str, failed: bool, **kw: Any) -> None:
    """Render JOB's failed frames again: exactly the failed tasks' frames as new tasks (on
    Batch: in the job while it is active, else in a new job <job>-rq<n> made like it; on a
    local pool: a job <job>-rq<n> of those frames, its frames into JOB's container)."""
    from node_agent.jobclient.actions import requeue_failed

    def go(r: Redactor) -> int:
        if kw.get("local") is not None:
            from node_agent.jobclient.local import LocalBackend
            from node_agent.jobclient.requeue_local import requeue_local

            _, code = requeue_local(
                LocalBackend(kw["local"], job, kw["spec_path"], r), lambda s: click.echo(r(s))
            )
            return code
        b = _batch(kw["endpoint"], kw["account_name"], kw["key_env"], job, kw["spec_path"], r)
        with b.client:
            requeue_failed(b, lambda s: click.echo(r(s)))
        return 0

    run_command(go)


@click.group("pool")
def pool_group() -> None:
    """Resize or delete a Batch pool (nodes are billed while allocated, busy or idle)."""


@pool_group.command("resize")
@click.argument("pool_id")
@_batch_options
@click.option(
    "--nodes", type=click.IntRange(min=0), required=True, help="Dedicated nodes (0 included)."
)
@click.option(
    "--spot",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Spot / low-priority nodes.",
)
@_wait_option(1800, "the resize")
def resize_cmd(pool_id: str, nodes: int, spot: int, wait_s: float, **kw: Any) -> None:
    """Resize POOL_ID to --nodes dedicated (+ --spot) nodes; 0 stops the billing of nodes."""
    from node_agent.jobclient.actions import resize_pool

    def go(r: Redactor) -> int:
        b = _batch_only({**kw, "local": None}, "pool", r, "pool resize")
        with b.client:
            resize_pool(b, pool_id, nodes, spot, kw["poll_s"], wait_s, lambda s: click.echo(r(s)))
        return 0

    run_command(go)


@pool_group.command("delete")
@click.argument("pool_id")
@_batch_options
@_wait_option(1800, "the deletion")
def delete_cmd(pool_id: str, wait_s: float, **kw: Any) -> None:
    """Delete POOL_ID and its nodes."""
    from node_agent.jobclient.actions import delete_pool

    def go(r: Redactor) -> int:
        b = _batch_only({**kw, "local": None}, "pool", r, "pool delete")
        with b.client:
            delete_pool(b, pool_id, kw["poll_s"], wait_s, lambda s: click.echo(r(s)))
        return 0

    run_command(go)


def register(cli: click.Group) -> None:
    cli.add_command(job_group)
    cli.add_command(pool_group)
