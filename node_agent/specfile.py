"""Reading a configuration document (JSON or YAML) from a file: a size cap checked before
anything is parsed, a key given twice at any depth refused instead of the last one silently
winning, and (load_document) the pydantic validation with one line per error naming the field.
The one loader of the job spec, the node's pool config and the Batch pool settings.

The cap is 1 MiB. A real job spec (a hundred asset sources, a long path_map, a command
template) is a few KB to a few tens of KB, so 1 MiB is over 50 times what a studio writes;
parsing 1 MiB costs about 0.3 s of YAML with libyaml (1.5 s without it) on every task that
reads the spec, while the 50 MB spec in issue 11 took 34 s. Anything bigger is a wrong file
or generated content that belongs in storage, not in the spec.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from node_agent.errors import SpecError
from node_agent.safepath import shown

MAX_SPEC_BYTES = 1024 * 1024
MAX_SPEC_TEXT = "1 MiB"
M = TypeVar("M", bound=BaseModel)


class DuplicateKey(ValueError):
    """A mapping gives the same key twice; the message is `<path>: key given twice ...`."""


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def parse_yaml(text: str) -> Any:
    """YAML with a key given twice refused (node_agent.specfile_yaml: yaml is imported only
    for a YAML document; a node's stored spec is JSON, so a frame task never pays for it)."""
    from node_agent.specfile_yaml import parse_yaml as parse

    return parse(text)


def parse_json(text: str) -> Any:
    """json.loads, refusing an object that gives a key twice (named with its path)."""
    dups: dict[int, str] = {}

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out and id(out) not in dups:
                dups[id(out)] = k
            out[k] = v
        return out

    data = json.loads(text, object_pairs_hook=pairs)
    if dups:
        where = _find(data, "", dups)
        raise DuplicateKey(f"{where}: key given twice")
    return data


def _find(node: Any, path: str, dups: dict[int, str]) -> str | None:
    """The path of the first object (document order) that gave a key twice."""
    if isinstance(node, dict):
        if id(node) in dups:
            return _join(path, dups[id(node)])
        for k, v in node.items():
            found = _find(v, _join(path, k), dups)
            if found:
                return found
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found = _find(item, f"{path}[{i}]", dups)
            if found:
                return found
    return None


def _too_big(path: Path, what: str, size: str) -> SpecError:
    return SpecError(
        f"{path}: {what} is {size}, over the {MAX_SPEC_TEXT} cap for a {what} "
        "(refused unread: a real one is a few KB)"
    )


def read_document(path: Path, what: str = "job spec") -> Any:
    """The parsed document of a spec file (`.json` is JSON, anything else YAML).

    SpecError (exit 2, one line naming the file) when it is missing, unreadable, over
    MAX_SPEC_BYTES, not valid JSON/YAML, or gives a key twice."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_SPEC_BYTES:
                raise _too_big(path, what, f"{size:,} bytes")
            raw = f.read(MAX_SPEC_BYTES + 1)  # a file that grows, a pipe
    except FileNotFoundError:
        raise SpecError(f"{path}: {what} file not found") from None
    except OSError as e:
        raise SpecError(f"{path}: cannot read {what}: {e}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise _too_big(path, what, f"more than {MAX_SPEC_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: cannot read {what}: {e}") from None
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        return parse_json(text) if kind == "JSON" else parse_yaml(text)
    except DuplicateKey as e:
        raise SpecError(f"{path}: {e}") from None
    except ValueError as e:  # json.JSONDecodeError, or yaml.YAMLError (specfile_yaml)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SpecError(f"{path}: not valid {kind}: {first}") from None


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def format_validation_error(source: str, err: ValidationError) -> str:
    """One line per error: `<file>: <field.path>: <reason>`."""
    lines = []
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "missing":
            msg = "is required"
        elif e["type"] == "extra_forbidden":
            msg = "is not a known field"
        elif e["type"] == "literal_error":
            msg = f"{e.get('input')!r} is not one of: {msg.split('Input should be ')[-1]}"
        # a value echoed by a validator (a job id with a newline) stays on its line: one
        # line per error, never a forged one
        lines.append(shown(f"{source}: {_field_path(tuple(e['loc']))}: {msg}"))
    return "\n".join(lines)


def validate_document(
    data: Any,
    model: type[M],
    source: str,
    what: str,
    *,
    check: Callable[[dict[str, Any]], str | None] | None = None,
) -> M:
    """`data` (a parsed document) as `model`; SpecError with one line per error, each
    `<source>: <field.path>: <reason>`. `check` may refuse the raw mapping first: it returns
    `<field>: <reason>` or None."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: the {what} must be a mapping of fields")
    problem = check(data) if check is not None else None
    if problem:
        raise SpecError(f"{source}: {problem}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise SpecError(format_validation_error(source, err)) from None


def load_document(
    path: Path,
    model: type[M],
    what: str,
    *,
    empty_ok: bool = False,
    check: Callable[[dict[str, Any]], str | None] | None = None,
) -> M:
    """The one loader of a configuration file: read_document (size cap, duplicate keys, JSON
    or YAML by suffix) then validate_document. `empty_ok`: an empty file is `{}` (the
    model's defaults) instead of an error."""
    data = read_document(path, what)
    if data is None and empty_ok:
        data = {}
    return validate_document(data, model, str(path), what, check=check)
