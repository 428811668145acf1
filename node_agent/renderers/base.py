"""What every renderer adapter shares: the task context, placeholders, executables, frames."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath

from node_agent.errors import ExitCode, RenderError
from node_agent.frames import format_frames
from node_agent.spec import Render

EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "OPEN_EXR": ".exr", "TIFF": ".tif"}


@dataclass(frozen=True)
class CommandContext:
    """Everything a command line may refer to for one task.

    Paths are `PurePath`s so a Windows node's command line can be built (and tested) anywhere.
    """

    scene: PurePath
    frames: list[int]
    output_dir: PurePath
    assets_dir: PurePath
    task_dir: PurePath
    job_id: str
    task_id: str
    windows: bool = False

    def values(self, render: Render, executable: str) -> dict[str, str]:
        f = self.frames
        step = f[1] - f[0] if len(f) > 1 else 1
        return {
            "scene": str(self.scene),
            "frame": str(f[0]),
            "frames": format_frames(f),
            "start": str(f[0]),
            "end": str(f[-1]),
            "step": str(step),
            "output_dir": str(self.output_dir),
            "output_prefix": str(self.output_dir / output_stem(render.output.pattern)),
            "output_pattern": render.output.pattern,
            "output_format": render.output.format,
            "assets_dir": str(self.assets_dir),
            "task_dir": str(self.task_dir),
            "threads": str(render.threads),
            "job_id": self.job_id,
            "task_id": self.task_id,
            "executable": executable,
        }


@dataclass(frozen=True)
class Launch:
    """What the render task runs: argv (never a shell string), extra environment, support files
    (remap scripts, path files) to write before the start, and the frame files it must produce."""

    argv: list[str]
    expected: dict[int, str]
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # absolute path -> text content


def output_stem(pattern: str) -> str:
    """`frame_####` -> `frame_`: the part before the frame number."""
    return pattern.split("#", 1)[0]


def expected_frame_name(pattern: str, frame: int, ext: str) -> str:
    """`frame_####`, 7, `.png` -> `frame_0007.png` (4 digits when the pattern has no `#`)."""
    hashes = pattern.count("#")
    if hashes == 0:
        return f"{pattern}{frame:04d}{ext}"
    head, _, _ = pattern.partition("#")
    tail = pattern[len(head) + hashes :]
    return f"{head}{frame:0{hashes}d}{tail}{ext}"


def frame_range(frames: list[int], renderer: str) -> tuple[int, int, int]:
    """(start, end, step) for renderers that take a range; refuses an irregular frame set."""
    step = frames[1] - frames[0] if len(frames) > 1 else 1
    if any(b - a != step for a, b in itertools.pairwise(frames)):
        raise RenderError(
            f"--frames: {renderer} takes a start/end/step range, not '{format_frames(frames)}'",
            ExitCode.USAGE,
        )
    return frames[0], frames[-1], step


# Executable names per renderer (Linux, Windows) and the *_EXEC variable prefix of the
# Batch rendering images (e.g. MAYA_2020_EXEC, ARNOLD_2020_EXEC, 3DSMAX_2021_EXEC).
EXECUTABLES = {
    "blender": ("blender", "blender.exe", "BLENDER_"),
    "maya": ("Render", "Render.exe", "MAYA_"),
    "arnold": ("kick", "kick.exe", "ARNOLD_"),
    "vray": ("vray", "vray.exe", "VRAY_"),
    "3dsmax": ("3dsmaxcmdio", "3dsmaxcmdio.exe", "3DSMAX_"),
}


def find_executable(render: Render, env: Mapping[str, str], windows: bool = False) -> str:
    """The spec's executable, else the image's `<NAME>_<version>_EXEC` variable, else PATH."""
    if render.executable:
        return render.executable
    if render.renderer == "custom":
        return ""
    linux_name, win_name, prefix = EXECUTABLES[render.renderer]
    for var in sorted(env, reverse=True):  # newest version first
        if var.upper().startswith(prefix) and var.upper().endswith("_EXEC") and env[var]:
            return env[var]
    name = win_name if windows else linux_name
    found = shutil.which(name, path=env.get("PATH"))
    if not found:
        raise RenderError(
            f"render.renderer: '{render.renderer}' executable '{name}' not found on PATH "
            f"(set render.executable or {prefix}<version>_EXEC)",
            ExitCode.RENDER_FAILED,
        )
    return found


def substitute(template: list[str], values: Mapping[str, str]) -> list[str]:
    """Fill placeholders; each template item stays exactly one argument, nothing reaches a shell."""
    return [arg.format_map(values) for arg in template]


def extra_args(render: Render, ctx: CommandContext, executable: str) -> list[str]:
    """`render.extra_args` with placeholders filled, for the adapter to insert where its
    renderer takes options (each item one argument)."""
    return substitute(render.extra_args, ctx.values(render, executable))
