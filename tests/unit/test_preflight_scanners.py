"""Dependency scanners for Maya ASCII and Arnold .ass scenes: pure text parsing, no renderer."""

from __future__ import annotations

from pathlib import Path

from helpers import missing_deps, scene_render

from node_agent.preflight import scan


def test_maya_ascii_references_textures_udim_caches(tmp_path: Path) -> None:
    assets = _tree(tmp_path / "a", {"scenes/shot.ma": MA, **dict.fromkeys(MA_PRESENT, "x")})
    render = scene_render(
        renderer="maya", scene="scenes/shot.ma", path_map={"D:\\studio\\proj": ""}
    )
    result = scan(render, assets, outside_ok=False)
    assert [m.shown for m in result.missing] == ["sourceimages/gone.png"]
    assert "colorTex" not in result.missing[0].dep.where
    assert "missingTex" in result.missing[0].dep.where
    assert result.found == 9
    for rel in ("props/prop.ma", "sourceimages/skin.1001.exr", "cache/nCache/cloth.xml"):
        (assets / rel).unlink()
    (assets / "sourceimages/bump.1001.exr").unlink()  # 1002 still there: the set is present
    assert missing_deps(render, assets) == [
        "cache/nCache/cloth.xml",
        "props/prop.ma",
        "sourceimages/gone.png",
        "sourceimages/skin.<UDIM>.exr",
    ]


def test_maya_scene_folder_is_searched_after_the_project(tmp_path: Path) -> None:
    assets = _tree(tmp_path / "a", {"scenes/shot.ma": MA, **dict.fromkeys(MA_PRESENT, "x")})
    (assets / "sourceimages/color.png").unlink()
    render = scene_render(
        renderer="maya", scene="scenes/shot.ma", path_map={"D:\\studio\\proj": ""}
    )
    assert "sourceimages/color.png" in missing_deps(render, assets)
    _tree(assets, {"scenes/sourceimages/color.png": "x"})
    assert "sourceimages/color.png" not in missing_deps(render, assets)


def test_arnold_ass_filename_parameters(tmp_path: Path) -> None:
    present = ["textures/wood.1001.tx", "textures/spec.tx", "procs/crowd.0007.ass"]
    assets = _tree(tmp_path / "a", {"shot.ass": ASS, **dict.fromkeys(present, "x")})
    render = scene_render(
        renderer="arnold", scene="shot.ass", frames="1", path_map={"/mnt/studio/proj": ""}
    )
    result = scan(render, assets, outside_ok=False)
    assert [m.shown for m in result.missing] == ["textures/lost.tx"]
    assert "image 'lostTex'" in result.missing[0].dep.where
    assert result.found == 4
    (assets / "textures/wood.1001.tx").unlink()
    (assets / "textures/spec.tx").unlink()
    assert missing_deps(render, assets) == [
        "textures/lost.tx",
        "textures/spec.tx",
        "textures/wood.<udim>.tx",
    ]


MA = r"""//Maya ASCII 2022 scene
//Name: shot.ma
requires maya "2022";
file -rdi 1 -ns "chr" -rfn "chrRN" -typ "mayaAscii" "assets/chr.ma";
file -rdi 1 -ns "prop" -rfn "propRN" -typ "mayaAscii" "D:/studio/proj/props/prop.ma";
file -r -ns "chr" -dr 1 -rfn "chrRN" -typ "mayaAscii" "assets/chr.ma";
file -r -ns "prop" -dr 1 -rfn "propRN" -typ "mayaAscii" "D:/studio/proj/props/prop.ma";
createNode transform -n "pCube1";
createNode file -n "colorTex";
	setAttr ".ftn" -type "string" "sourceimages/color.png";
createNode file -n "skinTex";
	setAttr ".ftn" -type "string" "sourceimages/skin.<UDIM>.exr";
createNode file -n "bumpTex";
	setAttr ".uvt" 3;
	setAttr ".ftn" -type "string" "sourceimages/bump.1001.exr";
createNode file -n "missingTex";
	setAttr ".ftn" -type "string" "sourceimages/gone.png";
createNode AlembicNode -n "anim_abc";
	setAttr ".fn" -type "string" "cache/anim.abc";
createNode cacheFile -n "clothCache";
	setAttr ".cp" -type "string" "cache/nCache/";
	setAttr ".cn" -type "string" "cloth";
createNode aiStandIn -n "treeStandIn";
	setAttr ".dso" -type "string" "D:/studio/proj/standins/tree.ass";
"""


MA_PRESENT = [
    "assets/chr.ma",
    "props/prop.ma",
    "sourceimages/color.png",
    "sourceimages/skin.1001.exr",
    "sourceimages/bump.1001.exr",
    "sourceimages/bump.1002.exr",
    "cache/anim.abc",
    "cache/nCache/cloth.xml",
    "standins/tree.ass",
]


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


ASS = r"""### exported: Arnold 7
options
{
 AA_samples 3
 texture_searchpath "C:/old/textures"
}
image
{
 name diffuseTex
 filename "textures/wood.<udim>.tx"
}
image
{
 name "specTex"
 filename "/mnt/studio/proj/textures/spec.tx"
}
procedural
{
 name crowd
 filename "procs/crowd.####.ass"
}
image
{
 name lostTex
 filename "textures/lost.tx"
}
"""
