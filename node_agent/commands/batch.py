"""`node-agent batch pool-json|job-json|package|submit`: from a job spec to an Azure Batch job."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from node_agent.redact import Redactor
from node_agent.runtime import run_command

F = TypeVar("F", bound=Callable[..., Any])


def pool_settings_option(f: F) -> F:
    """`--pool-settings FILE` (the Batch pool settings, passed as `pool_settings`), and its
    former name `--pool-config`, hidden and warned about: `--pool-config` is the start
    task's node config (`node-agent start-task --pool-config`), a different file."""

    @functools.wraps(f)
    def wrapper(*args: Any, pool_config_former: Path | None = None, **kwargs: Any) -> Any:
        if pool_config_former is not None:
            if kwargs.get("pool_settings") is not None:
                raise click.UsageError("give --pool-settings only (--pool-config is its old name)")
            click.echo(
                "node-agent: warning: --pool-config is now --pool-settings here (the Batch "
                "pool settings; --pool-config is the start task's node config)",
                err=True,
            )
            kwargs["pool_settings"] = pool_config_former
        return f(*args, **kwargs)

    wrapper = click.option(
        "--pool-config",
        "pool_config_former",
        type=click.Path(path_type=Path),
        default=None,
        hidden=True,
        help="Former name of --pool-settings.",
    )(wrapper)
    wrapper = click.option(
        "--pool-settings",
        "pool_settings",
        type=click.Path(path_type=Path),
        default=None,
        help="Batch pool settings (YAML/JSON): pool_id, vm_size, image, nodes, slots, package, "
        "mounts, node_config (the start task's pool config: what it applies and checks on "
        "every node).",
    )(wrapper)
    return cast(F, wrapper)


_os = click.option(
    "--os",
    "os_name",
    type=click.Choice(["linux", "windows"]),
    default=None,
    help="Node OS (overrides the pool settings).",
)


def _emit(doc: Any, out: Path | None) -> None:
    text = json.dumps(doc, indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}", err=True)


