"""Each adapter's command line on Linux and Windows, executables, and path remapping."""

from __future__ import annotations

import json
from pathlib import PurePath, PurePosixPath, PureWindowsPath
from typing import Any

import pytest

from node_agent.errors import ExitCode, RenderError, SpecError, UsageError
from node_agent.remap import remap_path, resolve_map
from node_agent.renderers import CommandContext, Launch, build_launch, find_executable
from node_agent.spec import Render, spec_from_data

WIN = PureWindowsPath(r"D:\batch\shared\node_agent\jobs\j1")
LIN = PurePosixPath("/mnt/batch/tasks/shared/node_agent/jobs/j1")


def _render(renderer: str, **kw: Any) -> Render:
    doc = {
        "job_id": "j1",
        "storage": {
            "account_url": "http://127.0.0.1:1/devstoreaccount1",
            "auth": {"kind": "emulator"},
        },
        "assets": [{"name": "a", "container": "assets"}],
        "render": {"renderer": renderer, "scene": "shots/s1.ma", "frames": "1-10", **kw},
    }
    return spec_from_data(doc).render


def _ctx(
    windows: bool, frames: list[int] | None = None, scene: str = "shots/s1.ma"
) -> CommandContext:
    base: PurePath = WIN if windows else LIN
    task = PureWindowsPath(r"D:\batch\tasks\t1") if windows else PurePosixPath("/mnt/batch/t1")
    return CommandContext(
        scene=base / "assets" / scene,
        frames=frames or [1, 2, 3],
        output_dir=task / "wd" / "output",
        assets_dir=base / "assets",
        task_dir=task,
        job_id="j1",
        task_id="t1",
        windows=windows,
    )


def _launch(renderer: str, windows: bool, frames: list[int] | None = None, **kw: Any) -> Launch:
    scene = kw.pop("scene", "shots/s1.ma")
    render = _render(renderer, executable="R", scene=scene, **kw)
    return build_launch(render, _ctx(windows, frames, scene), {})


@pytest.mark.parametrize("windows", [False, True])
def test_blender_command(windows: bool) -> None:
    ln = _launch("blender", windows, scene="s.blend", threads=4, options={"engine": "CYCLES"})
    out = str(_ctx(windows).output_dir / "frame_####")
    scene = str(_ctx(windows, scene="s.blend").scene)
    assert ln.argv == [
        "R",
        "-b",
        scene,
        "-noaudio",
        "-o",
        out,
        "-F",
        "PNG",
        "-x",
        "1",
        "-t",
        "4",
        "-E",
        "CYCLES",
        "-f",
        "1,2,3",
    ]
    assert ln.expected == {1: "frame_0001.png", 2: "frame_0002.png", 3: "frame_0003.png"}


@pytest.mark.parametrize("windows", [False, True])
@pytest.mark.parametrize("sub", ["arnold", "vray", "sw"])
def test_maya_command(windows: bool, sub: str) -> None:
    ln = _launch("maya", windows, [5, 7, 9], options={"renderer": sub})
    c = _ctx(windows)
    head = [
        "R",
        "-r",
        sub,
        "-proj",
        str(c.assets_dir),
        "-rd",
        str(c.output_dir),
        "-im",
        "frame_",
        "-fnc",
        "name#.ext",
        "-pad",
        "4",
        "-of",
        "png",
        "-s",
        "5",
        "-e",
        "9",
        "-b",
        "2",
    ]
    assert ln.argv[: len(head)] == head
    assert ln.argv[-1] == str(c.scene)
    assert ("-ai:lve" in ln.argv) == (sub == "arnold")
    assert ln.expected[7] == "frame_0007.png"


def test_maya_refuses_unknown_sub_renderer_and_irregular_frames() -> None:
    with pytest.raises(SpecError, match="render.options.renderer") as bad_sub:
        _launch("maya", False, options={"renderer": "redshift"})
    with pytest.raises(UsageError, match="start/end/step") as bad_frames:
        _launch("maya", False, [1, 2, 5])
    assert bad_sub.value.exit_code == bad_frames.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("windows", [False, True])
def test_arnold_kick_command(windows: bool) -> None:
    ln = _launch("arnold", windows, [12], scene="ass/shot.####.ass", output={"format": "OPEN_EXR"})
    c = _ctx(windows, scene="ass/shot.####.ass")
    assert ln.argv[:9] == [
        "R",
        "-i",
        str(c.scene.with_name("shot.0012.ass")),
        "-o",
        str(c.output_dir / "frame_0012.exr"),
        "-of",
        "exr",
        "-dw",
        "-dp",
    ]
    i = ln.argv.index("options.texture_searchpath")
    assert ln.argv[i - 1 : i + 2] == ["-set", "options.texture_searchpath", str(c.assets_dir)]
    assert "options.abort_on_license_fail" in ln.argv
    assert ln.expected == {12: "frame_0012.exr"}
    with pytest.raises(SpecError, match="frames_per_task"):
        _launch("arnold", windows, [1, 2])


