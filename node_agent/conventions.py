"""Batch File Conventions: the container and blob names the portal and Batch Explorer show."""

from __future__ import annotations

import hashlib
import re

from node_agent.safepath import check_component, split_rel

# Azure/azure-sdk-for-net sdk/batch/Microsoft.Azure.Batch.Conventions.Files/src/Utilities/
# ContainerNameUtils.cs, step by step (its unit tests run in tests/unit/test_conventions.py)
_CONTAINER_PREFIX = "job-"
_MAX_USABLE_JOB_ID = 63 - len(_CONTAINER_PREFIX)  # MaxUsableJobIdLength
_MAX_JOB_ID_IN_MUNGED = 15  # MaxJobIdLengthInMungedContainerName
_PERMITTED = re.compile(r"[a-z0-9][-a-z0-9]*")  # PermittedContainerNamePattern
_INVALID_RUN = re.compile(r"[:_-]+")  # InvalidContainerCharacters


def job_container(job_id: str) -> str:
    """The job's output container: `job-<jobid>` (lower-cased) when that is a valid
    container name, else `job-<cleaned, at most 15>-<sha1 of the lower-cased id>`, with
    `job` for a cleaned part that is empty (an id of only '-' and '_': `job-job-<sha1>`)."""
    return _CONTAINER_PREFIX + _unprefixed(job_id.lower())


def _unprefixed(job_id: str) -> str:
    if (
        len(job_id) > _MAX_USABLE_JOB_ID
        or not _PERMITTED.fullmatch(job_id)
        or job_id.endswith("-")
        or "--" in job_id
    ):
        return _transformed(job_id)
    return job_id


def _transformed(job_id: str) -> str:
    digest = hashlib.sha1(job_id.encode("utf-8")).hexdigest()
    safe = _INVALID_RUN.sub("-", job_id).strip("-")
    if len(safe) > _MAX_JOB_ID_IN_MUNGED:
        safe = safe[:_MAX_JOB_ID_IN_MUNGED].strip("-")  # truncation may leave a trailing '-'
    elif not safe:
        safe = "job"
    return f"{safe}-{digest}"


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
