"""What an Arnold scene (.ass, .ass.gz) needs, read as text: every node's `filename`
parameter (image textures, procedurals and nested .ass files, volumes, Alembic and USD
procedurals, photometric lights). Tokens Arnold expands are file sets here: `<udim>`,
`<tile>`, `<attr:...>`, `#` frames. Not scanned: paths built by shaders or OSL at render time.

Relative paths resolve as kick resolves them with the adapter's search paths
(`options.texture_searchpath` and `procedural_searchpath` = the assets folder), then
against the scene's folder.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator

from node_agent.renderers.base import Dependency, ScanContext

# a comment, a quoted string, a brace, or a bare word
_TOKEN = re.compile(r'#[^\n]*|"((?:[^"\\]|\\.)*)"|([{}])|([^\s{}"]+)')


def scan(ctx: ScanContext) -> Iterator[Dependency]:
    """Every `filename` parameter of the scene's nodes."""
    raw = ctx.scene.read_bytes()
    if ctx.scene.suffix.lower() == ".gz":
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8", "surrogateescape")
    bases = (ctx.assets_dir, ctx.scene.parent)
    kind, name, depth = "?", "?", 0
    prev: str | None = None
    for m in _TOKEN.finditer(text):
        if m.group().startswith("#"):
            continue  # a comment
        quoted, brace, word = m.group(1), m.group(2), m.group(3)
        value = quoted if quoted is not None else word
        if brace == "{":
            depth += 1
            if depth == 1:
                kind, name = prev or "?", "?"
        elif brace == "}":
            depth = max(depth - 1, 0)
        elif depth == 1 and prev == "name" and value:
            name = value
        elif depth == 1 and prev == "filename" and value:
            yield Dependency(value, f"{ctx.scene.name}: {kind} '{name}' filename", bases)
        prev = None if quoted is not None else (word or brace)