@pytest.mark.parametrize("windows", [False, True])
def test_vray_command(windows: bool) -> None:
    ln = _launch("vray", windows, [1, 2, 3], scene="s.vrscene", threads=8)
    c = _ctx(windows, scene="s.vrscene")
    assert ln.argv == [
        "R",
        f"-sceneFile={c.scene}",
        "-frames=1-3",
        f"-imgFile={c.output_dir / 'frame.png'}",
        "-display=0",
        "-autoClose=1",
        "-verboseLevel=3",
        "-numThreads=8",
    ]
    assert ln.expected[2] == "frame.0002.png"
    assert ln.env["VRAY_ASSETS_PATH"] == str(c.assets_dir)


@pytest.mark.parametrize("windows", [False, True])
def test_3dsmax_command(windows: bool) -> None:
    ln = _launch("3dsmax", windows, [10, 20, 30], scene="s.max", output={"format": "JPEG"})
    c = _ctx(windows, scene="s.max")
    assert ln.argv == [
        "R",
        "-secure",
        "off",
        "-rfw:0",
        "-v:5",
        "-start:10",
        "-end:30",
        "-nthFrame:10",
        f"-outputName:{c.output_dir / 'frame_.jpg'}",
        str(c.scene),
    ]
    assert ln.expected[20] == "frame_0020.jpg"


def test_executable_from_spec_then_exec_variable_then_path(tmp_path: Any) -> None:
    r = _render("maya")
    assert find_executable(_render("maya", executable="/opt/m/Render"), {}) == "/opt/m/Render"
    env = {"MAYA_2019_EXEC": "/a/Render", "MAYA_2020_EXEC": "/b/Render", "PATH": str(tmp_path)}
    assert find_executable(r, env) == "/b/Render"  # newest version first
    exe = tmp_path / "Render"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert find_executable(r, {"PATH": str(tmp_path)}) == str(exe)
    with pytest.raises(RenderError, match="'Render' not found on PATH.*MAYA_<version>_EXEC"):
        find_executable(r, {"PATH": str(tmp_path / "none")})


MAP = {"C:\\proj\\": "proj", "/mnt/studio/": "", "P:/lib": "lib"}


def test_remap_prefixes() -> None:
    pairs = resolve_map(MAP, LIN / "assets")
    a = str(LIN / "assets")
    assert remap_path("C:\\proj\\tex\\wood.tif", pairs) == f"{a}/proj/tex/wood.tif"
    assert remap_path("c:/PROJ/tex/wood.tif", pairs) == f"{a}/proj/tex/wood.tif"
    assert remap_path("/mnt/studio/a b.exr", pairs) == f"{a}/a b.exr"
    assert remap_path("/mnt/studioX/a.exr", pairs) == "/mnt/studioX/a.exr"  # not a prefix dir
    assert remap_path("/MNT/studio/a.exr", pairs) == "/MNT/studio/a.exr"  # POSIX is case-sensitive


@pytest.mark.parametrize("windows", [False, True])
def test_each_adapter_applies_the_path_map(windows: bool) -> None:
    c = _ctx(windows)
    a = str(c.assets_dir)
    bl = _launch("blender", windows, scene="s.blend", path_map=MAP)
    script = str(c.task_dir / "node_agent_remap.py")
    assert bl.argv[bl.argv.index("-P") + 1] == script and bl.argv.index("-P") < bl.argv.index("-f")
    assert "'C:/proj/'" in bl.files[script] and "bpy.data.images" in bl.files[script]
    compile(bl.files[script], "remap.py", "exec")

    maya = _launch("maya", windows, path_map=MAP)
    mel = maya.argv[maya.argv.index("-preRender") + 1]
    assert mel.startswith("dirmap -en true;")
    assert f'dirmap -m "C:/proj" "{(c.assets_dir / "proj").as_posix()}";' in mel

    kick = _launch("arnold", windows, [1], path_map=MAP)
    pm = kick.env["ARNOLD_PATHMAP"]
    doc = json.loads(kick.files[pm])
    assert doc["windows" if windows else "linux"]["C:/proj/"] == (c.assets_dir / "proj").as_posix()

    vray = _launch("vray", windows, path_map=MAP)
    sep = ";" if windows else ":"
    assert vray.env["VRAY_ASSETS_PATH"].split(sep) == [
        a,
        str(c.assets_dir / "proj"),
        str(c.assets_dir / "lib"),
    ]

    mx = _launch("3dsmax", windows, path_map=MAP)
    mxp = next(x for x in mx.argv if x.startswith("-pathFile:"))[len("-pathFile:") :]
    assert f"Dir2={c.assets_dir / 'proj'}" in mx.files[mxp] and "[BitmapDirs]" in mx.files[mxp]


