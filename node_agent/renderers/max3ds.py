"""3ds Max (Windows nodes): `3dsmaxcmdio -secure off -rfw:0 -start: -end: -outputName: <scene>`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from node_agent.errors import ExitCode
from node_agent.remap import max_path_file, resolve_map
from node_agent.renderers.base import (
    CommandContext,
    Executables,
    Launch,
    Renderer,
    extra_args,
    range_output,
)

if TYPE_CHECKING:
    from node_agent.spec import Render


def build(render: Render, ctx: CommandContext, exe: str) -> Launch:
    out = range_output(render, ctx, "3dsmax", default_stem="frame_")
    argv = [exe, "-secure", "off", "-rfw:0", "-v:5", f"-start:{out.start}", f"-end:{out.end}"]
    if out.step != 1:
        argv.append(f"-nthFrame:{out.step}")
    # 3ds Max appends a 4-digit frame number to the output name: frame_0001.png
    argv.append(f"-outputName:{ctx.output_dir / (out.stem + out.ext)}")
    files: dict[str, str] = {}
    if render.path_map:
        mxp = ctx.task_dir / "node_agent_paths.mxp"
        files[str(mxp)] = max_path_file(
            resolve_map(render.path_map, ctx.assets_dir), ctx.assets_dir
        )
        argv.append(f"-pathFile:{mxp}")
    argv += extra_args(render, ctx, exe)  # options come before the scene file
    argv.append(str(ctx.scene))
    return Launch(argv, out.expected(ctx.frames), files=files)


RENDERER = Renderer(
    name="3dsmax",
    build=build,
    executables=Executables("3dsmaxcmdio", "3dsmaxcmdio.exe", "3DSMAX_", ("-?",)),
    failure_patterns={
        ExitCode.MISSING_ASSET: (
            r"Missing (?:external file|map|bitmap|dll)",
            r"Error loading file",
        ),
        ExitCode.LICENSE: (r"license.*(?:error|failed|not available)",),
    },
    licenses=("3dsmax",),
    path_remap="a -pathFile: .mxp path file (remap.max_path_file)",
)
