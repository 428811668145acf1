"""What differs between Linux and Windows nodes, behind one small interface.

A `Command` is an argument list plus the extra environment and stdin it needs; secrets
travel only in `env` or `stdin` (or in 0600 files), never in `argv`, which every user
can read with `ps`. `run` executes one (supervise.run_captured: its own process group,
a timeout) with one-line, redacted errors.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from node_agent.errors import MountError
from node_agent.redact import Redactor
from node_agent.supervise import run_captured

STALE_ERRNOS = {107, 5}  # ENOTCONN "Transport endpoint is not connected", EIO


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    stdin: str | None = None
    timeout: float = 120.0

    def display(self) -> str:
        """The command as it may appear in a log line (argv only; env and stdin are secret)."""
        return " ".join(self.argv)


def run(cmd: Command, what: str, redactor: Redactor, base_env: Mapping[str, str]) -> str:
    """Run `cmd`; return its output or raise MountError naming `what`."""
    env = {**base_env, **cmd.env}
    exe = cmd.argv[0]
    if not shutil.which(exe, path=env.get("PATH")) and not Path(exe).is_file():
        raise MountError(f"{what}: '{exe}' is not installed (not found on PATH)")
    try:
        proc = run_captured(
            cmd.argv,
            timeout_s=cmd.timeout,
            env=env,
            cwd=tempfile.gettempdir(),
            stdin_text=cmd.stdin,
            merge_stderr=True,
        )
    except subprocess.TimeoutExpired:
        raise MountError(f"{what}: '{exe}' did not finish within {cmd.timeout:.0f}s") from None
    except OSError as e:
        raise MountError(f"{what}: cannot run '{exe}': {e.strerror}") from None
    text = proc.stdout
    if proc.returncode != 0:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        detail = redactor(lines[-1][:300]) if lines else "no output"
        raise MountError(f"{what}: '{exe}' exited {proc.returncode}: {detail}")
    return text


_LIST_SNIPPET = (
    "import os,sys\n"
    "try:\n"
    "    print(len(os.listdir(sys.argv[1])))\n"
    "except OSError as e:\n"
    "    print(e.errno, e.strerror, file=sys.stderr); sys.exit(3)\n"
)


@dataclass(frozen=True)
class Probe:
    state: str  # "ok" | "stale" | "error" | "timeout"
    entries: int = 0
    detail: str = ""


def probe(path: Path, timeout: float = 30.0) -> Probe:
    """List `path` in a child process, so a hung mount cannot hang this one."""
    try:
        proc = run_captured(
            [sys.executable, "-c", _LIST_SNIPPET, str(path)], timeout_s=timeout, env=os.environ
        )
    except subprocess.TimeoutExpired:
        return Probe("timeout", detail=f"listing did not finish within {timeout:.0f}s")
    if proc.returncode == 0:
        return Probe("ok", entries=int(proc.stdout.strip() or 0))
    err = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "listing failed"
    errno, _, msg = err.partition(" ")
    state = "stale" if errno.isdigit() and int(errno) in STALE_ERRNOS else "error"
    return Probe(state, detail=msg or err)


class Platform:
    """The interface; `current()` picks the implementation for this machine."""

    windows = False

    def mount_table(self) -> dict[str, str]:
        """Mounted paths -> filesystem type."""
        raise NotImplementedError

    def unmount_command(self, target: Path, fstype: str) -> Command:
        raise NotImplementedError

    def fstype(self, target: Path) -> str | None:
        """The filesystem type mounted at `target`, None if nothing is mounted there."""
        return self.mount_table().get(self._key(target))

    def is_mounted(self, target: Path) -> bool:
        return self.fstype(target) is not None

    def _key(self, target: Path) -> str:
        return str(target)


def _unescape_mountinfo(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and len(field[i + 1 : i + 4]) == 3 and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


class LinuxPlatform(Platform):
    def __init__(self, mountinfo: Path = Path("/proc/self/mountinfo")) -> None:
        self.mountinfo = mountinfo

    def mount_table(self) -> dict[str, str]:
        table: dict[str, str] = {}
        try:
            lines = self.mountinfo.read_text().splitlines()
        except OSError as e:
            # never "nothing is mounted": job release would remove a folder through a mount
            raise MountError(f"cannot read the mount table {self.mountinfo}: {e}") from None
        for line in lines:
            left, _, right = line.partition(" - ")
            parts = left.split()
            if len(parts) >= 5 and right:
                table[_unescape_mountinfo(parts[4])] = right.split()[0]
        return table

    def _key(self, target: Path) -> str:
        # The kernel lists mount points with symlinks resolved.
        return os.path.realpath(target)

    def unmount_command(self, target: Path, fstype: str) -> Command:
        # Lazy unmounts: a stale FUSE mount cannot be unmounted any other way.
        if fstype.startswith("fuse"):
            return Command(["fusermount3", "-uz", str(target)], timeout=60)
        return Command(["umount", "-l", str(target)], timeout=60)


class WindowsPlatform(Platform):
    windows = True

    def mount_table(self) -> dict[str, str]:
        return {f"{d}:": "drive" for d in "DEFGHIJKLMNOPQRSTUVWXYZ" if os.path.exists(f"{d}:\\")}

    def unmount_command(self, target: Path, fstype: str) -> Command:
        return Command(["net", "use", str(target), "/delete", "/y"], timeout=60)


def current(windows: bool | None = None) -> Platform:
    windows = os.name == "nt" if windows is None else windows
    return WindowsPlatform() if windows else LinuxPlatform()