ODD = "shot cam; rm -rf ~ \"q\" 'x' $HOME"
EXTRA = ["-x-td", "{task_id}", "--td-path={assets_dir}/lib", ODD]


def _insert_at(renderer: str, argv: list[str]) -> int:
    """Where each adapter puts render.extra_args: where its renderer takes options."""
    if renderer == "blender":
        return argv.index("-f")  # after -b scene and the adapter's options, before the frames
    if renderer in ("maya", "3dsmax"):
        return len(argv) - 1  # options before the scene file (the last argument)
    return len(argv)  # kick, vray: order-free options, the TD's last so they win


@pytest.mark.parametrize("windows", [False, True])
@pytest.mark.parametrize(
    ("renderer", "frames", "scene"),
    [
        ("blender", [1, 2, 3], "s.blend"),
        ("maya", [1, 2, 3], "shots/s1.ma"),
        ("arnold", [7], "ass/shot.####.ass"),
        ("vray", [1, 2, 3], "s.vrscene"),
        ("3dsmax", [1, 2, 3], "s.max"),
    ],
)
@pytest.mark.parametrize("path_map", [{}, MAP])
def test_extra_args_are_inserted_where_each_renderer_takes_options(
    windows: bool, renderer: str, frames: list[int], scene: str, path_map: dict[str, str]
) -> None:
    kw: dict[str, Any] = {"scene": scene, "threads": 2, "path_map": path_map}
    base = _launch(renderer, windows, frames, **kw)
    ln = _launch(renderer, windows, frames, extra_args=EXTRA, **kw)
    c = _ctx(windows, frames, scene)
    extra = ["-x-td", "t1", f"--td-path={c.assets_dir}/lib", ODD]  # each item one argument
    i = _insert_at(renderer, base.argv)
    assert ln.argv == base.argv[:i] + extra + base.argv[i:]
    assert (ln.expected, ln.env, ln.files) == (base.expected, base.env, base.files)
    if renderer == "blender":
        assert ln.argv.index("-b") == 1 and ln.argv.index("-x-td") > ln.argv.index("-o")
        if path_map:
            assert ln.argv.index("-P") < ln.argv.index("-x-td")


@pytest.mark.parametrize("windows", [False, True])
def test_blender_extra_args_after_double_dash_go_after_the_frames(windows: bool) -> None:
    ln = _launch(
        "blender",
        windows,
        scene="s.blend",
        extra_args=["-E", "CYCLES", "-P", "{assets_dir}/post.py", "--", "--shot", "{scene}"],
    )
    c = _ctx(windows, scene="s.blend")
    # Blender ignores everything after '--': the frames must come before it
    assert ln.argv[-9:] == [
        "-E",
        "CYCLES",
        "-P",
        f"{c.assets_dir}/post.py",
        "-f",
        "1,2,3",
        "--",
        "--shot",
        str(c.scene),
    ]


# --- adapter fidelity (issue 13): each case names the source the adapter follows ---


@pytest.mark.parametrize("windows", [False, True])
@pytest.mark.parametrize(("sub", "flag"), [("arnold", "-ai:threads"), ("sw", "-n")])
def test_maya_threads_flag_belongs_to_the_sub_renderer(windows: bool, sub: str, flag: str) -> None:
    # Arnold for Maya's batch flags take threads as -ai:threads (Autodesk, Arnold for Maya
    # User Guide, "Batch Render Flags"); -n is Maya Software's "number of processors"
    ln = _launch("maya", windows, options={"renderer": sub}, threads=6)
    assert ln.argv[ln.argv.index(flag) + 1] == "6"
    other = {"-ai:threads", "-n"} - {flag}
    assert not other & set(ln.argv)


def test_maya_vray_gets_no_maya_software_threads_flag() -> None:
    ln = _launch("maya", False, options={"renderer": "vray"}, threads=6)
    assert "-n" not in ln.argv and "-ai:threads" not in ln.argv


