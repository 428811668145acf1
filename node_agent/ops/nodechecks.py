"""Doctor checks of the node's own files: its folders writable (by trying), its records
readable, and whether the job's storage credential is present in this shell at all."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from node_agent import nodestate
from node_agent.batchenv import BatchNode
from node_agent.runhistory import read_history
from node_agent.sync.writable import try_write

if TYPE_CHECKING:
    from node_agent.ops.doctor import Check
    from node_agent.spec import JobSpec


def writable_checks(node: BatchNode) -> list[Check]:
    """Each folder job prep and job release write, tried with a real file: mode bits do not
    show `chattr +i`, a read-only mount or an ACL. A refusal is a failure naming it."""
    from node_agent.ops.doctor import Check

    folders = [
        ("cache", node.cache_dir),
        ("cache objects", node.cache_dir / "objects"),
        ("cache locks", node.cache_dir / "locks"),
        ("cache tmp", node.cache_dir / "tmp"),
        ("state", node.state_dir),
        ("jobs", node.agent_dir / "jobs"),
        ("logs", node.logs_dir),
    ]
    bad = [(label, path, why) for label, path, why in _tried(folders) if why is not None]
    if not bad:
        tried = [label for label, path in folders if path.is_dir()]
        return [
            Check("writable", True, f"{', '.join(tried) or 'no folders yet'}: a file was written")
        ]
    return [
        Check(
            f"writable {label}",
            False,
            f"{path}: {why} (job prep and job release write here; fix: lsattr -d {path}, "
            f"chattr -i {path} if immutable, or remount it read-write)",
        )
        for label, path, why in bad
    ]


def _tried(folders: list[tuple[str, Path]]) -> list[tuple[str, Path, str | None]]:
    return [(label, path, try_write(path)) for label, path in folders]


def records_check(node: BatchNode) -> list[Check]:
    """Every state record parses (a corrupt mounts.json is not "no mounts recorded")."""
    from node_agent.ops.doctor import Check

    problems = nodestate.record_problems(node)
    history = read_history(node.state_dir)
    checks = [
        Check(
            "records",
            False,
            f"{path}: {why} (its readers treat it as empty; fix: move it aside and re-run "
            "the phase that writes it)",
        )
        for path, why in problems
    ]
    if history.bad_lines or history.error:
        checks.append(
            Check(
                "records",
                False,
                f"{history.error or ''}{history.bad_lines} unreadable line(s) in the phase "
                "history (skipped)",
                required=False,
            )
        )
    if not checks:
        checks.append(Check("records", True, f"state records in {node.state_dir} parse"))
    return checks


def missing_credential(spec: JobSpec, env: Mapping[str, str]) -> Check | None:
    """The spec names a secret variable this shell does not have (an SSH session: Batch
    gives it to the job's tasks only): not a storage failure, say how to give it."""
    from node_agent.ops.doctor import Check

    var = spec.storage.auth.env
    if not var or env.get(var):
        return None
    return Check(
        "storage",
        False,
        f"not checked: credential not available in this shell ({var} is not set; the job's "
        f"tasks get it from the job's environment). To probe {spec.storage.account_url}: "
        f"export {var}=<the value the job uses> and run node-agent doctor again",
        required=False,
    )
