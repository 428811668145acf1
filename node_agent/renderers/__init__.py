"""The renderer registry: name -> `Renderer` descriptor, read by everything that varies per
renderer (spec validation, command lines, output classification, health checks, doctor, the
start task, the pool's application licenses).

Adding a renderer: one module defining `RENDERER = Renderer(...)` (see base.Renderer and the
built-in modules) and one line in `_BUILTIN` below. A plugin or a test may `register()` one
at run time instead.

Command lines are argument lists, never shell strings; a TD template in the spec
(`render.command`) replaces the adapter's, `render.extra_args` adds arguments where the
adapter's renderer takes options.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from node_agent.errors import RenderError
from node_agent.renderers import arnold, blender, custom, max3ds, maya, vray
from node_agent.renderers.base import (
    EXTENSIONS,
    CommandContext,
    Executables,
    Launch,
    ProgressPattern,
    Renderer,
    expected_frame_name,
    output_stem,
    substitute,
)

if TYPE_CHECKING:
    from node_agent.spec import Render

__all__ = [
    "EXTENSIONS",
    "REGISTRY",
    "CommandContext",
    "Executables",
    "Launch",
    "ProgressPattern",
    "Renderer",
    "build_command",
    "build_launch",
    "expected_frame_name",
    "find_executable",
    "get",
    "license_names",
    "names",
    "not_one_of",
    "output_stem",
    "register",
    "renderer_binaries",
    "substitute",
    "unregister",
]

_BUILTIN = (
    blender.RENDERER,
    maya.RENDERER,
    arnold.RENDERER,
    vray.RENDERER,
    max3ds.RENDERER,
    custom.RENDERER,
)
REGISTRY: dict[str, Renderer] = {r.name: r for r in _BUILTIN}


def register(renderer: Renderer, replace: bool = False) -> Renderer:
    """Add a renderer (a plugin's, a test's); from then on specs, pool configs, health checks
    and the doctor accept its name. Refuses a name already registered unless `replace`."""
    if renderer.name in REGISTRY and not replace:
        raise ValueError(f"renderer '{renderer.name}' is already registered")
    REGISTRY[renderer.name] = renderer
    return renderer


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def get(name: str) -> Renderer | None:
    return REGISTRY.get(name)


def names(*, with_executables: bool = False) -> tuple[str, ...]:
    """Registered names, in registration order; only those with a program of their own
    (what a pool config's health check can look for) with `with_executables`."""
    return tuple(n for n, r in REGISTRY.items() if r.executables or not with_executables)


def license_names() -> tuple[str, ...]:
    """Every applicationLicenses name some registered renderer needs, in first-seen order."""
    return tuple(dict.fromkeys(lic for r in REGISTRY.values() for lic in r.licenses))


def renderer_binaries() -> tuple[str, ...]:
    """The Linux program names of the registered renderers (what a node reports it has)."""
    return tuple(r.executables.linux for r in REGISTRY.values() if r.executables)


def not_one_of(value: object, valid: Iterable[str]) -> str:
    """`'povray' is not one of: 'blender', 'maya' or 'custom'` (the spec's error style)."""
    quoted = [repr(v) for v in valid]
    listed = ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else "".join(quoted)
    return f"{value!r} is not one of: {listed}"


def find_executable(render: Render, env: Mapping[str, str], windows: bool = False) -> str:
    """The spec's executable, else the image's `<NAME>_<version>_EXEC` variable, else PATH."""
    if render.executable:
        return render.executable
    descriptor = REGISTRY.get(render.renderer)
    if descriptor is None:
        raise RenderError(f"render.renderer: {not_one_of(render.renderer, REGISTRY)}")
    exe = descriptor.executables
    if exe is None:
        return ""
    for var in sorted(env, reverse=True):  # newest version first
        if var.upper().startswith(exe.env_prefix) and var.upper().endswith("_EXEC") and env[var]:
            return env[var]
    name = exe.name(windows)
    found = shutil.which(name, path=env.get("PATH"))
    if not found:
        raise RenderError(
            f"render.renderer: '{render.renderer}' executable '{name}' not found on PATH "
            f"(set render.executable or {exe.env_prefix}<version>_EXEC)"
        )
    return found


def build_launch(render: Render, ctx: CommandContext, env: Mapping[str, str]) -> Launch:
    """The adapter's launch, or the TD template's argv (expected frames from output.pattern)."""
    exe = find_executable(render, env, ctx.windows)
    if render.command:
        ext = EXTENSIONS[render.output.format]
        expected = {f: expected_frame_name(render.output.pattern, f, ext) for f in ctx.frames}
        return Launch(substitute(render.command, ctx.values(render, exe)), expected)
    descriptor = REGISTRY.get(render.renderer)
    if descriptor is None or descriptor.build is None:
        raise RenderError(f"render.renderer: no built-in adapter for '{render.renderer}'")
    return descriptor.build(render, ctx, exe)


def build_command(render: Render, ctx: CommandContext, env: Mapping[str, str]) -> list[str]:
    return build_launch(render, ctx, env).argv
