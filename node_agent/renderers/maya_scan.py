"""What a Maya ASCII scene (.ma) needs, read as text (a .ma is MEL statements).

Scanned: references (`file -r ... "path"` and the `file -rdi ...` lines of nested
references), file textures (`file` node `.ftn`/`.fileTextureName`; `.uvt` UDIM tiling turns
the 1001 tile into a `<UDIM>` set; `.ufe` frame extension makes it an image sequence),
`aiImage.filename`, `aiStandIn.dso`, Alembic (`AlembicNode.abc_File`), GPU caches
(`gpuCache.cacheFileName`), geometry caches (`cacheFile` `.cachePath` + `.cacheName` +
`.xml`), audio and image planes. Not scanned: Maya binary (.mb), paths set by scripts or
expressions at render time, plug-in nodes other than those above.

Relative paths resolve as Maya resolves them under `-proj <assets>`: against the project
(the assets folder), then the scene's folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from node_agent.renderers.base import Dependency, ScanContext

# node type -> {attribute (long and short name): what it is}
_ATTRS: dict[str, dict[str, str]] = {
    "file": {"ftn": "texture", "fileTextureName": "texture"},
    "aiImage": {"filename": "texture"},
    "aiStandIn": {"dso": "stand-in"},
    "AlembicNode": {"abc_File": "Alembic cache", "fn": "Alembic cache"},
    "gpuCache": {"cacheFileName": "GPU cache", "cfn": "GPU cache"},
    "audio": {"filename": "audio", "f": "audio"},
    "imagePlane": {"imageName": "image plane", "imn": "image plane"},
}
_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|([^\s"]+)')


def _statements(text: str) -> Iterator[list[tuple[str, bool]]]:
    """MEL statements as token lists, each (text, was_quoted); `//` comments skipped."""
    tokens: list[tuple[str, bool]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "/" and text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif c == ";":
            if tokens:
                yield tokens
            tokens = []
            i += 1
        elif c.isspace():
            i += 1
        else:
            m = _TOKEN.match(text, i)
            if m is None:  # pragma: no cover - the pattern matches any non-space
                break
            if m.group(1) is not None:
                tokens.append((re.sub(r"\\(.)", r"\1", m.group(1)), True))
            else:
                word = m.group(2).split(";", 1)[0]
                tokens.append((word, False))
                if len(word) < len(m.group(2)):
                    i = m.start() + len(word)
                    continue
            i = m.end()
    if tokens:
        yield tokens


def _flag(tokens: list[tuple[str, bool]], name: str) -> str | None:
    for (t, q), nxt in zip(tokens, tokens[1:], strict=False):
        if t == name and not q:
            return nxt[0]
    return None


class _Node:
    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name
        self.values: dict[str, str] = {}


def _node_deps(node: _Node, where: str, bases: tuple[Path, ...]) -> Iterator[Dependency]:
    v = node.values
    label = f"{where}: {node.kind} '{node.name}'"
    if node.kind == "cacheFile":
        path, name = v.get("cachePath") or v.get("cp"), v.get("cacheName") or v.get("cn")
        if path and name:
            yield Dependency(f"{path.rstrip('/')}/{name}.xml", f"{label} cache", bases)
        return
    for attr, what in _ATTRS.get(node.kind, {}).items():
        path = v.get(attr)
        if not path:
            continue
        sequence = False
        if node.kind == "file":
            tiling = v.get("uvt") or v.get("uvTilingMode") or "0"
            if tiling != "0" and "<" not in path:  # the first tile written: the UDIM set
                path = re.sub(r"(?<!\d)1001(?!\d)", "<UDIM>", path)
            sequence = (v.get("ufe") or v.get("useFrameExtension") or "0") not in ("0", "no")
        yield Dependency(path, f"{label} {what}", bases, sequence=sequence)


def scan(ctx: ScanContext) -> Iterator[Dependency]:
    """Every path the .ma refers to (references, textures, caches)."""
    if ctx.scene.suffix.lower() != ".ma":
        return  # a .mb is binary: not scanned (docs/td-guide.md)
    text = ctx.scene.read_text(encoding="utf-8", errors="surrogateescape")
    where = ctx.scene.name
    bases = (ctx.assets_dir, ctx.scene.parent)
    node: _Node | None = None
    for tokens in _statements(text):
        cmd = tokens[0][0]
        if cmd == "file" and any(t in ("-r", "-rdi", "-reference") for t, q in tokens if not q):
            quoted = [t for t, q in tokens if q]
            if quoted:
                ns = _flag(tokens, "-ns") or _flag(tokens, "-rfn") or "?"
                yield Dependency(quoted[-1], f"{where}: reference '{ns}'", bases)
        elif cmd in ("createNode", "select"):
            if node is not None:
                yield from _node_deps(node, where, bases)
            name = _flag(tokens, "-n") or (_flag(tokens, "-ne") if cmd == "select" else "") or "?"
            node = _Node(tokens[1][0] if cmd == "createNode" else "", name)
        elif cmd == "setAttr" and node is not None and len(tokens) > 2:
            attr = tokens[1][0].lstrip(".")
            node.values[attr] = tokens[-1][0]
    if node is not None:
        yield from _node_deps(node, where, bases)
