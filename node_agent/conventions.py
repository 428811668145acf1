"""Batch File Conventions: the container and blob names the portal and Batch Explorer show."""

from __future__ import annotations

import hashlib
import re

from node_agent.safepath import check_component, split_rel

_VALID = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


def job_container(job_id: str) -> str:
    """`job-<jobid>` when valid, else the documented hashed form."""
    name = "job-" + job_id.lower()
    if _VALID.match(name):
        return name
    cleaned = re.sub(r"[:_-]+", "-", job_id.lower()).strip("-")[:15].strip("-")
    digest = hashlib.sha1(job_id.lower().encode("utf-8")).hexdigest()
    return f"job-{cleaned}-{digest}" if cleaned else f"job-{digest}"


def _kind_path(task_id: str, kind: str, path: str) -> str:
    """`<task>/$<kind>/<path>`, built from checked components: the task id is one component
    and `path` is split on '/' and '\\' (both separate on Windows, and a storage URL would
    read '\\' as '/'), with no '..', '.', empty, drive or look-alike part
    (safepath.split_rel). ContainmentError for a name that could leave `<task>/$<kind>/`."""
    check_component(task_id, "AZ_BATCH_TASK_ID")
    return f"{task_id}/${kind}/" + "/".join(split_rel(path, f"${kind} file"))


def task_output(task_id: str, path: str) -> str:
    return _kind_path(task_id, "TaskOutput", path)


def task_log(task_id: str, path: str) -> str:
    return _kind_path(task_id, "TaskLog", path)


def task_preview(task_id: str, path: str) -> str:
    return _kind_path(task_id, "TaskPreview", path)
