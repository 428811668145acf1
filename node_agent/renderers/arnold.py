"""Arnold standalone: `kick -i <scene.ass> -o <image> -of <fmt> -dw -dp -v <level>`.

kick renders one frame per call: a per-frame scene uses `#` in render.scene
(`shot.####.ass`), and tasks of more than one frame are refused.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from node_agent.errors import ExitCode, SpecError
from node_agent.remap import arnold_pathmap, resolve_map
from node_agent.renderers import arnold_scan
from node_agent.renderers.base import (
    EXTENSIONS,
    CommandContext,
    Executables,
    Launch,
    ProgressPattern,
    Renderer,
    expected_frame_name,
    extra_args,
)

if TYPE_CHECKING:
    from node_agent.spec import Render

KICK_FORMATS = {"PNG": "png", "JPEG": "jpg", "OPEN_EXR": "exr", "TIFF": "tif"}


def build(render: Render, ctx: CommandContext, exe: str) -> Launch:
    if len(ctx.frames) != 1:
        raise SpecError(
            "render.frames_per_task: arnold (kick) renders one frame per task; set it to 1"
        )
    frame = ctx.frames[0]
    scene = re.sub(r"#+", lambda m: f"{frame:0{len(m.group())}d}", ctx.scene.name)
    ext = EXTENSIONS[render.output.format]
    name = expected_frame_name(render.output.pattern, frame, ext)
    argv = [exe, "-i", str(ctx.scene.with_name(scene)), "-o", str(ctx.output_dir / name)]
    argv += ["-of", KICK_FORMATS[render.output.format], "-dw", "-dp"]
    argv += ["-v", str(render.options.get("verbosity", 2))]
    if render.threads:
        argv += ["-t", str(render.threads)]
    assets = str(ctx.assets_dir)
    argv += ["-set", "options.texture_searchpath", assets]
    argv += ["-set", "options.procedural_searchpath", assets]
    argv += ["-set", "options.abort_on_license_fail", "true"]  # an error, not a watermark
    argv += ["-set", "options.frame", str(frame)]
    argv += extra_args(render, ctx, exe)  # last: a TD's -set or -t overrides the adapter's
    env: dict[str, str] = {}
    files: dict[str, str] = {}
    if render.path_map:
        path = ctx.task_dir / "node_agent_pathmap.json"
        files[str(path)] = arnold_pathmap(resolve_map(render.path_map, ctx.assets_dir), ctx.windows)
        env["ARNOLD_PATHMAP"] = str(path)
    return Launch(argv, {frame: name}, env=env, files=files)


RENDERER = Renderer(
    name="arnold",
    build=build,
    executables=Executables("kick", "kick.exe", "ARNOLD_", ("-version",)),
    failure_patterns={
        ExitCode.MISSING_ASSET: (
            r"ERROR .*(?:can't open|could not open|unable to open|file not found)",
            r"\[texturesys\].*(?:not found|could not)",
            r"ERROR .*couldn't open .*\.ass",
        ),
        ExitCode.CRASH: (r"\bCRASHED\b", r"signal caught"),
    },
    progress=(ProgressPattern(r"(?i)(?P<percent>\d+(?:\.\d+)?)\s*% done"),),
    licenses=("arnold",),
    frame_list=True,
    path_remap="an ARNOLD_PATHMAP file (remap.arnold_pathmap)",
    scan_dependencies=arnold_scan.scan,
)
