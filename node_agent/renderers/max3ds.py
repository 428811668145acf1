"""3ds Max (Windows nodes): `3dsmaxcmdio -secure off -rfw:0 -start: -end: -outputName: <scene>`.

- render.path_map: a `-pathFile:` .mxp written in the scene's own folder. Microsoft's
  render script (Azure/BatchExplorer-data ncj/3dsmax/scripts/3dsmax.ps1) moves the scene
  next to the path file: "If we're using a path file we need to ensure the scene file is
  located at the same location otherwise 3ds Max 2018 IO has issues finding textures".
  node_agent keeps the scene where it is (its relative paths stay right) and puts the path
  file beside it instead: the job's assets folder is the job's own writable view
  (sync/isolation), and the name carries the task id so concurrent tasks never share one.
- pool licences: ncj/3dsmax/standard/pool.template.json applicationLicenses
  ["3dsmax", "[parameters('renderer')]"], renderer one of "arnold" (its default) or "vray";
  render.options.renderer says which (scanline/art need no licence beyond 3dsmax).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from node_agent.errors import ExitCode
from node_agent.remap import max_path_file, resolve_map
from node_agent.renderers.base import (
    CommandContext,
    Executables,
    Launch,
    Renderer,
    extra_args,
    host_renderer,
    range_output,
)

if TYPE_CHECKING:
    from node_agent.spec import Render


# render.options.renderer -> the pool's applicationLicenses besides "3dsmax"
RENDERER_LICENSES: dict[str, tuple[str, ...]] = {
    "arnold": ("arnold",),
    "vray": ("vray",),
    "scanline": (),
    "art": (),
}


def licenses(options: Mapping[str, object]) -> tuple[str, ...]:
    return ("3dsmax", *RENDERER_LICENSES[host_renderer(options, RENDERER_LICENSES)])


def build(render: Render, ctx: CommandContext, exe: str) -> Launch:
    # an unknown name is a spec error before any node starts
    host_renderer(render.options, RENDERER_LICENSES)
    out = range_output(render, ctx, "3dsmax", default_stem="frame_")
    argv = [exe, "-secure", "off", "-rfw:0", "-v:5", f"-start:{out.start}", f"-end:{out.end}"]
    if out.step != 1:
        argv.append(f"-nthFrame:{out.step}")
    # 3ds Max appends a 4-digit frame number to the output name: frame_0001.png
    argv.append(f"-outputName:{ctx.output_dir / (out.stem + out.ext)}")
    files: dict[str, str] = {}
    if render.path_map:
        mxp = ctx.scene.parent / f"{ctx.scene.stem}.node_agent_{ctx.task_id}.mxp"
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
    licenses=licenses({}),  # the default renderer (arnold); licenses_for reads the option
    options_licenses=licenses,
    path_remap="a -pathFile: .mxp path file (remap.max_path_file)",
)
