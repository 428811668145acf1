"""Preflight (issue 13): every file a scene needs, resolved as its renderer would resolve it
on the node, each missing one named; `validate --assets` and job prep refuse with exit 12.

Real Blender builds the .blend files (a linked library, an image sequence, a UDIM set,
workstation-absolute paths); the .ma and .ass files are written here with known
dependencies. Job prep runs as a real process against a real Azurite.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import make_spec_doc, missing_deps, node_env, run_agent, scene_render, upload_tree

from node_agent.azurite import AzuriteServer
from node_agent.preflight import scan
from node_agent.redact import Redactor
from node_agent.spec import spec_from_data
from node_agent.storage import BlobStore

_BUILD = r"""
import bpy, os, sys
out = os.path.abspath(sys.argv[sys.argv.index("--") + 1])

def img(name, path, source="FILE", tiled=False):
    im = bpy.data.images.new(name, 4, 4, tiled=tiled)
    im.source = source
    im.filepath = path
    im.use_fake_user = True
    return im

bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.mesh.primitive_cube_add()
cube = bpy.context.object
cube.name = "LibCube"
mat = bpy.data.materials.new("LibMat")
mat.use_nodes = True
tex = mat.node_tree.nodes.new("ShaderNodeTexImage")
tex.image = img("libtex", "//libtex.png")
cube.data.materials.append(mat)
os.makedirs(out + "/libs", exist_ok=True)
bpy.ops.wm.save_as_mainfile(filepath=out + "/libs/lib.blend")

bpy.ops.wm.read_factory_settings(use_empty=True)
os.makedirs(out + "/shots", exist_ok=True)
bpy.ops.wm.save_as_mainfile(filepath=out + "/shots/main.blend")
with bpy.data.libraries.load("//../libs/lib.blend", link=True, relative=True) as (src, dst):
    dst.objects = ["LibCube"]
for ob in dst.objects:
    bpy.context.scene.collection.objects.link(ob)
