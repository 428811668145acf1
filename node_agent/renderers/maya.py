"""Maya command-line renderer: `Render -r arnold|vray|sw -proj -rd -im -s -e -b [extra] <scene>`.

What each sub-renderer gets, and where it comes from:
- threads: `-ai:threads N` for Arnold (Autodesk, Arnold for Maya User Guide, "Batch Render
  Flags": https://help.autodesk.com/cloudhelp/2024/ENU/AR-Maya/files/am-Arnold_for_Maya_User_Guide/
  rendering/arnold_for_maya_rendering_am_Batch_Render_Flags_html.html); `-n N` is Maya
  Software's "number of processors" (`Render -r sw -help`). V-Ray for Maya gets none from
  node_agent (no flag checked against its documentation): a TD passes one in extra_args.
- render.path_map: `dirmap` MEL in -preRender for Maya's own file lookups. Arnold's lookups
  (aiImage, procedurals, plug-ins, .tx) bypass dirmap, so with Arnold also an ARNOLD_PATHMAP
  file ({"linux"|"windows": {from: to}}, forward slashes, only the running OS's key read),
  as the Deadline Maya adaptor writes it (aws-deadline/deadline-cloud-for-maya
  src/deadline/maya_adaptor/MayaAdaptor/adaptor.py, _setup_arnold_pathmapping), and the
  defaultArnoldRenderOptions texture/procedural/plugin search paths set in the pre-render
  MEL, as azure-batch-maya does (Azure/azure-batch-maya azure_batch_maya/modules/
  arnold_renderer.py, setup_script), to the assets folder and every path_map target.
- pool licences: the Azure/BatchExplorer-data ncj/maya pool templates' applicationLicenses:
  render-arnold-* ["maya", "arnold"], render-vray-* ["maya", "vray"], render-default-*
  (`-r sw`) ["maya"].
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from node_agent.errors import ExitCode
from node_agent.remap import arnold_pathmap, maya_mel, resolve_map
from node_agent.renderers import maya_scan
from node_agent.renderers.base import (
    EXTENSIONS,
    CommandContext,
    Executables,
    Launch,
    ProgressPattern,
    Renderer,
    expected_frame_name,
    extra_args,
    frame_range,
    host_renderer,
    output_stem,
)

if TYPE_CHECKING:
    from node_agent.spec import Render

MAYA_FORMATS = {"PNG": "png", "JPEG": "jpeg", "OPEN_EXR": "exr", "TIFF": "tif"}
# sub-renderer -> the pool's applicationLicenses (BatchExplorer-data ncj/maya pool templates)
SUB_LICENSES: dict[str, tuple[str, ...]] = {
    "arnold": ("maya", "arnold"),
    "vray": ("maya", "vray"),
    "sw": ("maya",),
}
SUB_RENDERERS = tuple(SUB_LICENSES)
ARNOLD_SEARCHPATHS = ("texture_searchpath", "procedural_searchpath", "plugin_searchpath")


def sub_renderer(options: Mapping[str, object]) -> str:
    return host_renderer(options, SUB_RENDERERS)


def licenses(options: Mapping[str, object]) -> tuple[str, ...]:
    return SUB_LICENSES[sub_renderer(options)]


def _mel_string(s: str) -> str:
    return '"' + s.replace("\\", "/").replace('"', '\\"') + '"'


def arnold_searchpath_mel(dirs: list[str], windows: bool) -> str:
    """setAttr of defaultArnoldRenderOptions' search paths (';' on Windows, ':' elsewhere)."""
    value = (";" if windows else ":").join(d.replace("\\", "/") for d in dict.fromkeys(dirs))
    return " ".join(
        f'setAttr -type "string" defaultArnoldRenderOptions.{attr} {_mel_string(value)};'
        for attr in ARNOLD_SEARCHPATHS
    )


def build(render: Render, ctx: CommandContext, exe: str) -> Launch:
    sub = sub_renderer(render.options)
    start, end, step = frame_range(ctx.frames, "maya")
    pattern = render.output.pattern
    pad = max(pattern.count("#"), 1)
    argv = [exe, "-r", sub, "-proj", str(ctx.assets_dir), "-rd", str(ctx.output_dir)]
    # -im <stem> -fnc name#.ext -pad N -> <stem><frame padded>.<ext>, e.g. frame_0001.png
    argv += ["-im", output_stem(pattern), "-fnc", "name#.ext", "-pad", str(pad)]
    argv += ["-of", MAYA_FORMATS[render.output.format]]
    argv += ["-s", str(start), "-e", str(end), "-b", str(step)]
    if sub == "arnold":
        argv += ["-ai:lve", str(render.options.get("verbosity", 2)), "-ai:ltc", "1"]
    if render.threads and sub == "arnold":
        argv += ["-ai:threads", str(render.threads)]
    elif render.threads and sub == "sw":
        argv += ["-n", str(render.threads)]
    pairs = resolve_map(render.path_map, ctx.assets_dir)
    mel = [maya_mel(pairs)] if pairs else []
    env: dict[str, str] = {}
    files: dict[str, str] = {}
    if sub == "arnold":
        dirs = [str(ctx.assets_dir)] + [dst for _, dst in pairs]
        mel.append(arnold_searchpath_mel(dirs, ctx.windows))
        if pairs:
            path = ctx.task_dir / "node_agent_pathmap.json"
            files[str(path)] = arnold_pathmap(pairs, ctx.windows)
            env["ARNOLD_PATHMAP"] = str(path)
    if mel:
        argv += ["-preRender", " ".join(mel)]
    argv += extra_args(render, ctx, exe)  # Render takes its options before the scene file
    argv.append(str(ctx.scene))
    ext = EXTENSIONS[render.output.format]
    expected = {f: expected_frame_name(pattern, f, ext) for f in ctx.frames}
    return Launch(argv, expected, env=env, files=files)


RENDERER = Renderer(
    name="maya",
    build=build,
    executables=Executables("Render", "Render.exe", "MAYA_", ("-help",)),
    code_flags=frozenset(  # Maya MEL
        {
            "-prerender",
            "-postrender",
            "-prelayer",
            "-postlayer",
            "-preframe",
            "-postframe",
            "-pre",
            "-post",
            "-insertprerendermel",
            "-insertpostrendermel",
        }
    ),
    failure_patterns={
        ExitCode.LICENSE: (r"License was not obtained", r"Render not licensed"),
        ExitCode.MISSING_ASSET: (
            r"Error: .*(?:Cannot find|Could not open|File not found)",
            r"\[mtoa\].*(?:not found|unable to open)",
            r"Error: Scene .* not found",
        ),
        ExitCode.CRASH: (r"Maya exited with status", r"Fatal Error\. Attempting to save"),
    },
    progress=(ProgressPattern(r"(?i)(?P<percent>\d+(?:\.\d+)?)\s*% done"),),  # Maya+Arnold
    licenses=SUB_LICENSES["arnold"],  # the default sub-renderer; licenses_for reads the option
    options_licenses=licenses,
    path_remap="dirmap MEL given to -preRender (remap.maya_mel); with Arnold also ARNOLD_PATHMAP "
    "and Arnold's search paths",
    scan_dependencies=maya_scan.scan,
)
