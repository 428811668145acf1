"""V-Ray standalone: `vray -sceneFile=<scene> -frames=<list> -imgFile=<out> -display=0`.

`-frames=b0[-e0[,s0]]{;bn[-en[,sn]]}`: frames and stepped intervals separated by ';'
(`vray -help`, as reproduced in OSC/frame-renderer docs/mds/VRAY.md), so V-Ray takes any
frame list: a re-run renders exactly the frames not yet in storage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from node_agent.errors import ExitCode
from node_agent.frames import format_frames
from node_agent.remap import resolve_map, vray_assets_path
from node_agent.renderers.base import (
    EXTENSIONS,
    CommandContext,
    Executables,
    Launch,
    ProgressPattern,
    Renderer,
    extra_args,
    output_stem,
)

if TYPE_CHECKING:
    from node_agent.spec import Render


def vray_frames(frames: list[int]) -> str:
    """`1-4,7,9-13x2` (node_agent's frame set) -> `1-4;7;9-13,2` (V-Ray's -frames)."""
    return ";".join(part.replace("x", ",") for part in format_frames(frames).split(","))


def build(render: Render, ctx: CommandContext, exe: str) -> Launch:
    stem = output_stem(render.output.pattern).rstrip("._") or "frame"
    ext = EXTENSIONS[render.output.format]
    argv = [exe, f"-sceneFile={ctx.scene}", f"-frames={vray_frames(ctx.frames)}"]
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
    return Launch(argv, {f: f"{stem}.{f:04d}{ext}" for f in ctx.frames}, env=env)


RENDERER = Renderer(
    name="vray",
    build=build,
    executables=Executables("vray", "vray.exe", "VRAY_", ("-version",)),
    failure_patterns={
        ExitCode.LICENSE: (r"Error obtaining license", r"license server"),
        ExitCode.MISSING_ASSET: (
            r"Error loading (?:scene|file)",
            r"Failed to load (?:texture|bitmap)",
            r"Cannot (?:open|find) (?:file|texture|bitmap)",
        ),
    },
    progress=(ProgressPattern(r"(?i)Rendering image\.*:\s*(?P<percent>\d+(?:\.\d+)?)\s*%"),),
    licenses=("vray",),
    frame_list=True,
    path_remap="VRAY_ASSETS_PATH: the assets folder and the path_map targets",
)