img("tex_a", "//../textures/a.png")
img("seq", "//../seq/frame_0001.png", source="SEQUENCE")
img("skin", "//../udim/skin.<UDIM>.png", source="TILED", tiled=True)
img("wall", "/mnt/studio/proj/tex/wall.png")
img("floor", "C:\\studio\\proj\\tex\\floor.png")
scene = bpy.context.scene
scene.frame_start, scene.frame_end, scene.frame_step = 5, 30, 5
bpy.ops.wm.save_as_mainfile(filepath=out + "/shots/main.blend")
bpy.data.libraries[0].filepath = "/mnt/studio/proj/libs/lib.blend"
bpy.ops.wm.save_as_mainfile(filepath=out + "/shots/mapped.blend")
"""
FILES = [
    "libs/libtex.png",
    "textures/a.png",
    "seq/frame_0001.png",
    "seq/frame_0002.png",
    "udim/skin.1001.png",
    "udim/skin.1002.png",
    "tex/wall.png",
    "tex/floor.png",
]
PATH_MAP = {"/mnt/studio/proj": "", "C:\\studio\\proj": ""}


@pytest.fixture(scope="session")
def bat_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bat")
    script = out / "build.py"
    script.write_text(_BUILD)
    subprocess.run(
        ["blender", "-b", "--python-exit-code", "1", "-P", str(script), "--", str(out / "src")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    for rel in FILES:
        (out / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / "src" / rel).write_bytes(b"\x89PNG " + rel.encode())
    return out / "src"


def _assets(src: Path, tmp: Path, drop: tuple[str, ...] = ()) -> Path:
    dest = tmp / "assets"
    shutil.copytree(src, dest)
    for rel in drop:
        for p in dest.glob(rel):
            p.unlink()
    return dest


def test_blender_all_present_through_relative_udim_sequence_library_and_path_map(
    bat_scene: Path, tmp_path: Path
) -> None:
    assets = _assets(bat_scene, tmp_path)
    render = scene_render(scene="shots/main.blend", path_map=PATH_MAP)
    result = scan(render, assets, outside_ok=False)
    assert result.missing == []
    # a.png, the sequence, the UDIM set, wall, floor, the library and the library's texture
    assert result.found == 7


@pytest.mark.parametrize(
    ("drop", "named"),
    [
        (("textures/a.png",), "textures/a.png"),
        (("seq/frame_*.png",), "seq/frame_0001.png"),
        (("udim/skin.*.png",), "udim/skin.<UDIM>.png"),
        (("libs/libtex.png",), "libs/libtex.png"),  # needed by the linked library
        (("tex/wall.png",), "tex/wall.png"),  # absolute, mapped by path_map
        (("tex/floor.png",), "tex/floor.png"),  # a Windows drive path, mapped
    ],
)
def test_blender_names_each_missing_dependency(
    bat_scene: Path, tmp_path: Path, drop: tuple[str, ...], named: str
) -> None:
    assets = _assets(bat_scene, tmp_path, drop)
    render = scene_render(scene="shots/main.blend", path_map=PATH_MAP)
    assert missing_deps(render, assets) == [named]


def test_blender_one_tile_or_frame_is_enough_for_a_set(bat_scene: Path, tmp_path: Path) -> None:
    assets = _assets(bat_scene, tmp_path, ("udim/skin.1001.png", "seq/frame_0001.png"))
    render = scene_render(scene="shots/main.blend", path_map=PATH_MAP)
    assert missing_deps(render, assets) == []


def test_blender_library_followed_through_path_map(bat_scene: Path, tmp_path: Path) -> None:
    """mapped.blend links /mnt/studio/proj/libs/lib.blend: path_map takes the scan into the
    library in the assets, where its texture is missing."""
    assets = _assets(bat_scene, tmp_path, ("libs/libtex.png",))
    render = scene_render(scene="shots/mapped.blend", path_map=PATH_MAP)
    assert missing_deps(render, assets) == ["libs/libtex.png"]


def test_blender_unmapped_absolute_path_ismissing_deps(bat_scene: Path, tmp_path: Path) -> None:
    assets = _assets(bat_scene, tmp_path)
    render = scene_render(scene="shots/main.blend", path_map={"/mnt/studio/proj": ""})
    result = scan(render, assets, outside_ok=False)
    assert [(m.shown, m.reason) for m in result.missing] == [
        ("C:/studio/proj/tex/floor.png", "absolute path not mapped by render.path_map")
    ]


def _validate(spec: dict[str, object], tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    f = tmp / "job.yaml"
    f.write_text(yaml.safe_dump(spec))
    return run_agent(["validate", str(f), *args], timeout=120)


def test_validate_assets_names_the_texture_left_out(blender_scene: Path, tmp_path: Path) -> None:
    """The demo scene with one texture missing from the folder: exit 12 naming it; the
    complete folder passes; --allow-missing makes it a warning."""
    assets = _assets(blender_scene, tmp_path, ("textures/stripes.png",))
    doc = make_spec_doc("http://127.0.0.1:10000/devstoreaccount1")
    r = _validate(doc, tmp_path, "--assets", str(assets))
    assert r.returncode == 12, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "missing dependency" in ln]
    assert len(lines) == 1 and "'textures/stripes.png'" in lines[0], r.stderr
    assert "spin.blend: image 'stripes', written '//textures/stripes.png'" in lines[0]
    assert "checker" not in r.stderr

    r = _validate(doc, tmp_path, "--assets", str(assets), "--allow-missing")
    assert r.returncode == 0, r.stderr
    assert "warning: missing dependency 'textures/stripes.png'" in r.stderr
    assert ": ok: job job-a" in r.stdout

    shutil.copy(blender_scene / "textures/stripes.png", assets / "textures/stripes.png")
    r = _validate(doc, tmp_path, "--assets", str(assets))
    assert r.returncode == 0, r.stderr


def test_validate_assets_scene_name_typo(blender_scene: Path, tmp_path: Path) -> None:
    assets = _assets(blender_scene, tmp_path)
    doc = make_spec_doc("http://127.0.0.1:10000/devstoreaccount1", scene="sipn.blend")
    r = _validate(doc, tmp_path, "--assets", str(assets))
    assert r.returncode == 12, r.stderr
    assert "missing dependency 'sipn.blend' (the scene itself is not in the job's assets" in (
        r.stderr
    )


def _job_prep(root: Path, tmp: Path, doc: dict[str, object]) -> subprocess.CompletedProcess[str]:
    job = str(doc["job_id"])
    spec = tmp / f"{job}.json"
    spec.write_text(json.dumps(doc))
    env = {**node_env(root, job, None), "NODE_AGENT_VIEW_ISOLATION": "copy"}
    return run_agent(["job-prep", "--spec", str(spec)], env)


def test_job_prep_refuses_a_job_whose_upload_lacks_a_texture(
    azurite: AzuriteServer, blender_scene: Path, tmp_path: Path
) -> None:
    """The upload lacks textures/stripes.png: job prep syncs, scans the node's view and
    fails with exit 12 naming it, before any frame task; policy 'warn' lets it through."""
    upload = _assets(blender_scene, tmp_path, ("textures/stripes.png",))
    doc = make_spec_doc(azurite.account_url, renderer="blender")
    doc["assets"] = [{"name": "scene", "container": "preflight-assets", "prefix": "shot/"}]
    store = BlobStore(spec_from_data(doc).storage, Redactor())
    assert upload_tree(store, upload, "preflight-assets", "shot/") == 2

    root = tmp_path / "node"
    r = _job_prep(root, tmp_path, doc)
    assert r.returncode == 12, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "missing dependency" in ln]
    assert len(lines) == 1 and "'textures/stripes.png'" in lines[0], r.stderr
    assert "job prep: render.scene 'spin.blend': 1 file(s) the render needs are missing" in (
        r.stderr
    )
    view = root / "shared" / "node_agent" / "jobs" / "job-a" / "assets"
    assert (view / "spin.blend").is_file() and (view / "textures/checker.png").is_file()

    doc["job_id"] = "job-warn"
    doc["policies"] = {"missing_dependencies": "warn"}
    r = _job_prep(root, tmp_path, doc)
    assert r.returncode == 0, r.stderr
    assert "missing dependency 'textures/stripes.png'" in r.stderr
    assert "(allowed)" in r.stderr


def test_frames_omitted_use_the_scene_range_and_outside_is_a_warning(
    bat_scene: Path, tmp_path: Path
) -> None:
    """main.blend says frame_start 5, frame_end 30, frame_step 5 (read by BAT)."""
    assets = _assets(bat_scene, tmp_path)
    doc = make_spec_doc("http://127.0.0.1:10000/devstoreaccount1", scene="shots/main.blend")
    doc["render"]["path_map"] = PATH_MAP  # type: ignore[index]
    del doc["render"]["frames"]  # type: ignore[attr-defined]
    r = _validate(doc, tmp_path, "--assets", str(assets))
    assert r.returncode == 0, r.stderr
    assert "render.frames: omitted: the scene's range 5-30x5 is used" in r.stderr
    assert "6 frames" in r.stdout

    doc["render"]["frames"] = "1-40"  # type: ignore[index]
    r = _validate(doc, tmp_path, "--assets", str(assets))
    assert r.returncode == 0, r.stderr
    assert "render.frames: 14 frame(s) outside the scene's range 5-30 (first: 1)" in r.stderr
    assert "40 frames" in r.stdout
