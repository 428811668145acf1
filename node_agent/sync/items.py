"""One file of a view (where it goes, which blob holds it, what is known of its content), and
what the sync reads of a source."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol


class Source(Protocol):
    """What the sync reads of an assets entry (node_agent.spec_assets.AssetSource, which the
    job spec's and `node-agent sync`'s sources are): no import of the spec models needed."""

    @property
    def name(self) -> str: ...

    @property
    def container(self) -> str: ...

    @property
    def prefix(self) -> str: ...

    @property
    def dest(self) -> str: ...

    @property
    def manifest(self) -> str | None: ...


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
