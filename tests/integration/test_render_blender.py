"""Real Blender through `node-agent render`: frames, progress, metrics, workstation-path remap."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, make_task

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore

pytestmark = pytest.mark.skipif(shutil.which("blender") is None, reason="needs Blender")

# Re-point the scene's textures at a workstation folder, as a TD's scene would arrive.
_TO_WORKSTATION = """
import bpy, os, sys
for img in bpy.data.images:
    if img.filepath.startswith("//textures/"):
        img.filepath = "C:\\\\proj\\\\textures\\\\" + os.path.basename(img.filepath)
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[sys.argv.index("--") + 1])
"""


@pytest.fixture(scope="session")
def workstation_scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The demo scene built once, plus a copy whose textures point at C:\\proj\\textures."""
    out = tmp_path_factory.mktemp("scene")
    run = ["blender", "-b", "--python-exit-code", "1", "-noaudio"]
    subprocess.run(
        [*run, "-P", str(REPO / "examples" / "make_scene.py"), "--", str(out)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    script = out / "to_ws.py"
    script.write_text(_TO_WORKSTATION)
    subprocess.run(
        [*run, str(out / "spin.blend"), "-P", str(script), "--", str(out / "spin_ws.blend")],
        check=True,
        capture_output=True,
        timeout=600,
    )
    yield out


@pytest.mark.slow
def test_blender_renders_with_remapped_workstation_paths(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore, workstation_scene: Path
) -> None:
    t = make_task(
        tmp_path,
        azurite.account_url,
        renderer="blender",
        scene="shots/spin_ws.blend",
        frames="1-2",
        path_map={"C:\\proj\\": "proj"},
        threads=1,
    )
    assets = t.node.job_assets_dir()
    (assets / "shots").mkdir(parents=True)
    shutil.copy(workstation_scene / "spin_ws.blend", assets / "shots")
    shutil.copytree(workstation_scene / "textures", assets / "proj" / "textures")
    assert t.run("1-2", timeout=600) == 0, t.stderr()
    log = (t.node.task_dir / "renderer.log").read_text()
    remapped = [line for line in log.splitlines() if line.startswith("node_agent remap: C:")]
    assert remapped, log[-2000:]
    for line in remapped:
        assert Path(line.split(" -> ")[1]).is_file(), line
    names = {b.name for b in store.list_blobs(t.container, "task-1/")}
    assert {"task-1/$TaskOutput/frame_0001.png", "task-1/$TaskOutput/frame_0002.png"} <= names
    assert "task-1/$TaskPreview/preview.png" in names
    assert "progress: frame 1" in t.stderr()
    s = t.summary()
    assert s["exit_class"] == "ok" and s["cpu_s"] > 0.1 and s["peak_rss_bytes"] > 20 * 2**20
    assert s["overhead"]["start_to_renderer_s"] is not None
