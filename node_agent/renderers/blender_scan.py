"""What a .blend needs, read without Blender by Blender Asset Tracer (BAT, the library
Flamenco packs jobs with; `blender-asset-tracer` on PyPI): images (single files, sequences,
UDIM tile sets), linked libraries and what the linked data needs in turn, movie clips,
sounds, fonts, cache files (Alembic, USD), volumes (OpenVDB), IES lights, mesh caches and
sequencer strips. Packed files are inside the .blend and not reported.

A linked library's path goes through render.path_map (`ScanContext.locate`) before BAT
opens it, so a library written as an absolute workstation path is followed as it will be on
the node. That takes one override of BAT's `BlockIterator._visit_linked_blocks` (BAT 1.x).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from node_agent.errors import MissingAssetError, SpecError
from node_agent.renderers.base import Dependency, ScanContext

_KINDS = {
    b"IM": "image",
    b"LI": "library",
    b"CF": "cache file",
    b"MC": "movie clip",
    b"SO": "sound",
    b"VF": "font",
    b"SC": "sequencer strip in scene",
    b"ME": "mesh",
    b"OB": "object",
    b"LA": "light",
    b"VO": "volume",
}


def _text(b: bytes) -> str:
    return bytes(b).decode("utf-8", "surrogateescape")


def _iterator(ctx: ScanContext) -> Any:
    from blender_asset_tracer import bpathlib
    from blender_asset_tracer.trace import file2blocks

    class MappedLibraries(file2blocks.BlockIterator):  # type: ignore[misc]
        """BAT's block walk, opening each linked library where path_map puts it."""

        def _visit_linked_blocks(self, blocks_per_lib: dict[Any, set[Any]]) -> Iterator[Any]:
            mapped: dict[Any, set[Any]] = collections.defaultdict(set)
            for lib_bpath, idblocks in blocks_per_lib.items():
                where = ctx.locate(_text(lib_bpath))
                mapped[bpathlib.BlendPath(where)] |= idblocks
            yield from super()._visit_linked_blocks(mapped)

    return MappedLibraries()


def scan(ctx: ScanContext) -> Iterator[Dependency]:
    """Every file path the .blend (and the libraries it links) refers to."""
    from blender_asset_tracer import blendfile
    from blender_asset_tracer.trace import asset_holding_blocks, blocks2assets

    logging.getLogger("blender_asset_tracer").setLevel(logging.ERROR)  # BAT warns per missing
    try:
        walker = _iterator(ctx)
        bfile = walker.open_blendfile(ctx.scene)
        seen: set[int] = set()
        for block in asset_holding_blocks(walker.iter_blocks(bfile)):
            for usage in blocks2assets.iter_assets(block):
                if hash(usage) in seen:
                    continue
                seen.add(hash(usage))
                written = _text(usage.asset_path)
                owner = Path(usage.block.bfile.filepath)
                code = bytes(usage.block.code)
                kind = _KINDS.get(code, _text(code))
                name = _text(usage.block_name.removeprefix(code))
                yield Dependency(
                    written,
                    f"{owner.name}: {kind} '{name}'",
                    (owner.parent,),
                    path=written[2:] if written.startswith("//") else "",
                    sequence=usage.is_sequence,
                )
    except Exception as e:  # BAT on a file it cannot parse: any error means "not read"
        raise MissingAssetError(
            f"render.scene: cannot read '{ctx.scene.name}' as a .blend: {e}"
        ) from None
    finally:
        blendfile.close_all_cached()


def frame_range(scene: Path) -> tuple[int, int, int]:
    """The .blend's active scene frame_start, frame_end and frame_step."""
    from blender_asset_tracer import blendfile
    from blender_asset_tracer.blendfile.exceptions import BlendFileError

    try:
        bfile = blendfile.open_cached(scene)
        glob = bfile.find_blocks_from_code(b"GLOB")
        sc = glob[0].get_pointer(b"curscene") if glob else None
        if sc is None:
            scenes = bfile.find_blocks_from_code(b"SC")
            sc = scenes[0] if scenes else None
        if sc is None:
            raise SpecError(f"render.scene: '{scene.name}' has no scene")
        return int(sc[b"r", b"sfra"]), int(sc[b"r", b"efra"]), int(sc[b"r", b"frame_step"])
    except (OSError, ValueError, KeyError, BlendFileError) as e:
        raise SpecError(f"render.scene: cannot read '{scene.name}' as a .blend: {e}") from None
    finally:
        blendfile.close_all_cached()
