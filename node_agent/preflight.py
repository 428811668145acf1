"""Preflight: every file the job's scene needs, looked up the way its renderer would look it
up on the node, and the missing ones named before any frame renders (issue 13).

Each renderer's parser is its descriptor's `scan_dependencies` hook (node_agent.renderers):
it lists what the scene refers to (`Dependency`), as written. This module resolves each
one: render.path_map first (a workstation prefix -> a folder under the assets), then a
relative path against the renderer's base folders (Blender: the .blend's folder, Maya: the
project = the assets folder, then the scene's; Arnold: the texture search path = the
assets folder, then the scene's), and a file set (`<UDIM>`, `<udim>`, `<tile>`, `####`,
`%04d`, a Blender image sequence) is present when at least one file of it is.

Where it runs: `node-agent validate SPEC --assets DIR` on the workstation (an absolute path
outside DIR that path_map does not map is missing there: the node will not have it) and job
prep on the node's view after the sync (policies.missing_dependencies: fail | warn).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from node_agent import renderers
from node_agent.errors import AssetError, MissingAssetError, NodeAgentError, SpecError
from node_agent.remap import remap_path, resolve_map
from node_agent.renderers.base import Dependency, ScanContext
from node_agent.safepath import is_within
from node_agent.spec import JobSpec, Render

_DRIVE = re.compile(r"^[A-Za-z]:/")
# a file-set token in a file name -> the regex of what it stands for
_TOKENS = re.compile(r"<udim>|<tile>|<uvtile>|<attr:[^>]*>|%0?(\d*)d|#+|\*", re.IGNORECASE)


@dataclass(frozen=True)
class Missing:
    """A dependency the renderer would not find: `shown` is its path under the assets
    folder when it resolves there, else as resolved (or as written)."""

    dep: Dependency
    shown: str
    reason: str = "not found"

    def line(self) -> str:
        written = "" if self.dep.written == self.shown else f", written '{self.dep.written}'"
        return f"missing dependency '{self.shown}' ({self.reason}; {self.dep.where}{written})"


@dataclass(frozen=True)
class ScanResult:
    scanned: bool  # False: the renderer has no scanner (nothing was checked)
    found: int  # dependencies checked
    missing: list[Missing]
    # scene files the scanner could not read (not a .blend BAT knows, ...): not checked,
    # said as a warning; the renderer reports such a scene itself
    unreadable: list[str] = field(default_factory=list)


def _frame_filler(frame: int) -> Callable[[re.Match[str]], str]:
    return lambda m: f"{frame:0{len(m.group())}d}"


def scene_files(render: Render, assets_dir: Path) -> list[Path]:
    """The scene file(s) to scan: one, or each frame's for a per-frame scene (`shot.####.ass`)."""
    scene = assets_dir / render.scene
    if "#" not in render.scene:
        return [scene]
    out = []
    for f in render.frame_list:
        name = re.sub(r"#+", _frame_filler(f), scene.name)
        out.append(scene.with_name(name))
    return out


def _is_absolute(p: str) -> bool:
    return p.startswith("/") or bool(_DRIVE.match(p))


def _file_set_regex(name: str) -> re.Pattern[str] | None:
    """The regex of the files a file-set name stands for, None when it is one file."""
    if not _TOKENS.search(name):
        return None
    out, pos = "", 0
    for m in _TOKENS.finditer(name):
        out += re.escape(name[pos : m.start()])
        tok = m.group().lower()
        if tok in ("<udim>",):
            out += r"1\d{3}"
        elif tok in ("<tile>", "<uvtile>"):
            out += r"_?u\d+_v\d+"
        elif tok == "*" or tok.startswith("<attr:"):
            out += ".*"
        elif tok.startswith("#"):
            out += rf"-?\d{{{len(tok)},}}"
        else:
            width = int(m.group(1) or 1)
            out += rf"-?\d{{{width},}}"
        pos = m.end()
    return re.compile(out + re.escape(name[pos:]) + "$")


def _digits_set(name: str) -> re.Pattern[str] | None:
    """A Blender image sequence written as its first file (`frame_0001.png`): the files
    that differ from it only in the last run of digits."""
    m = re.search(r"(\d+)(?!.*\d)", name)
    if not m:
        return None
    return re.compile(re.escape(name[: m.start()]) + r"\d+" + re.escape(name[m.end() :]) + "$")


