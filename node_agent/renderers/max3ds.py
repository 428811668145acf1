"""3ds Max (Windows nodes): `3dsmaxcmdio -secure off -rfw:0 -start: -end: -outputName: <scene>`."""

from __future__ import annotations

from node_agent.remap import max_path_file, resolve_map
from node_agent.renderers.base import (
    EXTENSIONS,
    CommandContext,
    Launch,
    extra_args,
    frame_range,
    output_stem,
)
from node_agent.spec import Render


def build(render: Render, ctx: CommandContext, exe: str) -> Launch:
    start, end, step = frame_range(ctx.frames, "3dsmax")
    ext = EXTENSIONS[render.output.format]
    stem = output_stem(render.output.pattern) or "frame_"
    argv = [exe, "-secure", "off", "-rfw:0", "-v:5", f"-start:{start}", f"-end:{end}"]
    if step != 1:
        argv.append(f"-nthFrame:{step}")
    # 3ds Max appends a 4-digit frame number to the output name: frame_0001.png
    argv.append(f"-outputName:{ctx.output_dir / (stem + ext)}")
    files: dict[str, str] = {}
    if render.path_map:
        mxp = ctx.task_dir / "node_agent_paths.mxp"
        files[str(mxp)] = max_path_file(
            resolve_map(render.path_map, ctx.assets_dir), ctx.assets_dir
        )
        argv.append(f"-pathFile:{mxp}")
    argv += extra_args(render, ctx, exe)  # options come before the scene file
    argv.append(str(ctx.scene))
    expected = {f: f"{stem}{f:04d}{ext}" for f in ctx.frames}
    return Launch(argv, expected, files=files)
