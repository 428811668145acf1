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


def _capped(names: list[str], cap: int, count: int) -> str:
    shown = ", ".join(_inert(n) for n in names[:cap])
    return shown + (f" (+{count - cap} more)" if count > cap else "")


@dataclass
class NamedSyncSummary(SyncSummary):
    """The first RECORD_NAMES names of each kind (sorted) and how many there are: a sync of
    100,000 files never holds all their names."""

    replaced: int = 0
    deleted: int = 0
    downloaded_files: list[str] = field(default_factory=list)
    replaced_files: list[str] = field(default_factory=list)
    deleted_files: list[str] = field(default_factory=list)

    def set_changes(
        self,
        downloaded: list[str],
        replaced: list[str],
        n_replaced: int,
        deleted: list[str],
        n_deleted: int,
    ) -> None:
        """What the view's diff (StateDB.replace_view) found: first names and counts."""
        self.downloaded_files = sorted(downloaded)[:RECORD_NAMES]
        self.replaced_files, self.replaced = sorted(replaced)[:RECORD_NAMES], n_replaced
        self.deleted_files, self.deleted = sorted(deleted)[:RECORD_NAMES], n_deleted

    def record(self) -> dict[str, object]:
        d = super().record()
        for kind in ("downloaded_files", "replaced_files", "deleted_files"):
            names: list[str] = getattr(self, kind)
            d[kind] = names[:RECORD_NAMES]
        return d

    def line(self) -> str:
        text = super().line()
        parts = [
            f"{kind} {count}: {_capped(names, LINE_NAMES, count)}"
            for kind, names, count in (
                ("downloaded", self.downloaded_files, self.downloaded),
                ("replaced", self.replaced_files, self.replaced),
                ("deleted", self.deleted_files, self.deleted),
            )
            if count
        ]
        return text + ("; " + "; ".join(parts) if parts else "")