def _present(path: Path, sequence: bool) -> bool:
    if sequence and path.is_dir():  # a sequencer strip's folder of frames
        return any(p.is_file() for p in path.iterdir())
    pattern = _file_set_regex(path.name)
    if pattern is None and not sequence:
        return path.is_file()
    if pattern is None:
        if path.is_file():
            return True
        pattern = _digits_set(path.name)
        if pattern is None:
            return False
    try:
        return any(pattern.match(p.name) and p.is_file() for p in path.parent.iterdir())
    except OSError:
        return False


class Resolver:
    """Maps a path written in a scene to where the renderer would open it on the node."""

    def __init__(self, render: Render, assets_dir: Path, *, outside_ok: bool) -> None:
        self.assets_dir = Path(os.path.abspath(assets_dir))
        self.pairs = resolve_map(render.path_map, assets_dir)
        self.outside_ok = outside_ok  # on the node: an absolute path may be a pool mount

    def locate(self, written: str, bases: Iterable[Path] = ()) -> Path:
        """The path as the renderer would open it (the first base holding it, else the
        first base's), path_map applied to an absolute workstation path."""
        norm = written.replace("\\", "/")
        mapped = remap_path(norm, self.pairs)
        if mapped != norm:
            return Path(mapped)
        if _is_absolute(norm):
            return Path(norm)
        candidates = [Path(b, norm) for b in bases] or [self.assets_dir / norm]
        return next((c for c in candidates if _present(c, True)), candidates[0])

    def shown(self, path: Path) -> str:
        """`path` under the assets folder as a '/' path (what the TD uploaded), else whole."""
        if is_within(self.assets_dir, path):
            rel = os.path.relpath(os.path.realpath(path), os.path.realpath(self.assets_dir))
            return PurePosixPath(*Path(rel).parts).as_posix()
        return str(path)

    def check(self, dep: Dependency) -> Missing | None:
        target = dep.target.replace("\\", "/")
        path = self.locate(target, dep.bases)
        # `..` in a written path is the renderer's business, but the shown name is the real one
        normal = Path(os.path.normpath(os.path.abspath(path)))
        inside = is_within(self.assets_dir, normal)
        if _present(normal, dep.sequence):
            if inside or self.outside_ok:
                return None
            return Missing(dep, str(normal), "outside the assets folder; map it in render.path_map")
        if _is_absolute(target) and remap_path(target, self.pairs) == target and not inside:
            return Missing(dep, target, "absolute path not mapped by render.path_map")
        reason = "no file of this set" if dep.sequence or _file_set_regex(normal.name) else ""
        return Missing(dep, self.shown(normal), reason or "not found")


def scan(render: Render, assets_dir: Path, *, outside_ok: bool = True) -> ScanResult:
    """Every dependency of the job's scene checked against `assets_dir` (the node's view,
    or a workstation folder laid out like it). `outside_ok`: an existing absolute path
    outside the assets counts as present (on the node: a pool mount); validate says False."""
    descriptor = renderers.get(render.renderer)
    scanner = descriptor.scan_dependencies if descriptor else None
    resolver = Resolver(render, assets_dir, outside_ok=outside_ok)
    missing: list[Missing] = []
    scenes = []
    for scene in scene_files(render, assets_dir):
        if scene.is_file():
            scenes.append(scene)
            continue
        rel = resolver.shown(scene)
        dep = Dependency(render.scene, "render.scene", (assets_dir,))
        missing.append(Missing(dep, rel, "the scene itself is not in the job's assets"))
    if scanner is None or render.command:  # a TD template may render anything
        return ScanResult(False, 0, missing)
    unreadable: list[str] = []
    seen: set[tuple[str, tuple[Path, ...]]] = set()
    count = 0
    for scene in scenes:
        ctx = ScanContext(scene, assets_dir, resolver.locate)
        try:
            deps = list(scanner(ctx))
        except NodeAgentError as e:
            unreadable.append(str(e).splitlines()[0])
            continue
        for dep in deps:
            key = (dep.target, dep.bases)
            if key in seen:
                continue
            seen.add(key)
            count += 1
            problem = resolver.check(dep)
            if problem is not None:
                missing.append(problem)
    return ScanResult(True, count, missing, unreadable)


def missing_error(result: ScanResult, where: str) -> MissingAssetError:
    """One error (exit 12) listing every missing dependency, one line each."""
    n = len(result.missing)
    lines = [f"{where}: {n} file(s) the render needs are missing ({result.found} checked):"]
    lines += [m.line() for m in result.missing]
    return MissingAssetError("\n".join(lines))


