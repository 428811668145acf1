"""`node-agent batch package`: one zip that installs node_agent on a Batch node without PyPI.

Layout of the zip (the application package / resource file the start task installs from):
    VERSION                       node_agent's version
    bootstrap/install.sh|.cmd     find Python, create NODE_AGENT_HOME/.venv once, install
    bin/ start_task/ job_prep/ job_release/   the scripts Batch task command lines call
    wheels/                       node_agent + every dependency (+ pip) for the target nodes
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from node_agent.azurite import REPO_ROOT
from node_agent.batch.pooljson import agent_version
from node_agent.errors import PackageError, UsageError

BOOTSTRAP = Path(__file__).resolve().parent / "bootstrap"
SCRIPT_DIRS = ("bin", "start_task", "job_prep", "job_release")
# pip --platform tags per node OS. Linux: glibc 2.17 at most (manylinux2014, PEP 599, named
# manylinux_2_17 by PEP 600), so the package installs on every x86_64 distribution Batch
# nodes run, RHEL/Rocky/Alma 8 (glibc 2.28) included, not only Ubuntu 22.04/24.04 (glibc
# 2.35/2.39): a manylinux_2_28 or _2_34 wheel (cryptography's newest) would not install
# there. pip does not treat manylinux2014 and manylinux_2_17 as one tag (pip/_internal/utils/
# compatibility_tags.py _custom_manylinux_platforms only adds manylinux2010/manylinux1), so
# both spellings are listed, and the older ones a wheel may carry alone.
PLATFORMS = {
    "linux": [
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
        "manylinux_2_12_x86_64",
        "manylinux2010_x86_64",
        "manylinux_2_5_x86_64",
        "manylinux1_x86_64",
    ],
    "windows": ["win_amd64"],
}
# Python on the images: Ubuntu 22.04 ships 3.10, Ubuntu 24.04 3.12; Windows: what you install.
DEFAULT_TARGETS = ("linux:3.10", "linux:3.12", "windows:3.12")


@dataclass(frozen=True)
class Target:
    os: str
    python: str  # "3.12"

    @classmethod
    def parse(cls, text: str) -> Target:
        os_name, _, py = text.partition(":")
        if os_name not in PLATFORMS or not py.replace(".", "").isdigit() or py.count(".") != 1:
            raise UsageError(f"--target '{text}': expected linux:<3.X> or windows:<3.X>")
        return cls(os_name, py)


def _pip(args: list[str], what: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        tail = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise PackageError(f"package: {what} failed: {tail}")


def _wheels(wheels: Path, targets: list[Target]) -> None:
    _pip(
        ["wheel", "--no-deps", "--quiet", "-w", str(wheels), str(REPO_ROOT)],
        "building node_agent's wheel",
    )
    own = sorted(wheels.glob("node_agent-*.whl"))
    if not own:
        raise PackageError("package: pip built no node_agent wheel")
    _pip(
        ["download", "--quiet", "--only-binary=:all:", "-d", str(wheels), "pip"], "downloading pip"
    )
    for t in targets:
        plats = [a for p in PLATFORMS[t.os] for a in ("--platform", p)]
        _pip(
            [
                "download",
                "--quiet",
                "--only-binary=:all:",
                *plats,
                "--python-version",
                t.python,
                "--implementation",
                "cp",
                "-d",
                str(wheels),
                str(own[-1]),
            ],
            f"downloading wheels for {t.os} Python {t.python}",
        )


def _add_tree(zf: zipfile.ZipFile, src: Path, arc: str) -> int:
    n = 0
    for f in sorted(p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        info = zipfile.ZipInfo(
            f"{arc}/{f.relative_to(src).as_posix()}", date_time=(1980, 1, 1, 0, 0, 0)
        )
        executable = f.suffix == ".sh" or (not f.suffix and os.access(f, os.X_OK))
        info.external_attr = (0o755 if executable else 0o644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, f.read_bytes())
        n += 1
    return n


def build_package(out_dir: Path, targets: list[Target] | None = None) -> Path:
    """Build `<out_dir>/node-agent-<version>.zip`; returns its path."""
    for d in SCRIPT_DIRS:
        if not (REPO_ROOT / d).is_dir():
            raise PackageError(
                f"package: {REPO_ROOT / d} is missing (run from a node_agent checkout)"
            )
    targets = targets or [Target.parse(t) for t in DEFAULT_TARGETS]
    version = agent_version()
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"node-agent-{version}.zip"
    with tempfile.TemporaryDirectory(prefix="node-agent-package-") as tmp:
        stage = Path(tmp)
        (stage / "wheels").mkdir()
        _wheels(stage / "wheels", targets)
        partial = out.with_name(out.name + ".partial")
        with zipfile.ZipFile(partial, "w") as zf:
            info = zipfile.ZipInfo("VERSION", date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(info, version + "\n")
            _add_tree(zf, BOOTSTRAP, "bootstrap")
            for d in SCRIPT_DIRS:
                _add_tree(zf, REPO_ROOT / d, d)
            _add_tree(zf, stage / "wheels", "wheels")
        os.replace(partial, out)
    return out
