"""Blender: `blender -b <scene> [-P remap.py] -o <out>/<pattern> -F <fmt> [extra] -f <frames>`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from node_agent.errors import ExitCode
from node_agent.remap import blender_script, resolve_map
from node_agent.renderers import blender_scan
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


def build(render: Render, ctx: CommandContext, exe: str) -> Launch:
    fmt = render.output.format
    argv = [exe, "-b", str(ctx.scene), "-noaudio"]
    files: dict[str, str] = {}
    if render.path_map:
        script = ctx.task_dir / "node_agent_remap.py"
        files[str(script)] = blender_script(resolve_map(render.path_map, ctx.assets_dir))
        argv += ["-P", str(script)]  # runs after the scene is loaded, before rendering
    argv += ["-o", str(ctx.output_dir / render.output.pattern), "-F", fmt, "-x", "1"]
    if render.threads:
        argv += ["-t", str(render.threads)]
    engine = render.options.get("engine")
    if engine:
        argv += ["-E", str(engine)]
    # Blender handles arguments in order: options (the TD's last, so they win), then the
    # frames. It ignores everything after '--' (left for scripts' sys.argv): that part of
    # extra_args goes after the frames.
    extra = extra_args(render, ctx, exe)
    script_args = extra[extra.index("--") :] if "--" in extra else []
    argv += extra[: len(extra) - len(script_args)]
    argv += ["-f", ",".join(str(f) for f in ctx.frames), *script_args]
    ext = EXTENSIONS[fmt]
    expected = {f: expected_frame_name(render.output.pattern, f, ext) for f in ctx.frames}
    return Launch(argv, expected, files=files)


RENDERER = Renderer(
    name="blender",
    build=build,
    executables=Executables("blender", "blender.exe", "BLENDER_", ("--version",)),
    code_flags=frozenset({"--python-expr"}),  # Blender Python
    failure_patterns={
        ExitCode.MISSING_ASSET: (
            r"^Error: Cannot read file",
            r"Warning: Path '.*' not found",
            r"Unable to open image",
            r"Cannot open library",
            r"not found in \w+ library",
        ),
        ExitCode.OUT_OF_MEMORY: (r"System is out of GPU memory", r"CUDA error: Out of memory"),
        ExitCode.CRASH: (r"Writing: .*\.crash\.txt", r"^Error: Not freed memory blocks"),
    },
    progress=(ProgressPattern(r"Fra:\s*(?P<frame>\d+).*?Sample (?P<done>\d+)/(?P<total>\d+)"),),
    saved=r"^Saved: '(.+)'",
    frame_list=True,
    path_remap="a -P script run after the scene loads (remap.blender_script)",
    scan_dependencies=blender_scan.scan,
    scene_frames=blender_scan.frame_range,
)