def enforce(
    render: Render,
    assets_dir: Path,
    *,
    allow_missing: bool,
    log: logging.Logger,
    where: str,
    outside_ok: bool = True,
) -> ScanResult:
    """Scan; raise MissingAssetError (exit 12) naming every missing dependency, or with
    `allow_missing` log each as a warning. The call `batch submit` and `local run` need."""
    result = scan(render, assets_dir, outside_ok=outside_ok)
    if not result.scanned:
        log.info("preflight: renderer '%s': dependencies not scanned", render.renderer)
    if result.missing and not allow_missing:
        raise missing_error(result, where)
    for m in result.missing:
        log.warning("preflight: %s (allowed)", m.line())
    for line in result.unreadable:
        log.warning("preflight: dependencies not checked: %s", line)
    if result.scanned:
        log.info(
            "preflight: %d scene dependencies checked, %d missing",
            result.found,
            len(result.missing),
        )
    return result


def validate_assets(render: Render, assets_dir: Path, *, allow_missing: bool) -> list[str]:
    """`validate --assets DIR`: the scan on a workstation folder laid out like the job's
    assets (an absolute path outside it, not mapped, counts as missing: the node will not
    have it). Raises the exit-12 error, or returns the warning lines."""
    if not assets_dir.is_dir():
        raise AssetError(f"--assets: '{assets_dir}' is not a folder")
    result = scan(render, assets_dir, outside_ok=False)
    if result.missing and not allow_missing:
        raise missing_error(result, f"render.scene '{render.scene}'")
    notes = [f"{m.line()} (allowed)" for m in result.missing]
    notes += [f"dependencies not checked: {line}" for line in result.unreadable]
    if not result.scanned:
        notes.append(
            f"renderer '{render.renderer}' has no dependency scanner: only render.scene was checked"
            if not render.command
            else "render.command is a TD template: its dependencies are not scanned"
        )
    return notes


def scene_range(render: Render, assets_dir: Path) -> tuple[int, int, int] | None:
    """The scene's own (start, end, step), None where no reader knows it."""
    descriptor = renderers.get(render.renderer)
    reader = descriptor.scene_frames if descriptor else None
    scene = assets_dir / render.scene
    if reader is None or "#" in render.scene or not scene.is_file():
        return None
    try:
        return reader(scene)
    except NodeAgentError:
        return None


FRAMES_FILLED = "render.frames: omitted: "  # a note, never an error (--strict or not)


def strict_notes(notes: list[str], *, strict: bool) -> list[str]:
    """The notes of with_scene_frames as warnings; with `strict` (validate/submit --strict)
    the warnings (a frame outside the scene's range) raise SpecError (exit 2), all at once."""
    problems = [n for n in notes if not n.startswith(FRAMES_FILLED)]
    if strict and problems:
        raise SpecError("\n".join(f"{n} (--strict)" for n in problems))
    return notes


def say_logger(name: str, say: Callable[[str], None]) -> logging.Logger:
    """A logger whose records go to `say` as 'warning: ...' / plain lines (commands that
    print their own lines, like batch submit, passing it to enforce)."""

    class _Say(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            level = "warning: " if record.levelno >= logging.WARNING else ""
            say(level + record.getMessage())

    log = logging.getLogger(f"node_agent.preflight.{name}")
    log.handlers[:] = [_Say()]
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def with_scene_frames(spec: JobSpec, assets_dir: Path) -> tuple[JobSpec, list[str]]:
    """`spec` with an omitted render.frames filled from the scene's range, and the warning
    lines: a frame outside the scene's range (`--strict` callers make them errors)."""
    found = scene_range(spec.render, assets_dir)
    if spec.render.frames is None:
        if found is None:
            raise SpecError(
                f"render.frames: omitted, and '{spec.render.scene}' does not say its range "
                f"(renderer '{spec.render.renderer}'): give the frames"
            )
        start, end, step = found
        frames = f"{start}-{end}" + (f"x{step}" if step > 1 else "")
        render = spec.render.model_copy(update={"frames": frames})
        return spec.model_copy(update={"render": render}), [
            f"{FRAMES_FILLED}the scene's range {frames} is used"
        ]
    if found is None:
        return spec, []
    start, end, _ = found
    outside = [f for f in spec.render.frame_list if f < start or f > end]
    if not outside:
        return spec, []
    return spec, [
        f"render.frames: {len(outside)} frame(s) outside the scene's range {start}-{end} "
        f"(first: {outside[0]})"
    ]
