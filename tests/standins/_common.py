"""Shared behaviour of the renderer stand-ins (test programs, not real renderers).

STANDIN_MODE selects what the stand-in does:
  ok       print the tool's progress lines and write every frame (default)
  license  print the tool's license failure line and exit 1
  missing  print a missing-texture line and exit 1
  oom      print an out-of-memory line and exit 1
  crash    write nothing and die by SIGSEGV
  hang     ignore SIGTERM, start a grandchild that calls setsid, then sleep forever
  noout    print progress and exit 0 without writing any frame
  wait     write the first frame, wait for the file STANDIN_MARKER, then write the rest
STANDIN_ENV_DUMP=<path> writes the environment it received as JSON; STANDIN_PIDS=<path>
records its own pid and its grandchild's (mode hang).
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path


def png(width: int = 8, height: int = 8, shade: int = 128) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + bytes([shade, 64, 200]) * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + (chunk(b"IEND", b""))
    )


def _write(path: Path, frame: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png(shade=(frame * 37) % 256))


def run(
    frames: list[tuple[int, Path]],
    progress: Callable[[int, int], str],
    lines: dict[str, str],
) -> int:
    """frames: (frame, output file); progress(frame, percent) -> a progress line;
    lines: the tool's own 'license', 'missing', 'oom' and 'saved' line formats."""
    mode = os.environ.get("STANDIN_MODE", "ok")
    dump = os.environ.get("STANDIN_ENV_DUMP")
    if dump:
        Path(dump).write_text(json.dumps(dict(os.environ)))
    print(f"stand-in {Path(sys.argv[0]).name}: argv={sys.argv[1:]!r}", flush=True)
    if mode in ("license", "missing", "oom"):
        print(lines[mode], flush=True)
        return 1
    if mode == "crash":
        print("rendering...", flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)
        return 1
    if mode == "hang":
        return _hang()
    for i, (frame, path) in enumerate(frames):
        for pct in (0, 50, 100):
            print(progress(frame, pct), flush=True)
        if mode == "noout":
            continue
        if mode == "wait" and i == 1:
            marker = Path(os.environ["STANDIN_MARKER"])
            deadline = time.monotonic() + 300
            while not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        _write(path, frame)
        print(lines["saved"].format(path=path), flush=True)
    return 0


def _hang() -> int:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os,signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            " time.sleep(3600)",
        ],
        start_new_session=True,  # leaves our process group, like a renderer's license daemon
    )
    pids = os.environ.get("STANDIN_PIDS")
    if pids:
        Path(pids).write_text(json.dumps({"renderer": os.getpid(), "grandchild": grandchild.pid}))
    print("rendering (this stand-in never finishes)", flush=True)
    while True:
        time.sleep(1)


def flag(argv: list[str], name: str, default: str | None = None) -> str | None:
    """`-name value` from an argument list."""
    if name in argv and argv.index(name) + 1 < len(argv):
        return argv[argv.index(name) + 1]
    return default


def colon(argv: list[str], name: str, sep: str = ":") -> str | None:
    """`-name:value` or `-name=value` from an argument list."""
    for a in argv:
        if a.startswith(name + sep):
            return a[len(name) + 1 :]
    return None