@pytest.mark.parametrize("windows", [False, True])
def test_maya_arnold_path_map_reaches_arnold(windows: bool) -> None:
    # dirmap alone does not reach Arnold's own lookups: an ARNOLD_PATHMAP JSON file as the
    # Deadline Maya adaptor writes ({"linux"|"windows": {from: to}}, forward slashes) and the
    # texture/procedural/plugin search paths azure-batch-maya sets in its pre-render MEL
    c = _ctx(windows)
    ln = _launch("maya", windows, path_map=MAP)
    pm = ln.env["ARNOLD_PATHMAP"]
    assert type(c.task_dir)(pm).parent == c.task_dir
    doc = json.loads(ln.files[pm])
    assert list(doc) == ["windows" if windows else "linux"]
    assert doc["windows" if windows else "linux"]["C:/proj/"] == (c.assets_dir / "proj").as_posix()
    mel = ln.argv[ln.argv.index("-preRender") + 1]
    assert mel.startswith("dirmap -en true;")
    sep = ";" if windows else ":"
    dirs = sep.join(
        p.as_posix() for p in (c.assets_dir, c.assets_dir / "proj", c.assets_dir / "lib")
    )
    for attr in ("texture_searchpath", "procedural_searchpath", "plugin_searchpath"):
        assert f'setAttr -type "string" defaultArnoldRenderOptions.{attr} "{dirs}";' in mel


def test_maya_arnold_search_paths_without_a_path_map_and_not_for_other_subs() -> None:
    ln = _launch("maya", False)
    mel = ln.argv[ln.argv.index("-preRender") + 1]
    assert "dirmap" not in mel and "defaultArnoldRenderOptions.texture_searchpath" in mel
    assert "ARNOLD_PATHMAP" not in ln.env
    sw = _launch("maya", False, options={"renderer": "sw"}, path_map=MAP)
    assert "ARNOLD_PATHMAP" not in sw.env and "defaultArnoldRenderOptions" not in " ".join(sw.argv)


@pytest.mark.parametrize("windows", [False, True])
def test_3dsmax_path_file_is_next_to_the_scene(windows: bool) -> None:
    # Azure/BatchExplorer-data ncj/3dsmax/scripts/3dsmax.ps1: "If we're using a path file we
    # need to ensure the scene file is located at the same location otherwise 3ds Max 2018
    # IO has issues finding textures" (it moves the scene next to the path file)
    c = _ctx(windows, scene="shots/s.max")
    mx = _launch("3dsmax", windows, scene="shots/s.max", path_map=MAP)
    mxp = next(x for x in mx.argv if x.startswith("-pathFile:"))[len("-pathFile:") :]
    assert type(c.scene)(mxp).parent == c.scene.parent
    assert set(mx.files) == {mxp}


@pytest.mark.parametrize(
    ("renderer", "options", "licenses"),
    [
        # Azure/BatchExplorer-data ncj/maya/render-*-*/pool.template.json applicationLicenses
        ("maya", {}, ("maya", "arnold")),
        ("maya", {"renderer": "arnold"}, ("maya", "arnold")),
        ("maya", {"renderer": "vray"}, ("maya", "vray")),
        ("maya", {"renderer": "sw"}, ("maya",)),  # render-default-*: -r sw, ["maya"]
        # ncj/3dsmax/standard/pool.template.json: ["3dsmax", "[parameters('renderer')]"],
        # renderer one of arnold (the default) or vray
        ("3dsmax", {}, ("3dsmax", "arnold")),
        ("3dsmax", {"renderer": "vray"}, ("3dsmax", "vray")),
        ("3dsmax", {"renderer": "scanline"}, ("3dsmax",)),
        ("vray", {}, ("vray",)),
        ("arnold", {}, ("arnold",)),
        ("blender", {}, ()),
    ],
)
def test_pool_licenses_per_renderer_and_option(
    renderer: str, options: dict[str, str], licenses: tuple[str, ...]
) -> None:
    from node_agent import renderers

    descriptor = renderers.get(renderer)
    assert descriptor is not None
    assert descriptor.licenses_for(options) == licenses


def test_3dsmax_refuses_an_unknown_renderer_option() -> None:
    with pytest.raises(SpecError, match="render.options.renderer"):
        _launch("3dsmax", False, scene="s.max", options={"renderer": "redshift"})


@pytest.mark.parametrize(
    ("frames", "text"),
    [([1, 2, 3], "1-3"), ([1, 3, 5], "1-5,2"), ([1, 2, 5, 9, 11, 13], "1-2;5;9-13,2"), ([7], "7")],
)
def test_vray_takes_any_frame_list_in_its_own_syntax(frames: list[int], text: str) -> None:
    # -frames=b0[-e0[,s0]]{;bn[-en[,sn]]} (vray -help): a re-run's leftover frames need no range
    ln = _launch("vray", False, frames, scene="s.vrscene")
    assert f"-frames={text}" in ln.argv
    assert sorted(ln.expected) == frames
