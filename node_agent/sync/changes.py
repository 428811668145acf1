"""What a sync changed in a view, by name: the files downloaded, replaced (same path, new
content) and deleted, so the summary line (job prep's INFO log) and the summary record
(prep.json, sync-summary.json) say which files a re-sync touched, not only how many."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from node_agent.sync.progress import SyncSummary

LINE_NAMES = 10  # names per kind in the summary line
RECORD_NAMES = 100  # names per kind in the summary record


# a name is someone else's text: a newline in it would start a forged line of the node's
# log (`node-agent: error: ...` is what job watch reads as a task's reason), an ESC a
# terminal sequence; each control is shown as its escape
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _inert(name: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", name)


def _capped(names: list[str], cap: int) -> str:
    shown = ", ".join(_inert(n) for n in names[:cap])
    return shown + (f" (+{len(names) - cap} more)" if len(names) > cap else "")


@dataclass
class NamedSyncSummary(SyncSummary):
    downloaded_files: list[str] = field(default_factory=list)
    replaced_files: list[str] = field(default_factory=list)
    deleted_files: list[str] = field(default_factory=list)

    def compare_views(self, old: dict[str, str], new: dict[str, str]) -> None:
        """Replaced and deleted paths between the view before and after the sync."""
        self.replaced_files = sorted(p for p, h in new.items() if p in old and old[p] != h)
        self.deleted_files = sorted(p for p in old if p not in new)
        self.downloaded_files.sort()

    def record(self) -> dict[str, object]:
        d = super().record()
        for kind in ("downloaded_files", "replaced_files", "deleted_files"):
            names: list[str] = getattr(self, kind)
            d[kind] = names[:RECORD_NAMES]
        d["replaced"] = len(self.replaced_files)
        d["deleted"] = len(self.deleted_files)
        return d

    def line(self) -> str:
        text = super().line()
        parts = [
            f"{kind} {len(names)}: {_capped(names, LINE_NAMES)}"
            for kind, names in (
                ("downloaded", self.downloaded_files),
                ("replaced", self.replaced_files),
                ("deleted", self.deleted_files),
            )
            if names
        ]
        return text + ("; " + "; ".join(parts) if parts else "")
