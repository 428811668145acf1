"""The one place that knows the Batch node layout: AZ_BATCH_* variables and folders.

Everything else asks a `BatchNode`, never `os.environ`, for Batch facts.

A plain frozen dataclass, not a pydantic model: every phase and every CLI command imports
this module (through runtime), and building a pydantic model at import cost ~75 ms of each
process's start (`python -X importtime -c 'import node_agent.cli'`, issue 16).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node_agent.errors import EnvironmentMissing
from node_agent.safepath import ContainmentError, check_component

ENTITLEMENT_URL = "AZ_BATCH_ACCOUNT_URL"
ENTITLEMENT_TOKEN = "AZ_BATCH_SOFTWARE_ENTITLEMENT_TOKEN"
ENTITLEMENT_VARS = (ENTITLEMENT_URL, ENTITLEMENT_TOKEN)

# Variables set for every task, the start task included.
_NODE_VARS = {
    "root_dir": "AZ_BATCH_NODE_ROOT_DIR",
    "shared_dir": "AZ_BATCH_NODE_SHARED_DIR",
    "startup_dir": "AZ_BATCH_NODE_STARTUP_DIR",
    "task_dir": "AZ_BATCH_TASK_DIR",
    "task_working_dir": "AZ_BATCH_TASK_WORKING_DIR",
}
_OPTIONAL = {
    "account_name": "AZ_BATCH_ACCOUNT_NAME",
    "account_url": ENTITLEMENT_URL,
    "pool_id": "AZ_BATCH_POOL_ID",
    "node_id": "AZ_BATCH_NODE_ID",
    "mounts_dir": "AZ_BATCH_NODE_MOUNTS_DIR",
    "job_id": "AZ_BATCH_JOB_ID",
    "task_id": "AZ_BATCH_TASK_ID",
    "job_prep_dir": "AZ_BATCH_JOB_PREP_DIR",
    "job_prep_working_dir": "AZ_BATCH_JOB_PREP_WORKING_DIR",
}
# Ids that node_agent uses as folder or file name components (jobs/<job>/, log names).
_ID_VARS = ("AZ_BATCH_JOB_ID", "AZ_BATCH_TASK_ID", "AZ_BATCH_POOL_ID", "AZ_BATCH_NODE_ID")

AGENT_DIRNAME = "node_agent"
STAND_IN_DIRNAME = "node-agent-dry-run"  # BatchNode.stand_in: the root, never created
# Where Batch puts the node root: Ubuntu, CentOS, Windows, VM sizes without a temp disk.
STANDARD_ROOTS = (
    "/mnt/batch/tasks",
    "/mnt/resource/batch/tasks",
    "D:\\batch\\tasks",
    "/opt/batch/data",
)


class Secret:
    """A value that never shows in a repr, a log line or an f-string (as pydantic's SecretStr)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_PATH_FIELDS = frozenset(
    {
        "root_dir",
        "shared_dir",
        "startup_dir",
        "task_dir",
        "task_working_dir",
        "mounts_dir",
        "job_prep_dir",
        "job_prep_working_dir",
    }
)