def register(cli: click.Group) -> None:
    @cli.group("batch")
    def batch_group() -> None:
        """Run a job spec on a real Azure Batch account (same scripts as the local pool)."""

    @batch_group.command("pool-json")
    @click.argument("spec_path", type=click.Path(path_type=Path))
    @pool_settings_option
    @_os
    @click.option(
        "--out", type=click.Path(path_type=Path), default=None, help="Write here, not stdout."
    )
    @click.option(
        "--node-config-out",
        type=click.Path(path_type=Path),
        default=None,
        help="Write the node config (pool-config.json) the start task downloads here, to "
        "upload where stderr says.",
    )
    def pool_json_cmd(
        spec_path: Path,
        pool_settings: Path | None,
        os_name: str | None,
        out: Path | None,
        node_config_out: Path | None,
    ) -> None:
        """The POST /pools body of a render pool for SPEC. On stderr: what must be uploaded,
        and where, before its nodes start, and warnings."""
        from node_agent.batch.pooljson import load_pool_settings, node_config_json, pool_json
        from node_agent.batch.warnings import batch_warnings, node_summary, pool_uploads
        from node_agent.spec import load_spec

        def go(r: Redactor) -> int:
            spec = load_spec(spec_path)
            cfg = load_pool_settings(pool_settings).with_os(os_name)  # type: ignore[arg-type]
            body = pool_json(cfg, spec)
            for line in batch_warnings(spec, cfg):
                click.echo(f"pool-json: warning: {line}", err=True)
            if node_config_out is not None and cfg.node_config is not None:
                node_config_out.write_bytes(node_config_json(cfg.node_config))
            config_file = str(node_config_out) if node_config_out else None
            for line in pool_uploads(spec, cfg, config_file):
                click.echo(f"pool-json: upload: {line}", err=True)
            click.echo(f"pool-json: nodes: {node_summary(cfg)}", err=True)
            _emit(body, out)
            return 0

        run_command(go)

    @batch_group.command("job-json")
    @click.argument("spec_path", type=click.Path(path_type=Path))
    @pool_settings_option
    @_os
    @click.option(
        "--out", type=click.Path(path_type=Path), default=None, help="Write here, not stdout."
    )
    def job_json_cmd(
        spec_path: Path, pool_settings: Path | None, os_name: str | None, out: Path | None
    ) -> None:
        """The job (POST /jobs) and its tasks for SPEC: {"job": ..., "tasks": [...]}."""
        from node_agent.batch.jobjson import job_json
        from node_agent.batch.pooljson import load_pool_settings
        from node_agent.batch.warnings import batch_warnings
        from node_agent.spec import load_spec

        def go(r: Redactor) -> int:
            spec = load_spec(spec_path)
            cfg = load_pool_settings(pool_settings).with_os(os_name)  # type: ignore[arg-type]
            doc = job_json(spec, cfg)
            for line in batch_warnings(spec, cfg):
                click.echo(f"job-json: warning: {line}", err=True)
            _emit(doc, out)
            return 0

        run_command(go)

    @batch_group.command("package")
    @click.option(
        "--out",
        "out_dir",
        type=click.Path(path_type=Path),
        required=True,
        help="Folder for node-agent-<version>.zip.",
    )
    @click.option(
        "--target",
        "targets",
        multiple=True,
        metavar="OS:PYTHON",
        help="Node OS and Python the wheels are for, e.g. linux:3.10 (repeatable; "
        "default: linux:3.10 linux:3.12 windows:3.12).",
    )
    def package_cmd(out_dir: Path, targets: tuple[str, ...]) -> None:
        """Zip node_agent, its bootstrap scripts and every dependency's wheel for the nodes."""
        from node_agent.batch.package import Target, build_package

        def go(r: Redactor) -> int:
            parsed = [Target.parse(t) for t in targets] or None
            out = build_package(out_dir, parsed)
            click.echo(f"{out} ({out.stat().st_size / 1e6:.1f} MB)")
            return 0

        run_command(go)

    @batch_group.command("submit")
    @click.argument("spec_path", type=click.Path(path_type=Path))
    @pool_settings_option
    @_os
    @click.option(
        "--endpoint",
        envvar="AZURE_BATCH_ENDPOINT",
        required=True,
        help="Batch account URL (default: $AZURE_BATCH_ENDPOINT).",
    )
    @click.option(
        "--account",
        "account_name",
        envvar="AZURE_BATCH_ACCOUNT",
        default=None,
        help="Account name for shared key auth (default: $AZURE_BATCH_ACCOUNT or the URL).",
    )
    @click.option(
        "--key-env",
        default="AZURE_BATCH_ACCESS_KEY",
        show_default=True,
        help="Variable holding the shared key; unset means Entra ID (azure-identity).",
    )
    @click.option("--create-pool", is_flag=True, help="Create the pool unless it exists.")
    @click.option(
        "--package",
        type=click.Path(path_type=Path),
        default=None,
        help="A `batch package` zip to upload; the start task installs from it.",
    )
    @click.option(
        "--assets",
        "assets_dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Local folder uploaded into the spec's first asset source; first the scene's "
        "dependencies are checked in it (exit 12 naming every missing one) and an omitted "
        "render.frames is taken from the scene.",
    )
    @click.option(
        "--allow-missing",
        is_flag=True,
        help="With --assets: submit although scene dependencies are missing (each a warning).",
    )
    @click.option(
        "--strict",
        is_flag=True,
        help="With --assets: warnings (frames outside the scene's range) are errors (exit 2).",
    )
    def submit_cmd(
        spec_path: Path,
        pool_settings: Path | None,
        os_name: str | None,
        endpoint: str,
        account_name: str | None,
        key_env: str,
        create_pool: bool,
        package: Path | None,
        assets_dir: Path | None,
        allow_missing: bool,
        strict: bool,
    ) -> None:
        """Upload package, spec and assets; create the pool if asked; add the job and its tasks."""
        from node_agent.batch.pooljson import load_pool_settings
        from node_agent.batch.submit import SubmitOptions, submit
        from node_agent.spec import load_spec

        def go(r: Redactor) -> int:
            spec = load_spec(spec_path)
            cfg = load_pool_settings(pool_settings).with_os(os_name)  # type: ignore[arg-type]
            opts = SubmitOptions(
                endpoint,
                account_name,
                key_env,
                create_pool,
                package,
                assets_dir,
                allow_missing=allow_missing,
                strict=strict,
            )
            submit(spec, cfg, opts, r, say=lambda line: click.echo(line))
            return 0

        run_command(go)
