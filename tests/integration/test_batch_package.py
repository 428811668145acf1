"""`batch package`: the zip alone installs node_agent on a fresh node through the real start task."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from helpers import REPO, make_spec_doc, node_env, run_cli
from packaging.utils import parse_wheel_filename

from node_agent.batch.package import PLATFORMS, Target, build_package
from node_agent.batch.pooljson import PACKAGE_FILE, BatchPoolSettings, PackageSource, pool_json
from node_agent.errors import ExitCode

PY = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_package(tmp_path_factory.mktemp("pkg"), [Target("linux", PY)])


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    """A node's environment: no virtualenv of this repo, no PYTHONPATH pointing into it."""
    env = {
        k: v
        for k, v in extra.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "NODE_AGENT_PYTHON")
    }
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(REPO))
    )
    return env


@pytest.mark.slow
def test_zip_holds_bootstrap_scripts_and_wheels(package: Path) -> None:
    with zipfile.ZipFile(package) as zf:
        names = set(zf.namelist())
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
    for f in (
        "VERSION",
        "bootstrap/install.sh",
        "bootstrap/install.cmd",
        "bin/node-agent",
        "start_task/run.sh",
        "start_task/run.cmd",
        "job_prep/run.sh",
        "job_release/run.sh",
    ):
        assert f in names, f
    assert modes["bootstrap/install.sh"] & 0o111 and modes["bin/node-agent"] & 0o111
    wheels = {n.split("/")[1].split("-")[0].lower() for n in names if n.startswith("wheels/")}
    for dep in (
        "node_agent",
        "pip",
        "azure_storage_blob",
        "azure_identity",
        "azure_batch",
        "pydantic",
        "pydantic_core",
        "psutil",
        "pyyaml",
        "click",
    ):
        assert dep in wheels, dep


