"""What a driver produces for one mount: files to write (0600) and commands to run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from node_agent.mounts.platform import Command


@dataclass(frozen=True)
class MountPaths:
    """Where one mount's pieces live on the node."""

    target: Path  # the mount point (or drive letter on Windows)
    config_dir: Path  # 0700 folder for its config / credentials files (0600)
    cache_dir: Path  # file cache on the temp disk
    log_file: Path


@dataclass(frozen=True)
class SecretFile:
    path: Path
    text: str
    mode: int = 0o600


@dataclass(frozen=True)
class MountPlan:
    files: list[SecretFile] = field(default_factory=list)
    mount: list[Command] = field(default_factory=list)
    needs_empty_target: bool = True  # refuse a mount point that holds files
    makes_dir: bool = True  # the target is a folder to create (not a drive letter)

    def all_argv(self) -> list[str]:
        return [a for c in self.mount for a in c.argv]
