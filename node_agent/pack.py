"""`assets push SCENE.blend`: the scene and exactly the files it needs, laid out as a BAT
pack (blender_asset_tracer.pack.Packer, the packer Flamenco submits jobs with).

BAT traces every dependency (images, sequences, UDIM sets, linked libraries and what they
need, caches, sounds, fonts...), keeps a file under the project folder (the scene's folder
unless given) at its relative path when the .blend refers to it by a `//` path, and moves
anything else, an absolute path or a path outside the project, to
`_outside_project/<its absolute path without the root>`, rewriting the referring .blend
(a temporary copy; the TD's file is never touched) to a `//` path to it
(Packer._find_new_paths / _rewrite_paths, BAT 1.x). Nothing is copied here: the packer's
file transfer is replaced by a list of (source, path in the pack), which `assets push`
hashes and uploads like a folder's files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Any

from node_agent.errors import AssetError, MissingAssetError

PACK_INFO = "pack-info.txt"  # BAT's note at the top of a pack: not a dependency, not pushed


class _Plan:
    """Stands in for BAT's FileTransferer (pack/transfer.py): records what the packer would
    copy or move, transfers nothing."""

    def __init__(self) -> None:
        self.files: list[tuple[Path, PurePath]] = []
        self.progress_cb: Any = None

    def start(self) -> None:
        pass

    def queue_copy(self, src: Path, dst: PurePath) -> None:
        self.files.append((Path(src), dst))

    queue_move = queue_copy

    def done_and_join(self) -> None:
        pass

    def abort_and_join(self) -> None:
        pass

    def abort(self) -> None:
        pass

    @property
    def has_error(self) -> bool:
        return False

    def error_message(self) -> str:
        return ""


@contextmanager
def scene_pack(
    scene: Path, project: Path | None = None, *, allow_missing: bool = False
) -> Iterator[tuple[list[tuple[str, Path]], list[str]]]:
    """((path in the pack, file to read), ...) of the scene and its dependencies, and the
    warning lines; the rewritten .blend copies live until the context ends. A dependency
    missing on the workstation is MissingAssetError (exit 12) naming each, unless
    `allow_missing` (then each is a warning and left out)."""
    from blender_asset_tracer import blendfile
    from blender_asset_tracer.pack import Packer

    scene = Path(scene).absolute()
    root = (project or scene.parent).absolute()
    if not scene.is_file():
        raise AssetError(f"assets push: '{scene}' is not a file")
    try:
        scene.relative_to(root)
    except ValueError:
        raise AssetError(f"assets push: --root '{root}' does not hold '{scene}'") from None
    plan = _Plan()

    class _Packer(Packer):  # type: ignore[misc]
        def _create_file_transferer(self) -> Any:
            return plan

    logging.getLogger("blender_asset_tracer").setLevel(logging.ERROR)
    target = root / ".node-agent-pack"  # a path only: nothing is written there
    packer = _Packer(scene, root, str(target))
    try:
        try:
            packer.strategise()
        except Exception as e:  # BAT on a file it cannot parse
            raise AssetError(f"assets push: cannot read '{scene.name}' as a .blend: {e}") from None
        warnings: list[str] = []
        if packer.missing_files:
            lines = [f"missing dependency '{p}' (not found)" for p in sorted(packer.missing_files)]
            if not allow_missing:
                head = f"assets push: {scene.name}: {len(lines)} file(s) it needs are missing:"
                raise MissingAssetError("\n".join([head, *lines]))
            warnings = [f"{line} (allowed: not pushed)" for line in lines]
        packer.execute()
        files: dict[str, Path] = {}
        for src, dst in plan.files:
            rel = PurePath(dst).relative_to(target).as_posix()
            if rel != PACK_INFO:
                files.setdefault(rel, src)
        yield sorted(files.items()), warnings
    finally:
        packer.close()
        blendfile.close_all_cached()
