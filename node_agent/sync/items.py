"""One file of a view: where it goes, which blob holds it, what is known of its content."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    path: str
    name: str
    size: int
    etag: str = ""
    md5: bytes | None = None
    hash: str | None = None
