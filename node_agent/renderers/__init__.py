"""The one place that builds renderer command lines (argument lists, never shell strings).

One module per built-in adapter; a TD template in the spec (`render.command`) replaces it,
`render.extra_args` adds arguments where the adapter's renderer takes options.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from node_agent.errors import RenderError
from node_agent.renderers import arnold, blender, max3ds, maya, vray
from node_agent.renderers.base import (
    EXTENSIONS,
    CommandContext,
    Launch,
    expected_frame_name,
    find_executable,
    output_stem,
    substitute,
)
from node_agent.spec import Render

__all__ = [
    "ADAPTERS",
    "EXTENSIONS",
    "CommandContext",
    "Launch",
    "build_command",
    "build_launch",
    "expected_frame_name",
    "find_executable",
    "output_stem",
    "substitute",
]

ADAPTERS: dict[str, Callable[[Render, CommandContext, str], Launch]] = {
    "blender": blender.build,
    "maya": maya.build,
    "arnold": arnold.build,
    "vray": vray.build,
    "3dsmax": max3ds.build,
}


def build_launch(render: Render, ctx: CommandContext, env: Mapping[str, str]) -> Launch:
    """The adapter's launch, or the TD template's argv (expected frames from output.pattern)."""
    exe = find_executable(render, env, ctx.windows)
    if render.command:
        ext = EXTENSIONS[render.output.format]
        expected = {f: expected_frame_name(render.output.pattern, f, ext) for f in ctx.frames}
        return Launch(substitute(render.command, ctx.values(render, exe)), expected)
    adapter = ADAPTERS.get(render.renderer)
    if adapter is None:
        raise RenderError(f"render.renderer: no built-in adapter for '{render.renderer}'")
    return adapter(render, ctx, exe)


def build_command(render: Render, ctx: CommandContext, env: Mapping[str, str]) -> list[str]:
    return build_launch(render, ctx, env).argv
