"""The one place that builds renderer command lines (argument lists, never shell strings)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from node_agent.errors import RenderError, ExitCode
from node_agent.frames import format_frames
from node_agent.spec import Render


@dataclass(frozen=True)
class CommandContext:
    """Everything a command line may refer to for one task."""

    scene: Path
    frames: list[int]
    output_dir: Path
    assets_dir: Path
    task_dir: Path
    job_id: str
    task_id: str
    windows: bool = os.name == "nt"

    def values(self, render: Render, executable: str) -> dict[str, str]:
        f = self.frames
        step = f[1] - f[0] if len(f) > 1 else 1
        sep = "\\" if self.windows else "/"
        return {
            "scene": str(self.scene),
            "frame": str(f[0]),
            "frames": format_frames(f),
            "start": str(f[0]),
            "end": str(f[-1]),
            "step": str(step),
            "output_dir": str(self.output_dir),
            "output_prefix": str(self.output_dir) + sep + output_stem(render.output.pattern),
            "output_pattern": render.output.pattern,
            "output_format": render.output.format,
            "assets_dir": str(self.assets_dir),
            "task_dir": str(self.task_dir),
            "threads": str(render.threads),
            "job_id": self.job_id,
            "task_id": self.task_id,
            "executable": executable,
        }


def output_stem(pattern: str) -> str:
    """`frame_####` -> `frame_`: the part before the frame number."""
    return pattern.split("#", 1)[0]


def expected_frame_name(pattern: str, frame: int, ext: str) -> str:
    hashes = pattern.count("#")
    if hashes == 0:
        return f"{pattern}{frame:04d}{ext}"
    head, _, _ = pattern.partition("#")
    tail = pattern[len(head) + hashes :]
    return f"{head}{frame:0{hashes}d}{tail}{ext}"


EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "OPEN_EXR": ".exr", "TIFF": ".tif"}

# Executable names per renderer, and the *_EXEC variable prefixes of the Batch rendering images.
_EXECUTABLES = {
    "blender": ("blender", "BLENDER_"),
    "maya": ("Render", "MAYA_"),
    "arnold": ("kick", "ARNOLD_"),
    "vray": ("vray", "VRAY_"),
    "3dsmax": ("3dsmaxcmdio", "3DSMAX_"),
}


def find_executable(render: Render, env: Mapping[str, str]) -> str:
    """The spec's executable, else the image's `<NAME>_*_EXEC` variable, else PATH."""
    if render.executable:
        return render.executable
    if render.renderer == "custom":
        return ""
    name, prefix = _EXECUTABLES[render.renderer]
    for var in sorted(env, reverse=True):
        if var.upper().startswith(prefix) and var.upper().endswith("_EXEC") and env[var]:
            return env[var]
    found = shutil.which(name, path=env.get("PATH"))
    if not found:
        raise RenderError(
            f"render.renderer: '{render.renderer}' executable '{name}' not found on PATH "
            f"(set render.executable or {prefix}<version>_EXEC)",
            ExitCode.RENDER_FAILED,
        )
    return found


def _blender(render: Render, ctx: CommandContext, exe: str) -> list[str]:
    fmt = render.output.format
    argv = [exe, "-b", str(ctx.scene), "-noaudio"]
    argv += ["-o", str(ctx.output_dir / render.output.pattern), "-F", fmt, "-x", "1"]
    if render.threads:
        argv += ["-t", str(render.threads)]
    engine = render.options.get("engine")
    if engine:
        argv += ["-E", str(engine)]
    # Blender handles arguments in order: options first, then the frames.
    argv += ["-f", ",".join(str(f) for f in ctx.frames)]
    return argv


ADAPTERS: dict[str, Callable[[Render, CommandContext, str], list[str]]] = {"blender": _blender}


def substitute(template: list[str], values: Mapping[str, str]) -> list[str]:
    """Fill placeholders; each template item stays exactly one argument."""
    return [arg.format_map(values) for arg in template]


def build_command(render: Render, ctx: CommandContext, env: Mapping[str, str]) -> list[str]:
    exe = find_executable(render, env)
    if render.command:
        return substitute(render.command, ctx.values(render, exe))
    adapter = ADAPTERS.get(render.renderer)
    if adapter is None:
        raise RenderError(f"render.renderer: no built-in adapter for '{render.renderer}' yet")
    return adapter(render, ctx, exe)
