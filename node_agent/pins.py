"""Manifest pins in a job spec: the lines `assets push` prints to paste, `--write-spec`
updating the pin of a spec file in place, and `manifest: latest` resolved to a hash before a
job is handed over (batch submit, local run: preflight_storage.check_storage), so every node
of a running job syncs the same push whatever is pushed after.

The spec file is edited as text, not re-serialised: PyYAML's composer gives the exact span
of the assets entry and of its `manifest` value, only that span changes, so comments, key
order, quoting and the rest of the file stay as the TD wrote them (JSON is YAML here too).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import yaml

from node_agent.errors import SpecError, StorageError
from node_agent.spec import AssetSource, JobSpec
from node_agent.storage import BlobStore
from node_agent.sync.manifest import project_prefix

LATEST = "latest"  # `manifest: latest`: the project's last push, pinned at submit
_HASH = re.compile(r"^[0-9a-f]{64}$")


def asset_name(project: str) -> str:
    """An asset source name (spec: [A-Za-z0-9_.-]{1,64}) for a project prefix."""
    last = project.strip("/").rsplit("/", 1)[-1]
    return (re.sub(r"[^A-Za-z0-9_.-]+", "-", last).strip("-") or "assets")[:64]


def paste_lines(container: str, project: str, manifest: str) -> list[str]:
    """The job spec lines pinning this push (YAML; the hash quoted: an all-digit hash would
    otherwise read as a number)."""
    return [
        "assets:",
        f"  - {{name: {asset_name(project)}, container: {container}, "
        f'prefix: {project_prefix(project)}, manifest: "{manifest}"}}',
    ]


# --- --write-spec --------------------------------------------------------------------
def _scalar(node: yaml.Node) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) else None


def _entries(root: yaml.Node | None) -> list[yaml.MappingNode]:
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if _scalar(key) == "assets" and isinstance(value, yaml.SequenceNode):
            return [n for n in value.value if isinstance(n, yaml.MappingNode)]
    return []


def _matches(entry: yaml.MappingNode, container: str, project: str) -> bool:
    fields = {_scalar(k): _scalar(v) for k, v in entry.value}
    return fields.get("container") == container and project_prefix(
        fields.get("prefix") or ""
    ) == project_prefix(project)


def _edit(text: str, entry: yaml.MappingNode, manifest: str, as_json: bool) -> str:
    """`text` with this entry's manifest set to `manifest` (replaced, or added after the
    entry's last field in the entry's own style)."""
    value = f'"{manifest}"'
    for key, node in entry.value:
        if _scalar(key) == "manifest":
            return text[: node.start_mark.index] + value + text[node.end_mark.index :]
    key = '"manifest"' if as_json else "manifest"
    if entry.flow_style:  # {name: a, ...} / {"name": "a", ...}: before the closing brace
        end = entry.end_mark.index - 1
        while end > 0 and text[end - 1] in " \t\r\n":
            end -= 1
        return text[:end] + f", {key}: {value}" + text[end:]
    first_key, last_value = entry.value[0][0], entry.value[-1][1]
    indent = " " * first_key.start_mark.column
    end = last_value.end_mark.index
    return text[:end] + f"\n{indent}{key}: {value}" + text[end:]


def _targets(spec_path: Path, container: str, project: str) -> tuple[str, list[yaml.MappingNode]]:
    """The spec's text and its assets entries naming this container and project;
    SpecError (exit 2) when it cannot be read or no entry names them."""
    where = f"--write-spec '{spec_path}'"
    try:
        text = spec_path.read_text(encoding="utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{where}: cannot read it: {e}") from None
    except yaml.YAMLError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SpecError(f"{where}: not YAML/JSON: {first}") from None
    matching = [e for e in _entries(root) if _matches(e, container, project)]
    if not matching:
        raise SpecError(
            f"{where}: no assets entry with container '{container}' and prefix "
            f"'{project_prefix(project)}': add one (assets push without --write-spec prints it)"
        )
    return text, matching


def _writable(spec_path: Path) -> None:
    """SpecError (exit 2) unless the pin can be written: the file (through a link: the
    file it names) not read-only by its mode (a TD's way of saying 'do not change'; the
    atomic replace would ignore it) and its folder accepting a new file (tried, as an
    immutable folder or a read-only mount show nothing in mode bits)."""
    from node_agent.sync.writable import try_write

    where = f"--write-spec '{spec_path}'"
    target = Path(os.path.realpath(spec_path))
    mode = target.stat().st_mode
    if not mode & 0o222 or not os.access(target, os.W_OK):
        raise SpecError(
            f"{where}: the file is read-only (mode {mode & 0o7777:04o}): make it writable "
            "to pin this push, or pin it by hand"
        )
    why = try_write(target.parent)
    if why is not None:
        raise SpecError(
            f"{where}: its folder {target.parent} refuses a new file ({why}); the pin is "
            "written beside the spec and renamed over it"
        )


def check_pin_target(spec_path: Path, container: str, project: str) -> None:
    """Before a push with --write-spec: the spec has an entry to pin and can be written
    (else SpecError, and nothing is pushed)."""
    _targets(spec_path, container, project)
    _writable(spec_path)


def write_pin(spec_path: Path, container: str, project: str, manifest: str) -> int:
    """Set the manifest of every assets entry of `spec_path` naming this container and
    project to `manifest`, in place and atomically (a temporary file beside it, renamed
    over it, its mode kept). Returns how many entries changed; SpecError (exit 2, the file
    untouched) when no entry names them."""
    where = f"--write-spec '{spec_path}'"
    text, matching = _targets(spec_path, container, project)
    as_json = spec_path.suffix.lower() == ".json"
    for entry in sorted(matching, key=lambda e: e.start_mark.index, reverse=True):
        text = _edit(text, entry, manifest, as_json)  # from the end: spans before stay valid
    # the edit reads back as intended, or nothing is written
    pins = [
        {_scalar(k): _scalar(v) for k, v in e.value}.get("manifest")
        for e in _entries(yaml.compose(text, Loader=yaml.SafeLoader))
        if _matches(e, container, project)
    ]
    if len(pins) != len(matching) or any(p != manifest for p in pins):
        raise SpecError(f"{where}: the pin could not be written into this layout; edit it by hand")
    _writable(spec_path)
    try:
        _replace(spec_path, text.encode("utf-8"))
    except OSError as e:
        raise SpecError(f"{where}: cannot write it: {e.strerror or e}") from None
    return len(matching)


def _replace(path: Path, data: bytes) -> None:
    """Atomically replace `path` (a regular file) with `data`, keeping its mode."""
    from node_agent.runtime import write_atomic

    mode = path.stat().st_mode & 0o7777
    target = Path(os.path.realpath(path))  # a spec reached through a link: edit the file
    write_atomic(target, data, mode)


# --- manifest: latest ----------------------------------------------------------------
def resolve_latest(
    spec: JobSpec, store: BlobStore, say: Callable[[str], None] | None = None
) -> JobSpec:
    """`spec` with each `manifest: latest` replaced by the hash in `<prefix>manifests/latest`
    now (the blob `assets push` writes last). Sources already pinned are unchanged."""
    if not any(s.manifest == LATEST for s in spec.assets):
        return spec
    sources: list[AssetSource] = []
    for i, source in enumerate(spec.assets):
        if source.manifest != LATEST:
            sources.append(source)
            continue
        blob = f"{project_prefix(source.prefix)}manifests/latest"
        field = f"assets[{i}] '{source.name}': manifest: latest"
        try:
            text = store.read_blob(source.container, blob).decode("ascii", "replace").strip()
        except StorageError as e:
            raise StorageError(
                f"{field}: no push to pin ({str(e).splitlines()[0]}); run `node-agent assets "
                f"push DIR --project {source.prefix.rstrip('/')}` first"
            ) from None
        if not _HASH.match(text):
            raise StorageError(f"{field}: '{source.container}/{blob}' does not hold a hash")
        if say:
            say(f"{field} -> {text}")
        sources.append(source.model_copy(update={"manifest": text}))
    return spec.model_copy(update={"assets": sources})
