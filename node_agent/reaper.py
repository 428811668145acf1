"""The renderer's watchdog for when `node-agent render` itself dies (even by SIGKILL).

`python -m node_agent.reaper <pid>` runs beside the renderer with a pipe from node-agent on
its stdin. Every half second it records the renderer's process tree (children that called
setsid included). If the pipe closes without the word `done` (node-agent is gone), it kills
the renderer's process group and every process it recorded, then exits.
"""

from __future__ import annotations

import os
import select
import signal
import sys

import psutil


def _scan(root: psutil.Process, known: dict[int, float]) -> None:
    try:
        for child in root.children(recursive=True):
            known.setdefault(child.pid, child.create_time())
    except psutil.Error:
        pass


def _kill(root: psutil.Process, known: dict[int, float]) -> None:
    _scan(root, known)  # the latest descendants, before the tree comes apart
    if os.name != "nt":
        try:
            os.killpg(root.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for p, created in known.items():
        try:
            proc = psutil.Process(p)
            if abs(proc.create_time() - created) < 0.01:  # not a recycled pid
                proc.kill()
        except psutil.Error:
            pass


def watch(pid: int) -> int:
    known: dict[int, float] = {}
    try:
        root = psutil.Process(pid)
        known[pid] = root.create_time()
    except psutil.Error:
        return 0
    fd = sys.stdin.fileno()
    data = b""
    while True:
        _scan(root, known)
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 64)
            if chunk:
                data += chunk
                if b"done" in data:
                    return 0
                continue
            _kill(root, known)  # EOF without "done": node-agent died
            return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only the pipe ends the watch
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(watch(int(sys.argv[1])))
