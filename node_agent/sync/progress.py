"""Progress of long transfers (sync, assets push): a live line on a terminal, periodic lines
otherwise, and the final summary line."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from typing import IO, Protocol


def format_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, like the MB/s figures)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


class Reportable(Protocol):
    """What Progress reports: a line while running and the summary line at the end."""

    def progress_line(self, seconds: float) -> str: ...

    def line(self) -> str: ...


@dataclass
class SyncSummary:
    listed: int = 0
    unchanged: int = 0
    downloaded: int = 0
    bytes_downloaded: int = 0
    refused: int = 0
    changed: int = 0  # blobs that changed during the sync and were fetched again
    seconds: float = 0.0
    refused_names: list[str] = field(default_factory=list)
    # with storage.replicas: asset bodies read from each account (URL, never a SAS)
    bodies_by_account: dict[str, int] = field(default_factory=dict)

    @property
    def mb_per_s(self) -> float:
        return self.bytes_downloaded / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def record(self) -> dict[str, object]:
        d = asdict(self)
        d["refused_names"] = d["refused_names"][:100]
        d["mb_per_s"] = round(self.mb_per_s, 2)
        d["seconds"] = round(self.seconds, 3)
        return d

    def line(self) -> str:
        return (
            f"sync: {self.listed} listed, {self.unchanged} unchanged, {self.downloaded} downloaded "
            f"({self.bytes_downloaded / 1e6:.1f} MB), {self.refused} refused, "
            + (f"{self.changed} changed during sync, " if self.changed else "")
            + f"{self.seconds:.1f}s, {self.mb_per_s:.1f} MB/s"
        )

    def progress_line(self, seconds: float) -> str:
        mb = self.bytes_downloaded / 1e6
        return (
            f"sync: {self.listed} listed, {self.unchanged} unchanged, {self.downloaded} downloaded, "
            f"{mb:.1f} MB, {mb / max(seconds, 1e-6):.1f} MB/s"
        )


class Progress:
    """Call `tick()` often; it prints at most every `interval` seconds."""

    def __init__(
        self, summary: Reportable, out: IO[str] | None = None, interval: float | None = None
    ) -> None:
        self.summary = summary
        self.out = out if out is not None else sys.stdout
        self.live = bool(getattr(self.out, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (0.5 if self.live else 10.0)
        self.t0 = time.monotonic()
        self.last = self.t0
        self.enabled = True

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last < self.interval):
            return
        self.last = now
        text = self.summary.progress_line(now - self.t0)
        if self.live:
            self.out.write("\r" + text.ljust(100))
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def finish(self) -> None:
        if self.enabled:
            self.out.write(
                ("\r" if self.live else "")
                + self.summary.line().ljust(100 if self.live else 0)
                + "\n"
            )
            self.out.flush()