@pytest.mark.slow
@pytest.mark.parametrize("access", ["identity", "auto_storage"])
def test_start_task_installs_from_the_zip_alone_once_per_node(
    package: Path, tmp_path: Path, access: str
) -> None:
    blob = "packages/node-agent-0.1.0.zip"
    cfg = BatchPoolSettings(
        package=PackageSource(
            kind="resource_file",
            url=f"https://acct.blob.core.windows.net/node-agent/{blob}",
            blob=blob,
        ),
        node_agent_home=str(tmp_path / "opt" / "node_agent"),
        blob_access=access,  # type: ignore[arg-type]
    )
    start = pool_json(cfg)["startTask"]
    root = tmp_path / "node"
    env = _clean_env(node_env(root))
    env.update({e["name"]: e["value"] for e in start["environmentSettings"]})
    wd = root / "startup" / "wd"
    # what Batch does with the resource file: filePath, or the blob name for container sources
    rf = start["resourceFiles"][0]
    dest = wd / rf.get("filePath", rf.get("blobPrefix", ""))
    assert dest.name in (PACKAGE_FILE, "node-agent-0.1.0.zip")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(package, dest)

    def run_start_task() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            shlex.split(start["commandLine"]),
            cwd=wd,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )

    first = run_start_task()
    assert first.returncode == 0, first.stdout + first.stderr
    home = Path(env["NODE_AGENT_HOME"])
    assert "installed in" in first.stdout
    assert (home / ".installed").read_text().strip() == "0.1.0"
    where = subprocess.run(
        [str(home / ".venv/bin/python"), "-c", "import node_agent; print(node_agent.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert where.stdout.startswith(str(home / ".venv")), (
        where
    )  # installed from wheels, not the repo
    # the start task runs again on reboot: no reinstall
    venv_id = (home / ".venv/pyvenv.cfg").stat().st_ino
    second = run_start_task()
    assert second.returncode == 0, second.stderr
    assert "already installed" in second.stdout
    assert (home / ".venv/pyvenv.cfg").stat().st_ino == venv_id
    # the task command lines' launcher works from the install
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(make_spec_doc("https://acct.blob.core.windows.net")))
    ok = subprocess.run(
        [str(home / "bin/node-agent"), "validate", str(spec)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0 and ": ok: job job-a" in ok.stdout, ok.stderr


@pytest.mark.slow
def test_install_without_home_or_python_fails_with_a_clear_line(
    package: Path, tmp_path: Path
) -> None:
    with zipfile.ZipFile(package) as zf:
        zf.extract("bootstrap/install.sh", tmp_path)
        zf.extract("VERSION", tmp_path)
    script = str(tmp_path / "bootstrap/install.sh")
    env = _clean_env(dict(os.environ))
    env.pop("NODE_AGENT_HOME", None)
    res = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "NODE_AGENT_HOME is not set" in res.stderr
    tools = tmp_path / "tools"  # a PATH with the usual commands but no Python
    tools.mkdir()
    for name in ("cat", "mkdir", "dirname", "flock", "rm", "ls", "head"):
        found = shutil.which(name)
        if found:
            (tools / name).symlink_to(found)
    env.update(NODE_AGENT_HOME=str(tmp_path / "home"), PATH=str(tools))
    res = subprocess.run(["/bin/bash", script], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 20 and "no Python >= 3.10" in res.stderr


def test_bad_target_is_a_usage_error(tmp_path: Path) -> None:
    res = run_cli(["batch", "package", "--out", str(tmp_path), "--target", "beos:3.11"])
    assert res.returncode == ExitCode.USAGE


# The oldest glibc the package's Linux wheels must install on: manylinux2014 (glibc 2.17)
# covers RHEL/Rocky/Alma 8 (glibc 2.28); a manylinux_2_28 or _2_34 wheel does not (PEP 600).
OLDEST_GLIBC = (2, 17)


def _glibc(platform: str) -> tuple[int, int] | None:
    legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
    for name, glibc in legacy.items():
        if platform.startswith(name + "_"):
            return glibc
    if platform.startswith("manylinux_"):
        major, minor = platform.split("_")[1:3]
        return int(major), int(minor)
    return None


@pytest.mark.slow
def test_every_linux_wheel_installs_on_glibc_2_17(package: Path, tmp_path: Path) -> None:
    """No binary wheel needs a newer glibc than manylinux2014's, and pip installs node_agent
    from the package's wheels alone for that platform (`--platform manylinux2014_x86_64` and
    the other names of glibc <= 2.17: pip does not take manylinux2014 for manylinux_2_17,
    the only tag of watchdog's wheel), from a clean venv that has nothing but pip."""
    with zipfile.ZipFile(package) as zf:
        members = [n for n in zf.namelist() if n.startswith("wheels/") and n.endswith(".whl")]
        zf.extractall(tmp_path / "pkg", members)
    wheels = tmp_path / "pkg" / "wheels"
    too_new = []
    for whl in sorted(wheels.glob("*.whl")):
        platforms = {t.platform for t in parse_wheel_filename(whl.name)[3]}
        if "any" in platforms or all(p.startswith("win") for p in platforms):
            continue
        glibcs = [g for g in map(_glibc, platforms) if g is not None]
        if not glibcs or min(glibcs) > OLDEST_GLIBC:
            too_new.append(whl.name)
    assert too_new == []
    assert "manylinux2014_x86_64" in PLATFORMS["linux"]
    assert all(_glibc(p) <= OLDEST_GLIBC for p in PLATFORMS["linux"])  # type: ignore[operator]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    target = tmp_path / "target"
    res = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-index",
            "--find-links",
            str(wheels),
            "--only-binary=:all:",
            *[a for p in PLATFORMS["linux"] for a in ("--platform", p)],
            "--python-version",
            PY,
            "--implementation",
            "cp",
            "--target",
            str(target),
            "node-agent",
        ],
        env=_clean_env(dict(os.environ)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    installed = {p.name.split("-")[0].lower() for p in target.glob("*.dist-info")}
    assert {"node_agent", "cryptography", "pydantic_core", "psutil"} <= installed
