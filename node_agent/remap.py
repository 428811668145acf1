"""Path remapping: workstation path prefixes (`C:\\proj\\`, `/mnt/studio/`) -> the node's assets.

The spec's `render.path_map` maps a prefix to a folder under the job's assets folder. Each
renderer gets the mapping in the form it understands: a Blender `-P` script, Maya `dirmap`
MEL, an Arnold path-map file (ARNOLD_PATHMAP), VRAY_ASSETS_PATH, a 3ds Max path file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import PurePath


def resolve_map(path_map: Mapping[str, str], assets_dir: PurePath) -> list[tuple[str, str]]:
    """(workstation prefix, node folder) pairs, longest prefix first, '/' separators in prefixes."""
    pairs = []
    for src, dst in path_map.items():
        node = assets_dir / dst if dst else assets_dir
        pairs.append((src.replace("\\", "/"), str(node)))
    return sorted(pairs, key=lambda p: len(p[0]), reverse=True)


def remap_path(path: str, pairs: list[tuple[str, str]], sep: str = "/") -> str:
    """Apply the first matching prefix (case-insensitive for drive-letter prefixes)."""
    norm = path.replace("\\", "/")
    for src, dst in pairs:
        s = src.rstrip("/")
        windows_style = len(s) >= 2 and s[1] == ":"
        head = norm[: len(s)]
        if (head.lower() == s.lower() if windows_style else head == s) and (
            len(norm) == len(s) or norm[len(s)] == "/"
        ):
            rest = norm[len(s) :].lstrip("/")
            return dst.rstrip("/\\") + (sep + rest.replace("/", sep) if rest else "")
    return path


_BLENDER = '''"""node_agent path remap (generated): point workstation paths at the node's assets."""
import bpy

PAIRS = {pairs}


def remap(path):
    norm = path.replace("\\\\", "/")
    for src, dst in PAIRS:
        s = src.rstrip("/")
        head = norm[: len(s)]
        same = head.lower() == s.lower() if len(s) >= 2 and s[1] == ":" else head == s
        if same and (len(norm) == len(s) or norm[len(s)] == "/"):
            return dst.rstrip("/") + "/" + norm[len(s):].lstrip("/")
    return None


count = 0
for coll in (bpy.data.images, bpy.data.libraries, bpy.data.movieclips, bpy.data.sounds,
             bpy.data.fonts, bpy.data.cache_files, bpy.data.volumes):
    for item in coll:
        path = getattr(item, "filepath", "")
        if path and not path.startswith("<"):
            new = remap(path)
            if new:
                item.filepath = new
                count += 1
                print("node_agent remap: %s -> %s" % (path, new))
print("node_agent remap: %d path(s) remapped" % count)
'''


def blender_script(pairs: list[tuple[str, str]]) -> str:
    return _BLENDER.replace("{pairs}", repr([(s, d.replace("\\", "/")) for s, d in pairs]))


def _mel_str(s: str) -> str:
    return '"' + s.replace("\\", "/").replace('"', '\\"') + '"'


def maya_mel(pairs: list[tuple[str, str]]) -> str:
    """Pre-render MEL: `dirmap -en true; dirmap -m "<workstation>" "<node>";`."""
    cmds = ["dirmap -en true;"]
    cmds += [f"dirmap -m {_mel_str(src.rstrip('/'))} {_mel_str(dst)};" for src, dst in pairs]
    return " ".join(cmds)


def arnold_pathmap(pairs: list[tuple[str, str]], windows: bool) -> str:
    """Arnold path-map file (ARNOLD_PATHMAP): {"linux"|"windows": {from: to}}."""
    key = "windows" if windows else "linux"
    return json.dumps({key: {src: dst.replace("\\", "/") for src, dst in pairs}}, indent=2)


def vray_assets_path(pairs: list[tuple[str, str]], assets_dir: PurePath, windows: bool) -> str:
    """VRAY_ASSETS_PATH: V-Ray looks for missing files in these folders (by file name)."""
    dirs = [str(assets_dir)] + [dst for _, dst in pairs if dst != str(assets_dir)]
    return (";" if windows else ":").join(dict.fromkeys(dirs))


def max_path_file(pairs: list[tuple[str, str]], assets_dir: PurePath) -> str:
    """A 3ds Max path configuration file (.mxp) adding the node folders as map/xref paths."""
    dirs = list(dict.fromkeys([str(assets_dir)] + [dst for _, dst in pairs]))
    lines = ["[BitmapDirs]"] + [f"Dir{i}={d}" for i, d in enumerate(dirs, 1)]
    lines += ["", "[XReferenceDirs]"] + [f"Dir{i}={d}" for i, d in enumerate(dirs, 1)]
    return "\r\n".join(lines) + "\r\n"
