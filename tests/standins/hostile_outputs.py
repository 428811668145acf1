#!/usr/bin/env python3
"""Stand-in renderer for output-integrity tests (a test program, not a real renderer).

It writes what a careless or hostile renderer could leave in its output folder.

Usage: hostile_outputs.py <out_dir> <mode> [arg]
  traverse <other_task>  frame_0001.png, then files whose names climb out of $TaskOutput
                         with '\\' (and mixed '/' '\\', a fullwidth solidus, a drive)
  links                  frame_0001.png; frame_0002.png -> frame_0001.png (relative link);
                         frame_0003.png -> sub/real3.png (absolute link, a chain of two)
  outside <file>         frame_0001.png; frame_0002.png -> <file>, outside the folder
  dangling               frame_0001.png; frame_0002.png -> a file that does not exist
  swapdir <folder>       replaces its output folder by a link to <folder> (/etc on a node)
                         and writes frame_0001.png through it
  plant <name>=<victim>  frame_0001.png, then a link <task dir>/<name> -> <victim>: a name
                         node_agent writes later in the task's folder
  secrets <file>         prints its environment and the SAS in <file> in the forms a tool
                         might print it (raw, URL-encoded, URL-decoded, JSON-escaped, the
                         signature alone); writes frame_0001.png
"""

import json
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import quote, unquote

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import png  # noqa: E402

# Names relative to the output folder; each would leave <task>/$TaskOutput/ once '\' is
# read as '/' and storage collapses the '..' (see tests/test_outputs_integrity.py).
TRAVERSALS = [
    "y\\..\\..\\..\\..\\assets\\proj\\spin.blend",  # the job's input asset (other container)
    "y\\..\\..\\..\\{other}\\$TaskOutput\\frame_0001.png",  # another task's frame
    "y/..\\..\\..\\{other}\\$TaskOutput\\frame_0002.png",  # mixed separators
    "..\\x.txt",
    "..\uff0f..\uff0f{other}\uff0f$TaskOutput\uff0fframe_0003.png",  # fullwidth solidus
    "C:\\x.txt",  # a drive
]


def _frame(out: Path, name: str, shade: int) -> None:
    (out / name).write_bytes(png(shade=shade))


def main() -> int:
    out = Path(sys.argv[1])
    mode = sys.argv[2]
    arg = sys.argv[3] if len(sys.argv) > 3 else ""
    out.mkdir(parents=True, exist_ok=True)
    if mode == "swapdir":
        shutil.rmtree(out)
        os.symlink(arg, out)
    _frame(out, "frame_0001.png", 11)
    if mode == "plant":
        name, victim = arg.split("=", 1)
        link = Path(os.environ["AZ_BATCH_TASK_DIR"]) / name
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(victim, link)
    elif mode == "traverse":
        for name in TRAVERSALS:
            rel = name.format(other=arg)
            path = out / rel  # '/' makes a folder, '\' stays in the file name (Linux)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"hostile " + rel.encode())
    elif mode == "links":
        os.symlink("frame_0001.png", out / "frame_0002.png")
        (out / "sub").mkdir()
        _frame(out / "sub", "real3.png", 33)
        os.symlink(out / "sub" / "real3.png", out / "sub" / "hop.png")
        os.symlink(out / "sub" / "hop.png", out / "frame_0003.png")
    elif mode == "outside":
        os.symlink(arg, out / "frame_0002.png")
    elif mode == "dangling":
        os.symlink(out / "no-such-frame.png", out / "frame_0002.png")
    elif mode == "windows_names":  # a scene made on Windows: '\\' inside Linux file names
        (out / "aov\\beauty_0001.png").write_bytes(b"beauty pass")
        (out / "renders").mkdir()  # a real folder of the same name must not be read instead
        (out / "renders" / "other.png").write_bytes(b"another file")
        (out / "renders\\frame_0002.png").write_bytes(b"frame two")
    elif mode == "latin1":  # a name that is not UTF-8 (bytes 0xE9)
        (out / os.fsdecode(b"caf\xe9_0002.png")).write_bytes(b"latin-1 name")
    elif mode == "secrets":
        sas = Path(arg).read_text().strip().lstrip("?")
        sig = dict(p.split("=", 1) for p in sas.split("&"))["sig"]
        print("env: " + json.dumps(dict(os.environ)), flush=True)
        print(f"raw: https://acct.blob.core.windows.net/c/b?{sas}", flush=True)
        print(f"url-encoded: {quote('https://acct.blob.core.windows.net/c/b?' + sas, safe='')}")
        print(f"url-decoded: {unquote(sas)}")
        print("json: " + json.dumps({"url": "https://a/c/b?" + sas}).replace("&", "\\u0026"))
        print("json-slashes: " + json.dumps(unquote(sas)).replace("/", "\\/"))
        print(f"signature: {sig}")
        print(f"signature decoded: {unquote(sig)}")
        print(f"signature alone:{unquote(sig)}|")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
