"""What each exit code means for the job: retried, or ended at once. The one table.

`jobplan.exit_conditions` (the frame tasks' exitConditions), job preparation's decision to
terminate its job (`batch/jobcontrol.py`) and the table in docs/azure-batch.md
(`markdown_table`, checked by tests/unit/test_exit_codes.py) all read `POLICY`.

Batch facts this encodes (REST spec, specification/batch/data-plane/Azure.Batch/stable/
2025-06-01.21.0/BatchService.json, models ExitConditions / ExitOptions / BatchTaskConstraints;
the same text in azure-batch 15.1 `azure.batch.models.ExitOptions`):
- ExitOptions has two fields only: `jobAction` (none | disable | terminate) and
  `dependencyAction` (satisfy | block, for jobs with usesTaskDependencies). Nothing in it
  says "do not retry": Batch retries EVERY non-zero exit up to `maxTaskRetryCount`, and the
  exit condition's jobAction is applied once the task completes for good.
- `jobAction` is applied only when the job's `onTaskFailure` is performexitoptionsjobaction;
  its default is none for exit 0 and terminate for any other exit condition.
So a cause that must end the job AT ONCE cannot rely on exitConditions alone: job
preparation calls Terminate Job itself (`batch/jobcontrol.py`), and the tasks' jobAction
terminate is the bound (after maxTaskRetryCount retries) when the call cannot be made.
A frame task's retries after a cause no retry fixes (`why_no_retry`) end at once on the
node, without rendering (`phases/render_rerun.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from node_agent.errors import ExitCode

Then = Literal["retry", "end_task", "end_job"]


@dataclass(frozen=True)
class Cause:
    code: ExitCode
    then: Then  # retry: a transient cause; end_task: this task only; end_job: the whole job
    why: str

    @property
    def job_action(self) -> str:
        """The tasks' exitConditions jobAction for this code (after Batch's retries)."""
        return "terminate" if self.then == "end_job" else "none"


AUTH_4 = "authorization"  # exit 4 whose cause is an authorization failure (see is_authorization)

POLICY: tuple[Cause, ...] = (
    Cause(ExitCode.FAILED, "retry", "internal error (a bug): may not repeat"),
    Cause(ExitCode.USAGE, "end_job", "bad job spec or scene name: no retry can fix it"),
    Cause(ExitCode.STORAGE, "retry", "storage unreachable or throttled (transient)"),
    Cause(ExitCode.ASSETS, "end_job", "blob names refused: the same names every time"),
    Cause(ExitCode.DISK_FULL, "retry", "another node or a trimmed cache may have room"),
    Cause(ExitCode.RENDER_FAILED, "end_task", "renderer failed or missing, cause unknown"),
    Cause(ExitCode.LICENSE, "retry", "license server busy or unreachable (transient)"),
    Cause(ExitCode.MISSING_ASSET, "end_job", "scene or texture missing: no retry can fix it"),
    Cause(ExitCode.OUT_OF_MEMORY, "end_task", "the same frames need the same memory"),
    Cause(ExitCode.CRASH, "retry", "renderer crashed or was killed (transient)"),
    Cause(ExitCode.MISSING_FRAMES, "end_task", "renderer exited 0 without its frames"),
    Cause(ExitCode.TIMEOUT, "end_task", "the same frames take the same time"),
    Cause(ExitCode.UPLOAD, "retry", "outputs could not be uploaded (transient)"),
    Cause(ExitCode.HEALTH, "end_task", "renderer missing or node unhealthy"),
    Cause(ExitCode.MOUNT, "retry", "a mount failed (transient)"),
)
BY_CODE = {int(c.code): c for c in POLICY}

# exit 4 split by its cause: storage answered 401/403 or a credential is missing
_AUTH_WORDS = ("access denied", "authentication failed", "authorization", " 401", " 403")


def is_authorization(message: str) -> bool:
    """Whether a storage failure (exit 4) is an authorization one: waiting will not fix it.
    Read from the one-line message storage/ gives every StorageError."""
    low = message.lower()
    return any(w in low for w in _AUTH_WORDS) or "storage.auth.env" in low


def then_for(code: int, message: str = "") -> Then:
    """What a failure with this exit code (and one-line message) calls for."""
    if code == int(ExitCode.STORAGE) and is_authorization(message):
        return "end_job"
    cause = BY_CODE.get(code)
    return cause.then if cause else "retry"


def why_no_retry(code: int, message: str = "") -> str | None:
    """Why no retry can fix a failure with this exit code (and one-line message), or None
    when a retry may. What a frame task's retry reads to end at once (phases/render_rerun)."""
    if then_for(code, message) == "retry":
        return None
    if code == int(ExitCode.STORAGE):
        return "storage refused the task's credentials: the same credentials every time"
    return BY_CODE[code].why


def exit_conditions() -> dict[str, Any]:
    """The frame tasks' exitConditions: jobAction terminate for the causes that end the job,
    none for the others (every code listed, so none falls to Batch's default terminate)."""
    return {
        "exitCodes": [
            {"code": int(c.code), "exitOptions": {"jobAction": c.job_action}} for c in POLICY
        ],
        "default": {"jobAction": "none"},
    }


_THEN_TEXT = {
    "retry": "retried (maxTaskRetryCount); the job goes on",
    "end_task": "each Batch retry ends at once, not rendered; the job goes on",
    "end_job": "each Batch retry ends at once, not rendered; then the job is terminated",
}


def markdown_table() -> str:
    """The docs/azure-batch.md table, generated from POLICY."""
    rows = [
        "| exit | name | cause | job preparation | frame task (exitConditions) |",
        "|---|---|---|---|---|",
    ]
    for c in POLICY:
        prep = (
            "terminates the job at once (Terminate Job call)"
            if c.then == "end_job"
            else "retried (maxTaskRetryCount); node ineligible after the last"
        )
        rows.append(
            f"| {int(c.code)} | {c.code.name.lower()} | {c.why} | {prep} | "
            f"{_THEN_TEXT[c.then]} (jobAction {c.job_action}) |"
        )
        if c.code == ExitCode.STORAGE:
            rows.append(
                f"| 4 | storage ({AUTH_4}) | access denied, authentication failed, a missing "
                "credential | terminates the job at once (Terminate Job call) | each Batch "
                "retry ends at once, not rendered; the job goes on (jobAction none) |"
            )
    return "\n".join(rows)
