"""Batch File Conventions: the container and blob names the portal and Batch Explorer show."""

from __future__ import annotations

import hashlib
import re

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
    path = path.replace("\\", "/")
    while path.startswith("../"):
        path = path[3:]
    return f"{task_id}/${kind}/{path.lstrip('/')}"


def task_output(task_id: str, path: str) -> str:
    return _kind_path(task_id, "TaskOutput", path)


def task_log(task_id: str, path: str) -> str:
    return _kind_path(task_id, "TaskLog", path)


def task_preview(task_id: str, path: str) -> str:
    return _kind_path(task_id, "TaskPreview", path)
