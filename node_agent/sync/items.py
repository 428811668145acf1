"""One file of a view: where it goes, which blob holds it, what is known of its content."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Item:
    path: str
    name: str
    size: int
    etag: str = ""
    md5: bytes | None = None
    hash: str | None = None

    def at_version(self, size: int, etag: str, md5: bytes | None) -> Item:
        """This item as the version really fetched, when the blob changed since its listing
        (`Fetched.changed`): the state DB then records what the view holds."""
        return replace(self, size=size, etag=etag, md5=md5)
