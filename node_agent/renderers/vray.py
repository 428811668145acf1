"""V-Ray standalone: `vray -sceneFile=<scene> -frames=<a-b> -imgFile=<out> -display=0`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from node_agent.errors import ExitCode
from node_agent.remap import resolve_map, vray_assets_path
from node_agent.renderers.base import (
    CommandContext,
    Executables,
    Launch,
    ProgressPattern,
    Renderer,
    extra_args,
    range_output,
)

if TYPE_CHECKING:
    from node_agent.spec import Render


def build(render: Render, ctx: CommandContext, exe: str) -> Launch:
    out = range_output(render, ctx, "vray", default_stem="frame", strip="._")
    frames = f"{out.start}-{out.end}" if out.step == 1 else ";".join(str(f) for f in ctx.frames)
    argv = [exe, f"-sceneFile={ctx.scene}", f"-frames={frames}"]
    # V-Ray inserts the frame number before the extension: <stem>.0001.png
    argv += [f"-imgFile={ctx.output_dir / (out.stem + out.ext)}", "-display=0", "-autoClose=1"]
    argv += [f"-verboseLevel={render.options.get('verbosity', 3)}"]
    if render.threads:
        argv.append(f"-numThreads={render.threads}")
    argv += extra_args(render, ctx, exe)  # last: a TD's -option=value overrides the adapter's
    env = {
        "VRAY_ASSETS_PATH": vray_assets_path(
            resolve_map(render.path_map, ctx.assets_dir), ctx.assets_dir, ctx.windows
        )
    }
    return Launch(argv, out.expected(ctx.frames, sep="."), env=env)


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
    path_remap="VRAY_ASSETS_PATH: the assets folder and the path_map targets",
)
