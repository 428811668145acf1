"""Maya command-line renderer: `Render -r arnold|vray|sw -proj -rd -im -s -e -b [extra] <scene>`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from node_agent.errors import ExitCode, SpecError
from node_agent.remap import maya_mel, resolve_map
from node_agent.renderers import maya_scan
from node_agent.renderers.base import (
    EXTENSIONS,
    CommandContext,
    Executables,
    Launch,
    ProgressPattern,
    Renderer,
    expected_frame_name,
    extra_args,
    frame_range,
    output_stem,
)

if TYPE_CHECKING:
    from node_agent.spec import Render

MAYA_FORMATS = {"PNG": "png", "JPEG": "jpeg", "OPEN_EXR": "exr", "TIFF": "tif"}
SUB_RENDERERS = ("arnold", "vray", "sw")


def build(render: Render, ctx: CommandContext, exe: str) -> Launch:
    sub = str(render.options.get("renderer", "arnold"))
    if sub not in SUB_RENDERERS:
        raise SpecError(
            f"render.options.renderer: '{sub}' is not one of: {', '.join(SUB_RENDERERS)}"
        )
    start, end, step = frame_range(ctx.frames, "maya")
    pattern = render.output.pattern
    pad = max(pattern.count("#"), 1)
    argv = [exe, "-r", sub, "-proj", str(ctx.assets_dir), "-rd", str(ctx.output_dir)]
    # -im <stem> -fnc name#.ext -pad N -> <stem><frame padded>.<ext>, e.g. frame_0001.png
    argv += ["-im", output_stem(pattern), "-fnc", "name#.ext", "-pad", str(pad)]
    argv += ["-of", MAYA_FORMATS[render.output.format]]
    argv += ["-s", str(start), "-e", str(end), "-b", str(step)]
    if sub == "arnold":
        argv += ["-ai:lve", str(render.options.get("verbosity", 2)), "-ai:ltc", "1"]
    if render.threads:
        argv += ["-n", str(render.threads)]
    if render.path_map:
        argv += ["-preRender", maya_mel(resolve_map(render.path_map, ctx.assets_dir))]
    argv += extra_args(render, ctx, exe)  # Render takes its options before the scene file
    argv.append(str(ctx.scene))
    ext = EXTENSIONS[render.output.format]
    expected = {f: expected_frame_name(pattern, f, ext) for f in ctx.frames}
    return Launch(argv, expected)


RENDERER = Renderer(
    name="maya",
    build=build,
    executables=Executables("Render", "Render.exe", "MAYA_", ("-help",)),
    code_flags=frozenset(  # Maya MEL
        {
            "-prerender",
            "-postrender",
            "-prelayer",
            "-postlayer",
            "-preframe",
            "-postframe",
            "-pre",
            "-post",
            "-insertprerendermel",
            "-insertpostrendermel",
        }
    ),
    failure_patterns={
        ExitCode.LICENSE: (r"License was not obtained", r"Render not licensed"),
        ExitCode.MISSING_ASSET: (
            r"Error: .*(?:Cannot find|Could not open|File not found)",
            r"\[mtoa\].*(?:not found|unable to open)",
            r"Error: Scene .* not found",
        ),
        ExitCode.CRASH: (r"Maya exited with status", r"Fatal Error\. Attempting to save"),
    },
    progress=(ProgressPattern(r"(?i)(?P<percent>\d+(?:\.\d+)?)\s*% done"),),  # Maya+Arnold
    licenses=("maya", "arnold"),  # Maya on the rendering images renders with Arnold
    path_remap="dirmap MEL given to -preRender (remap.maya_mel)",
    scan_dependencies=maya_scan.scan,
)