@dataclass(frozen=True)
class BatchNode:
    """What a task knows about the node it runs on."""

    root_dir: Path
    shared_dir: Path
    startup_dir: Path
    task_dir: Path
    task_working_dir: Path
    mounts_dir: Path
    account_name: str | None = None
    account_url: str | None = None
    pool_id: str | None = None
    node_id: str = "local"
    job_id: str | None = None
    task_id: str | None = None
    job_prep_dir: Path | None = None
    job_prep_working_dir: Path | None = None
    entitlement_token: Secret | None = None
    is_windows: bool = os.name == "nt"

    def __post_init__(self) -> None:
        for name in _PATH_FIELDS:  # str from the environment -> Path, as the model did
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> BatchNode:
        """A copy with some fields changed (the name pydantic models use, kept for callers)."""
        return dataclasses.replace(self, **dict(update or {}))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, need_job: bool = False) -> BatchNode:
        """Read the node from the environment; one clear error per missing variable."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for field, var in _NODE_VARS.items():
            v = env.get(var)
            if not v:
                raise EnvironmentMissing(
                    f"{var} is not set: node-agent phases run inside an Azure Batch task "
                    "(or `node-agent local run`)"
                )
            values[field] = v
        for field, var in _OPTIONAL.items():
            if env.get(var):
                values[field] = env[var]
        if need_job:
            for var in ("AZ_BATCH_JOB_ID", "AZ_BATCH_TASK_ID"):
                if not env.get(var):
                    raise EnvironmentMissing(f"{var} is not set: this phase runs as a job task")
        for var in _ID_VARS:  # checked before anything is written: an id is one path component
            if env.get(var):
                try:
                    check_component(env[var], var)
                except ContainmentError as e:
                    raise EnvironmentMissing(str(e)) from None
        values.setdefault("mounts_dir", str(Path(str(values["root_dir"])) / "fsmounts"))
        token = env.get(ENTITLEMENT_TOKEN)
        if token:
            values["entitlement_token"] = Secret(token)
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def from_root(cls, root: Path) -> BatchNode:
        """The node as seen from an SSH/RDP session, where no AZ_BATCH_* variable is set."""
        return cls(
            root_dir=root,
            shared_dir=root / "shared",
            startup_dir=root / "startup",
            task_dir=root / "startup",
            task_working_dir=root / "startup" / "wd",
            mounts_dir=root / "fsmounts",
        )

    @classmethod
    def stand_in(cls, job_id: str, task_id: str = "dry-run") -> BatchNode:
        """The layout `render --dry-run` assumes on a workstation (no AZ_BATCH_* variable):
        a node root `<temp>/node-agent-dry-run` (never created), the job's assets under
        `shared/node_agent/jobs/<job>/assets`, the task in `workitems/<job>/job-1/<task>`.
        Paths are only printed; nothing is written there."""
        root = Path(tempfile.gettempdir()) / STAND_IN_DIRNAME
        task_dir = root / "workitems" / job_id / "job-1" / task_id
        prep = root / "workitems" / job_id / "job-1" / "jobpreparation"
        return cls(
            root_dir=root,
            shared_dir=root / "shared",
            startup_dir=root / "startup",
            task_dir=task_dir,
            task_working_dir=task_dir / "wd",
            mounts_dir=root / "fsmounts",
            pool_id="dry-run",
            node_id="dry-run",
            job_id=job_id,
            task_id=task_id,
            job_prep_dir=prep,
            job_prep_working_dir=prep / "wd",
        )

    # --- node_agent's own folders, all under the shared dir -----------------
    @property
    def agent_dir(self) -> Path:
        return self.shared_dir / AGENT_DIRNAME

    @property
    def logs_dir(self) -> Path:
        return self.agent_dir / "logs"

    @property
    def state_dir(self) -> Path:
        return self.agent_dir / "state"

    @property
    def cache_dir(self) -> Path:
        return self.agent_dir / "cache"

    def job_dir(self, job_id: str | None = None) -> Path:
        jid = job_id or self.job_id
        if not jid:
            raise EnvironmentMissing("AZ_BATCH_JOB_ID is not set: this phase runs as a job task")
        try:
            check_component(jid, "job id")
        except ContainmentError as e:
            raise EnvironmentMissing(str(e)) from None
        return self.jobs_dir / jid

    @property
    def jobs_dir(self) -> Path:
        return self.agent_dir / "jobs"

    def job_assets_dir(self, job_id: str | None = None) -> Path:
        """What tasks see: the job's isolated view (an overlay, or a copy; sync/isolation.py)."""
        return self.job_dir(job_id) / "assets"

    def job_view_dir(self, job_id: str | None = None) -> Path:
        """The sync engine's hard-link view into the content store; never shown to a task."""
        return self.job_dir(job_id) / ".view"

    def job_spec_path(self, job_id: str | None = None) -> Path:
        return self.job_dir(job_id) / "spec.json"

    def prep_working_dir(self) -> Path:
        """Job prep's working dir: the documented variable, else the task's own (inside job prep)."""
        return self.job_prep_working_dir or self.task_working_dir
