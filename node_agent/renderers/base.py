"""What every renderer shares: the `Renderer` descriptor, the task context, placeholders, frames.

Nothing here imports the spec at run time: the spec validates renderer names against the
registry (node_agent.renderers), which is built from these descriptors.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from node_agent.errors import ExitCode, SpecError, UsageError
from node_agent.frames import format_frames

if TYPE_CHECKING:
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
        raise UsageError(
            f"--frames: {renderer} takes a start/end/step range, not '{format_frames(frames)}'"
        )
    return frames[0], frames[-1], step


def host_renderer(options: Mapping[str, object], choices: Iterable[str]) -> str:
    """The renderer a host application renders with (Maya's `-r`, 3ds Max's scene renderer):
    render.options.renderer, arnold when unset; a spec error naming `choices` otherwise."""
    name = str(options.get("renderer", "arnold"))
    names = tuple(choices)
    if name not in names:
        raise SpecError(f"render.options.renderer: '{name}' is not one of: {', '.join(names)}")
    return name


def substitute(template: list[str], values: Mapping[str, str]) -> list[str]:
    """Fill placeholders; each template item stays exactly one argument, nothing reaches a shell."""
    return [arg.format_map(values) for arg in template]


def extra_args(render: Render, ctx: CommandContext, executable: str) -> list[str]:
    """`render.extra_args` with placeholders filled, for the adapter to insert where its
    renderer takes options (each item one argument)."""
    return substitute(render.extra_args, ctx.values(render, executable))


@dataclass(frozen=True)
class RangeOutput:
    """What the range-taking renderers (V-Ray, 3ds Max) share: the task's frames as a
    start/end/step range and the output file stem they append a 4-digit frame number to."""

    start: int
    end: int
    step: int
    stem: str
    ext: str

    def expected(self, frames: list[int], sep: str = "") -> dict[int, str]:
        return {f: f"{self.stem}{sep}{f:04d}{self.ext}" for f in frames}


def range_output(
    render: Render, ctx: CommandContext, renderer: str, default_stem: str, strip: str = ""
) -> RangeOutput:
    """The frame range (an irregular frame set refused) and the output stem: the pattern's
    part before '#', `strip` characters removed from its end, `default_stem` when empty."""
    start, end, step = frame_range(ctx.frames, renderer)
    stem = output_stem(render.output.pattern).rstrip(strip) or default_stem
    return RangeOutput(start, end, step, stem, EXTENSIONS[render.output.format])


Builder = Callable[["Render", CommandContext, str], Launch]


@dataclass(frozen=True)
class Dependency:
    """One file a scene needs, as the scene writes it. node_agent.preflight resolves it the
    way the renderer would on the node (render.path_map, then relative to `bases`) and
    expands `<UDIM>`/`<udim>`/`####`/`%04d` against the files present."""

    written: str  # as in the scene file (what the TD recognises)
    where: str  # which file and node/block refers to it: "spin.blend: image IMchecker"
    bases: tuple[Path, ...]  # folders a relative path is looked up in, first found wins
    path: str = ""  # the path to resolve, when not `written` (Blender's '//' taken off)
    sequence: bool = False  # a frame or tile set: present when one file matches

    @property
    def target(self) -> str:
        return self.path or self.written


@dataclass(frozen=True)
class ScanContext:
    """What a scanner gets: the scene file, the job's assets folder, and `locate`, which
    maps a path written in a scene through render.path_map to this machine (a scanner that
    follows references, such as Blender's linked libraries, opens what it returns)."""

    scene: Path
    assets_dir: Path
    locate: Callable[[str], Path]


# preflight hook (issue 13): every dependency the scene file refers to (missing ones too)
DependencyScanner = Callable[[ScanContext], Iterable[Dependency]]


@dataclass(frozen=True)
class Executables:
    """Where a renderer's program is found and how to ask its version."""

    linux: str
    windows: str
    # prefix of the Batch rendering images' `<NAME>_<version>_EXEC` variables
    # (e.g. MAYA_2020_EXEC, ARNOLD_2020_EXEC, 3DSMAX_2021_EXEC)
    env_prefix: str
    version_args: tuple[str, ...]  # the health check runs `<exe> *version_args`

    def name(self, windows: bool = False) -> str:
        return self.windows if windows else self.linux


@dataclass(frozen=True)
class ProgressPattern:
    """A line that reports progress: named groups `percent`, or `frame`, `done`, `total`."""

    regex: str

    def __post_init__(self) -> None:
        groups = set(re.compile(self.regex).groupindex)
        if "percent" not in groups and not {"frame", "done", "total"} <= groups:
            raise ValueError(
                f"progress pattern {self.regex!r}: needs a (?P<percent>...) group, or "
                "(?P<frame>...), (?P<done>...) and (?P<total>...)"
            )


@dataclass(frozen=True)
class Renderer:
    """Everything node_agent knows about one renderer. One module per renderer defines one;
    node_agent.renderers.REGISTRY lists them (adding a renderer: that module + one line)."""

    name: str  # the spec's render.renderer
    # None: no built-in adapter, the spec must give render.command (renderer 'custom')
    build: Builder | None
    executables: Executables | None  # None: the command template names its program
    # flags whose next argument is code the renderer runs (a placeholder there is refused)
    code_flags: frozenset[str] = frozenset()
    # failure class -> patterns on top of the common ones (node_agent.classify)
    failure_patterns: Mapping[ExitCode, tuple[str, ...]] = field(default_factory=dict)
    progress: tuple[ProgressPattern, ...] = ()
    saved: str | None = None  # a line naming a frame file the renderer wrote (group 1)
    # names in the Batch pool's applicationLicenses this renderer needs: the REST spec's
    # PoolSpecification.applicationLicenses lists 'maya', 'vray', '3dsmax', 'arnold'
    # (Azure/azure-rest-api-specs specification/batch/data-plane/Microsoft.Batch/stable/
    # 2018-12-01.8.0/BatchService.json; retired with API 2025-06-01)
    licenses: tuple[str, ...] = ()
    # when the licences depend on render.options (Maya's sub-renderer, 3ds Max's renderer):
    # options -> licences; `licenses` is then what the default options need
    options_licenses: Callable[[Mapping[str, object]], tuple[str, ...]] | None = None
    path_remap: str = ""  # how render.path_map reaches the renderer (node_agent.remap)
    # True: the renderer takes any frame list (Blender -f 1,3,4; kick one frame; V-Ray
    # -frames=1;3-4), so a re-run renders exactly the frames not yet in storage; False: a
    # start/end/step range only (Maya, 3ds Max): a re-run skips frames only when the rest is
    # still a range (phases/render_rerun.py)
    frame_list: bool = False
    scan_dependencies: DependencyScanner | None = None  # preflight hook (issue 13)
    # the scene file's own frame range (start, end, step), where a reader knows it: an
    # omitted render.frames becomes it, a range outside it is a warning (issue 13)
    scene_frames: Callable[[Path], tuple[int, int, int]] | None = None

    def licenses_for(self, options: Mapping[str, object] | None = None) -> tuple[str, ...]:
        """The applicationLicenses a job with these render.options needs (batch.pooljson)."""
        if self.options_licenses is None or options is None:
            return self.licenses
        return self.options_licenses(options)
