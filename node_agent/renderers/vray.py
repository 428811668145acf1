"""V-Ray standalone: `vray -sceneFile=<scene> -frames=<a-b> -imgFile=<out> -display=0`."""

from __future__ import annotations

from node_agent.remap import resolve_map, vray_assets_path
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
    start, end, step = frame_range(ctx.frames, "vray")
    ext = EXTENSIONS[render.output.format]
    stem = output_stem(render.output.pattern).rstrip("._") or "frame"
    frames = f"{start}-{end}" if step == 1 else ";".join(str(f) for f in ctx.frames)
    argv = [exe, f"-sceneFile={ctx.scene}", f"-frames={frames}"]
    # V-Ray inserts the frame number before the extension: <stem>.0001.png
    argv += [f"-imgFile={ctx.output_dir / (stem + ext)}", "-display=0", "-autoClose=1"]
    argv += [f"-verboseLevel={render.options.get('verbosity', 3)}"]
    if render.threads:
        argv.append(f"-numThreads={render.threads}")
    argv += extra_args(render, ctx, exe)  # last: a TD's -option=value overrides the adapter's
    env = {
        "VRAY_ASSETS_PATH": vray_assets_path(
            resolve_map(render.path_map, ctx.assets_dir), ctx.assets_dir, ctx.windows
        )
    }
    expected = {f: f"{stem}.{f:04d}{ext}" for f in ctx.frames}
    return Launch(argv, expected, env=env)
