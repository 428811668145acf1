"""`node-agent sync <source> <dest>` and `node-agent assets push <dir> --project <name>`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from node_agent.redact import Redactor
from node_agent.storage.credentials import AUTH_KINDS as _AUTH_KINDS

if TYPE_CHECKING:
    from node_agent.sync.cli_settings import CliStorage

AUTH_KINDS = list(_AUTH_KINDS)


def _storage_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--auth-env",
        default=None,
        help="Variable holding the secret (sas, account_key, connection_string).",
    )(fn)
    fn = click.option(
        "--auth", "auth_kind", type=click.Choice(AUTH_KINDS), default="emulator", show_default=True
    )(fn)
    fn = click.option(
        "--account-url",
        required=True,
        envvar="NODE_AGENT_ACCOUNT_URL",
        help="https://<account>.blob.core.windows.net (or Azurite's URL).",
    )(fn)
    return fn


def _storage(account_url: str, auth_kind: str, auth_env: str | None) -> CliStorage:
    """The storage options, checked by the job spec's rules without pydantic (its import
    and model building were ~60 ms of a no-op sync's start: sync/cli_settings.py)."""
    from node_agent.sync.cli_settings import cli_storage

    return cli_storage(account_url, auth_kind, auth_env)


def register(cli: click.Group) -> None:
    @cli.command("sync")
    @click.argument("source")
    @click.argument("dest", type=click.Path(path_type=Path))
    @_storage_options
    @click.option(
        "--manifest", default=None, help="Pinned manifest hash (source is <container>/<project>)."
    )
    @click.option(
        "--cache",
        "cache_dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Content store and state DB (default: .node-agent-cache beside DEST).",
    )
    @click.option(
        "--reserve-mb",
        default=1024,
        show_default=True,
        type=click.IntRange(0),
        help="Free space to keep.",
    )
    @click.option("--threads", default=16, show_default=True, type=click.IntRange(1, 128))
    @click.option(
        "--delete",
        is_flag=True,
        default=False,
        help="Mirror: also remove files in DEST that are not in the source (like rclone "
        "sync). Without it, local files not in the source are kept and counted (like "
        "rclone copy).",
    )
    def sync_cmd(
        source: str,
        dest: Path,
        account_url: str,
        auth_kind: str,
        auth_env: str | None,
        manifest: str | None,
        cache_dir: Path | None,
        reserve_mb: int,
        threads: int,
        delete: bool,
    ) -> None:
        """Sync <container>[/<prefix>] into DEST with the job-prep engine (by hand).

        Copies by default: a file the source holds is written (replacing what DEST had at
        that path), other files in DEST are kept and counted. --delete mirrors the source
        instead. A symbolic link in DEST on a source's path is replaced, never followed.
        The cache (--cache) must lie outside DEST, and DEST outside the cache."""
        from node_agent.runtime import run_command

        def go(r: Redactor) -> int:
            from node_agent.errors import AssetError
            from node_agent.sync.access import Access
            from node_agent.sync.cli_settings import cli_source
            from node_agent.sync.engine import SyncEngine

            src = cli_source(source, manifest)
            dest_abs = dest.resolve()
            cache = cache_dir or dest_abs.parent / ".node-agent-cache"
            _check_cache(cache, dest_abs, given=cache_dir is not None)
            engine = SyncEngine(
                cache,
                cache / "state",
                Access(_storage(account_url, auth_kind, auth_env), r),
                reserve_bytes=reserve_mb * 1024 * 1024,
                windows=os.name == "nt",
                threads=threads,
            )
            try:
                summary = engine.sync(f"manual:{dest_abs}", dest_abs, [src], prune=delete)
            finally:
                engine.close()
            if engine.local_files:
                what = "removed" if delete else "kept"
                hint = "" if delete else " (--delete would remove them)"
                click.echo(
                    f"sync: {what} {engine.local_files} local file(s) not in the source{hint}"
                )
            if summary.refused:
                raise AssetError(
                    f"{summary.refused} blob name(s) refused (first: {summary.refused_names[0]})"
                )
            return 0

        run_command(go)

    def _check_cache(cache: Path, dest_abs: Path, *, given: bool) -> None:
        """The cache is never inside what is synced (a mirror would remove it), nor DEST
        inside the cache: refused before anything is written."""
        from node_agent.errors import SpecError
        from node_agent.safepath import is_within

        if is_within(dest_abs, cache) or is_within(cache, dest_abs):
            where = f"--cache '{cache}'" if given else f"the default cache '{cache}' (--cache)"
            raise SpecError(
                f"{where} overlaps DEST '{dest_abs}': the cache must lie outside DEST and DEST "
                "outside the cache"
            )

    @cli.group("assets")
    def assets_group() -> None:
        """Project assets in blob storage."""

    @assets_group.command("push")
    @click.argument(
        "folder", metavar="FOLDER|SCENE.blend", type=click.Path(path_type=Path, exists=True)
    )
    @click.option("--project", required=True, help="Project name: the blob prefix <project>/.")
    @click.option(
        "--root",
        type=click.Path(path_type=Path, exists=True, file_okay=False),
        default=None,
        help="With SCENE.blend: the project folder whose layout is kept (default: the "
        "scene's folder); other dependencies go to _outside_project/ as BAT packs them.",
    )
    @click.option(
        "--allow-missing",
        is_flag=True,
        help="With SCENE.blend: push although dependencies are missing (each a warning).",
    )
    @click.option("--container", default="assets", show_default=True)
    @click.option(
        "--write-spec",
        "write_spec",
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        default=None,
        help="A job spec whose assets entry for this container and project gets the new "
        "manifest hash (in place; the rest of the file is kept as it is).",
    )
    @_storage_options
    def push_cmd(
        folder: Path,
        project: str,
        root: Path | None,
        allow_missing: bool,
        container: str,
        write_spec: Path | None,
        account_url: str,
        auth_kind: str,
        auth_env: str | None,
    ) -> None:
        """Upload FOLDER's new content by hash and write its manifest; prints the job spec
        lines pinning it, and the manifest hash last.

        Given a SCENE.blend instead of a folder: the scene and exactly the files it needs
        (Blender Asset Tracer), in the layout a BAT pack has (absolute paths rewritten)."""
        from node_agent.runtime import run_command

        def go(r: Redactor) -> int:
            from node_agent.errors import UsageError
            from node_agent.pack import scene_pack
            from node_agent.pins import check_pin_target, paste_lines, write_pin
            from node_agent.storage import BlobStore

            if write_spec is not None:  # refused before anything is uploaded
                check_pin_target(write_spec, container, project)
            from node_agent.sync.manifest import push, push_cache_file
            from node_agent.sync.progress import format_bytes

            # BlobStore reads storage.credentials.StorageSettings, which CliStorage gives
            settings = _storage(account_url, auth_kind, auth_env)
            store = BlobStore(settings, r)
            cache = push_cache_file(folder, account_url, container, project)
            if folder.is_dir():
                if root is not None or allow_missing:
                    raise UsageError(
                        "--root and --allow-missing go with a SCENE.blend, not a folder"
                    )
                s = push(store, container, project, folder, cache)
                scene = None
            else:
                with scene_pack(folder, root, allow_missing=allow_missing) as (files, notes):
                    for note in notes:
                        click.echo(f"node-agent: warning: {note}", err=True)
                    s = push(store, container, project, folder.parent, cache, files=files)
                scene = folder.absolute().relative_to((root or folder.parent).absolute())
            # the same bytes in the same units as the summary on stderr (format_bytes)
            click.echo(
                f"push: {s.files} files, {s.hashed} hashed, {s.uploaded} uploaded "
                f"({format_bytes(s.bytes_uploaded)}), {s.refused} refused"
            )
            if write_spec is not None:
                n = write_pin(write_spec, container, project, s.manifest)
                click.echo(f"{write_spec}: {n} assets entry(ies) pinned to this push")
            else:
                click.echo("# pin this push in the job spec (or use --write-spec job.yaml):")
                for line in paste_lines(container, project, s.manifest):
                    click.echo(line)
                if scene is not None:
                    click.echo(f"# render.scene: {scene.as_posix()}")
            click.echo(f"manifest {s.manifest}")
            return 0

        run_command(go)
