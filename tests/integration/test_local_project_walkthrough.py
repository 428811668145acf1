"""docs/local-project.md, followed literally: its ```bash blocks run in order, in one bash,
in a folder holding a project made here (a scene with an external texture, by Blender);
the walkthrough must end with rendered frames of that scene."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from helpers import REPO

DOC = REPO / "docs" / "local-project.md"

SCENE_SCRIPT = """
import os, sys, bpy
out = sys.argv[sys.argv.index("--") + 1]
os.makedirs(os.path.join(out, "textures"), exist_ok=True)
bpy.ops.wm.read_factory_settings(use_empty=True)
s = bpy.context.scene
s.render.engine = "CYCLES"; s.cycles.samples = 4; s.cycles.use_denoising = False
s.render.resolution_x, s.render.resolution_y = 64, 48
s.frame_start, s.frame_end = 1, 4
img = bpy.data.images.new("grid", 16, 16)
img.pixels = [v for i in range(256) for v in ((1, 0.2, 0, 1) if (i // 4) % 2 else (0, 0.3, 1, 1))]
img.filepath_raw = os.path.join(out, "textures", "grid.png"); img.file_format = "PNG"; img.save()
img.filepath = "//textures/grid.png"
mat = bpy.data.materials.new("m"); mat.use_nodes = True
tex = mat.node_tree.nodes.new("ShaderNodeTexImage"); tex.image = img
mat.node_tree.links.new(tex.outputs["Color"], mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"])
bpy.ops.mesh.primitive_cube_add(); bpy.context.object.data.materials.append(mat)
bpy.context.object.keyframe_insert("location", frame=1)
bpy.context.object.location.x = 1; bpy.context.object.keyframe_insert("location", frame=4)
bpy.ops.object.light_add(type="SUN", location=(2, -2, 5))
bpy.ops.object.camera_add(location=(5, -5, 4), rotation=(1.1, 0, 0.785))
s.camera = bpy.context.object
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(out, "shot.blend"), relative_remap=True)
"""


def doc_commands() -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.S | re.M)


def test_the_local_project_walkthrough_reaches_rendered_frames(tmp_path: Path) -> None:
    blocks = doc_commands()
    assert len(blocks) >= 6 and "azurite start" in blocks[0]
    script = tmp_path / "make_shot.py"
    script.write_text(SCENE_SCRIPT)
    subprocess.run(
        ["blender", "-b", "--python-exit-code", "1", "-P", str(script), "--",
         str(tmp_path / "myproject")],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert (tmp_path / "myproject" / "textures" / "grid.png").is_file()

    walk = tmp_path / "walkthrough.sh"
    walk.write_text("set -euo pipefail\n" + "\n".join(blocks))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZ_BATCH_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    try:
        res = subprocess.run(
            ["bash", str(walk)], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=900,
        )  # fmt: skip
    finally:  # the doc's last step stops it; a failed step must not leave it running
        subprocess.run(
            [sys.executable, "-m", "node_agent", "azurite", "stop", "--location", ".azurite"],
            cwd=tmp_path, env=env, capture_output=True, timeout=60,
        )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    frames = sorted(tmp_path.glob("frames/*/$TaskOutput/frame_*.png"))
    assert [f.name for f in frames] == [f"frame_{i:04d}.png" for i in range(1, 5)], res.stdout
    for f in frames:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 200
    assert "frames rendered         4 of 4" in res.stdout
    assert "Azurite stopped" in res.stdout
    assert re.search(r"render +myproject-test/frames-00001-00002 +ok", res.stdout)
