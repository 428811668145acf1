"""The node's state files (<AZ_BATCH_NODE_SHARED_DIR>/node_agent/state/): one reader and
writer for each, so their names and shapes live in one place.

| file               | written by                    | read by                                   |
|--------------------|-------------------------------|-------------------------------------------|
| `pool-config.json` | start task (the node config)  | job prep (probe timeout), render (mount   |
|                    |                               | secret variables), Windows tasks (drive   |
|                    |                               | mappings), job release and doctor (cache  |
|                    |                               | budget, free-disk minimum)                |
| `node.json`        | start task (node facts)       | people, `node-agent doctor`               |
| `health.json`      | start task (health checks)    | people, the local pool's tests            |
| `pool-mounts.json` | start task (its mount results)| people                                    |
| `mounts.json`      | mounts manager (every mount   | job release, `node-agent mounts`, doctor  |
|                    | it made, pool and job-scoped) |                                           |

Every write is atomic (a temporary file renamed over the old one). The pool config is read
back as the typed NodeConfig it was written from; the others are JSON documents whose
readers give an empty value for a missing or unreadable file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node_agent.batchenv import BatchNode
from node_agent.errors import SpecError
from node_agent.runtime import write_atomic

if TYPE_CHECKING:
    from node_agent.poolconfig import NodeConfig

POOL_CONFIG = "pool-config.json"
NODE_FACTS = "node.json"
HEALTH = "health.json"
POOL_MOUNTS = "pool-mounts.json"
MOUNT_RECORDS = "mounts.json"


def state_file(node: BatchNode, name: str) -> Path:
    """The path of one of the state files above (`name` is one of the constants)."""
    return node.state_dir / name


def _write_json(node: BatchNode, name: str, doc: object) -> Path:
    path = state_file(node, name)
    write_atomic(path, json.dumps(doc, indent=2).encode())
    return path


def _read_json(node: BatchNode, name: str) -> object:
    """The parsed file, or None when it is missing or not valid JSON."""
    try:
        return json.loads(state_file(node, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# --- pool-config.json: the node config the start task applied ------------------------
def write_pool_config(node: BatchNode, config: NodeConfig) -> Path:
    """Keep the node config for later phases (it names variables, never holds a secret)."""
    path = state_file(node, POOL_CONFIG)
    write_atomic(path, config.model_dump_json(indent=2).encode())
    return path


def read_pool_config(node: BatchNode) -> NodeConfig | None:
    """The node config the start task kept; None when this node has none. SpecError (one
    line naming the file and field) when it cannot be read or is not a valid node config."""
    from node_agent.poolconfig import load_node_config  # poolconfig imports the mounts

    path = state_file(node, POOL_CONFIG)
    if not path.is_file():
        return None
    return load_node_config(path)


def kept_pool_config(node: BatchNode, log: logging.Logger | None = None) -> NodeConfig | None:
    """read_pool_config for readers that carry on without it (they use their defaults): a
    file that cannot be read is None, and a warning on `log` when one is given."""
    try:
        return read_pool_config(node)
    except SpecError as e:
        if log is not None:
            log.warning("cannot read the pool config the start task kept: %s", e)
        return None


# --- node.json, health.json, pool-mounts.json: records of the start task --------------
def write_node_facts(node: BatchNode, facts: Mapping[str, object]) -> Path:
    return _write_json(node, NODE_FACTS, dict(facts))


def read_node_facts(node: BatchNode) -> dict[str, Any]:
    doc = _read_json(node, NODE_FACTS)
    return doc if isinstance(doc, dict) else {}


def write_health(node: BatchNode, record: Mapping[str, object]) -> Path:
    return _write_json(node, HEALTH, dict(record))


def read_health(node: BatchNode) -> dict[str, Any]:
    doc = _read_json(node, HEALTH)
    return doc if isinstance(doc, dict) else {}


def write_pool_mounts(node: BatchNode, results: Sequence[Mapping[str, object]]) -> Path:
    return _write_json(node, POOL_MOUNTS, [dict(r) for r in results])


def read_pool_mounts(node: BatchNode) -> list[dict[str, Any]]:
    doc = _read_json(node, POOL_MOUNTS)
    return [r for r in doc if isinstance(r, dict)] if isinstance(doc, list) else []


# --- mounts.json: every mount node_agent made (the mounts manager locks around updates) --
def mount_records_path(node: BatchNode) -> Path:
    return state_file(node, MOUNT_RECORDS)


def read_mount_records(node: BatchNode) -> list[dict[str, Any]]:
    doc = _read_json(node, MOUNT_RECORDS)
    return [r for r in doc if isinstance(r, dict)] if isinstance(doc, list) else []


def write_mount_records(node: BatchNode, records: Sequence[Mapping[str, object]]) -> Path:
    return _write_json(node, MOUNT_RECORDS, [dict(r) for r in records])


# --- doctor: every record above must parse --------------------------------------------
_SHAPES: dict[str, type] = {
    NODE_FACTS: dict,
    HEALTH: dict,
    POOL_MOUNTS: list,
    MOUNT_RECORDS: list,
}


def record_problems(node: BatchNode) -> list[tuple[Path, str]]:
    """(file, what is wrong) for each state file that exists but cannot be read back: the
    readers above treat such a file as empty (no mounts recorded...), which hides it."""
    problems: list[tuple[Path, str]] = []
    for name, shape in _SHAPES.items():
        path = state_file(node, name)
        if not path.exists():
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            problems.append((path, f"cannot be read: {e.strerror or e}"))
            continue
        except ValueError as e:
            problems.append((path, f"not valid JSON: {e}"))
            continue
        if not isinstance(doc, shape):
            problems.append((path, f"not a JSON {'object' if shape is dict else 'list'}"))
    try:
        read_pool_config(node)
    except SpecError as e:
        problems.append((state_file(node, POOL_CONFIG), str(e).splitlines()[0]))
    return problems
