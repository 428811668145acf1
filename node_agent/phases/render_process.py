"""The render task's own process: when it started (the start-up overhead in summary.json)
and SIGTERM (Batch stopping the task) turned into a cancel event for the supervisor."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any


class Sigterm:
    """While active, SIGTERM (Batch stopping the task) asks the supervisor to stop the renderer."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._old: Any = None

    def __enter__(self) -> threading.Event:
        try:
            self._old = signal.signal(signal.SIGTERM, lambda *_: self.event.set())
        except ValueError:  # not the main thread
            self._old = None
        return self.event

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def process_started_at() -> float:
    """Wall-clock start of this process, to ~10 ms on Linux (psutil's is rounded to the boot second)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of /proc/<pid>/stat: start time since boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - age
    except (OSError, ValueError, IndexError, AttributeError):
        import psutil  # not Linux: the rest of the start does not need it

        return psutil.Process().create_time()
