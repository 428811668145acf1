"""`assets push SCENE.blend` (issue 13): the scene and exactly its dependencies (Blender
Asset Tracer), their layout kept, a texture at an absolute path outside the scene's folder
moved under `_outside_project/` and the .blend rewritten to find it there, as a BAT pack
does. Real Blender builds and renders the scene, real Azurite, node-agent as a process."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import missing_deps, run_agent, scene_render
from PIL import Image

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore
from node_agent.sync.manifest import parse

_BUILD = r"""
import bpy, os, sys
shot, library = sys.argv[sys.argv.index("--") + 1:]

def solid(name, path, rgba):
    im = bpy.data.images.new(name, 4, 4)
    im.pixels = list(rgba) * 16
    im.filepath_raw = path
    im.file_format = "PNG"
    im.save()
    return im

bpy.ops.wm.read_factory_settings(use_empty=True)
os.makedirs(shot + "/textures", exist_ok=True)
os.makedirs(library, exist_ok=True)
near = solid("near", shot + "/textures/near.png", (0.0, 0.0, 1.0, 1.0))
far = solid("far", library + "/far.png", (0.0, 1.0, 0.0, 1.0))
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 1
scene.cycles.use_denoising = False
scene.view_settings.view_transform = "Standard"
scene.render.resolution_x = scene.render.resolution_y = 8
scene.render.resolution_percentage = 100
bpy.ops.mesh.primitive_plane_add(size=4)
mat = bpy.data.materials.new("Far")
mat.use_nodes = True
nodes = mat.node_tree.nodes
nodes.clear()
tex = nodes.new("ShaderNodeTexImage")
tex.image = far
emit = nodes.new("ShaderNodeEmission")
out = nodes.new("ShaderNodeOutputMaterial")
mat.node_tree.links.new(tex.outputs["Color"], emit.inputs["Color"])
mat.node_tree.links.new(emit.outputs["Emission"], out.inputs["Surface"])
bpy.context.object.data.materials.append(mat)
near.use_fake_user = True
bpy.ops.object.camera_add(location=(0, 0, 2))
cam = bpy.context.object
cam.data.type = "ORTHO"
cam.data.ortho_scale = 2
scene.camera = cam
bpy.ops.wm.save_as_mainfile(filepath=shot + "/scene.blend")
near.filepath = "//textures/near.png"  # in the scene's folder, relative
far.filepath = os.path.abspath(library + "/far.png")  # a workstation-absolute path outside it
bpy.ops.wm.save_as_mainfile(filepath=shot + "/scene.blend", relative_remap=False)
"""


def _blender(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = ["blender", "-b", "--python-exit-code", "1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def workstation(tmp_path: Path) -> tuple[Path, Path]:
    shot, library = tmp_path / "ws" / "shot", tmp_path / "ws" / "library"
    script = tmp_path / "build.py"
    script.write_text(_BUILD)
    r = _blender("-P", str(script), "--", str(shot), str(library))
    assert r.returncode == 0, r.stdout + r.stderr
    (shot / "unused.png").write_bytes(b"not referenced by the scene")
    (shot / "scene.blend1").unlink(missing_ok=True)
    return shot, library


def _green(png: Path) -> bool:
    r, g, b = Image.open(png).convert("RGB").getpixel((4, 4))
    return g > 200 and r < 60 and b < 60


def test_push_scene_takes_its_dependencies_and_repoints_an_absolute_path(
    azurite: AzuriteServer, store: BlobStore, workstation: tuple[Path, Path], tmp_path: Path
) -> None:
    shot, library = workstation
    # on the workstation the scene renders the far texture (green)
    r = _blender(
        str(shot / "scene.blend"), "-o", str(tmp_path / "ws_out" / "f_#"), "-F", "PNG", "-f", "1"
    )
    assert r.returncode == 0 and _green(tmp_path / "ws_out" / "f_1.png"), r.stdout

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    push = ["assets", "push", str(shot / "scene.blend"), "--project", "packed"]
    r = run_agent([*push, "--container", "pack", "--account-url", azurite.account_url], env)
    assert r.returncode == 0, r.stdout + r.stderr
    pin = r.stdout.splitlines()[-1].removeprefix("manifest ")
    assert "# render.scene: scene.blend" in r.stdout

    files = parse(store.read_blob("pack", f"packed/manifests/{pin}.json"), "m")
    far = f"_outside_project/{(library / 'far.png').as_posix().lstrip('/')}"
    # exactly the scene and what it needs: unused.png is not pushed, the layout is BAT's
    assert sorted(f.path for f in files) == sorted(["scene.blend", "textures/near.png", far])
    scene_size = next(f.size for f in files if f.path == "scene.blend")
    assert (shot / "scene.blend").stat().st_size == scene_size  # rewritten in place, same size
    assert json.dumps([f.path for f in files]).count("unused") == 0

    # the node's side: sync the pinned manifest; the workstation's library is gone
    dest = tmp_path / "node" / "assets"
    sync = ["sync", "pack/packed", str(dest), "--manifest", pin]
    r = run_agent([*sync, "--account-url", azurite.account_url], env)
    assert r.returncode == 0, r.stdout + r.stderr
    library.rename(library.with_name("library.moved"))
    render = scene_render(scene="scene.blend", frames="1")
    assert missing_deps(render, dest) == []  # every path resolves inside the synced folder
    r = _blender(
        str(dest / "scene.blend"), "-o", str(tmp_path / "out" / "f_#"), "-F", "PNG", "-f", "1"
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert _green(tmp_path / "out" / "f_1.png"), r.stdout  # the far texture was found
    assert "Unable to open" not in r.stdout + r.stderr


def test_push_scene_with_a_missing_dependency_is_refused_naming_it(
    azurite: AzuriteServer, workstation: tuple[Path, Path], tmp_path: Path
) -> None:
    shot, _ = workstation
    (shot / "textures" / "near.png").unlink()
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    push = ["assets", "push", str(shot / "scene.blend"), "--project", "packed-missing"]
    r = run_agent([*push, "--container", "pack", "--account-url", azurite.account_url], env)
    assert r.returncode == 12, r.stdout + r.stderr
    missing = [ln for ln in r.stderr.splitlines() if "missing dependency" in ln]
    assert len(missing) == 1 and "textures/near.png" in missing[0], r.stderr
    r = run_agent(
        [*push, "--container", "pack", "--account-url", azurite.account_url, "--allow-missing"],
        env,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning: missing dependency" in r.stderr
