"""A job always ends: job preparation terminates its own job on a failure no retry can fix.

Why a call from the node (docs/azure-batch.md, "A job always ends"): when job preparation
fails, Batch makes that node ineligible for the job, the tasks stay active and the job
never completes (REST spec 2025-06-01.21.0, BatchJobPreparationTask; BatchTaskState
"preparing": "If the Job Preparation Task fails, the Task will return to active"), and task
exitConditions do not apply to job preparation. API 2025-06-01 has no task authentication
token any more (no `authenticationTokenSettings` in azure-batch 15.1's models, generated
from that spec), so the call authenticates as the pool's user-assigned managed identity,
with a token from the node's IMDS.

The environment (set by `batch job-json` on the job preparation task; the local pool sets
the same, pointing at its loopback stand-ins):
- AZ_BATCH_ACCOUNT_URL, AZ_BATCH_JOB_ID, AZ_BATCH_NODE_ID: Batch's own variables;
- NODE_AGENT_JOB_CONTROL_IDENTITY: the identity's resource id (pool settings
  identity_resource_id); without it nothing is called and the job's maxWallClockTime ends it;
- NODE_AGENT_IMDS_ENDPOINT: IMDS (default http://169.254.169.254; the local pool's
  stand-in in tests).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from node_agent.errors import ExitCode, NodeAgentError
from node_agent.exitpolicy import then_for
from node_agent.redact import Redactor

IDENTITY_ENV = "NODE_AGENT_JOB_CONTROL_IDENTITY"
IMDS_ENV = "NODE_AGENT_IMDS_ENDPOINT"
IMDS_DEFAULT = "http://169.254.169.254"
# https://learn.microsoft.com/entra/identity/managed-identities-azure-resources/how-to-use-vm-token
# (GET .../oauth2/token, header Metadata: true; msi_res_id selects a user-assigned identity)
IMDS_API_VERSION = "2018-02-01"
# the REST spec's OAuth2 scope is https://batch.core.windows.net//.default: this resource
BATCH_RESOURCE = "https://batch.core.windows.net/"
# what azure-batch 15.1 sends (azure/batch/_configuration.py) for API 2025-06-01.21.0
BATCH_API_VERSION = "2025-06-01"
# azure-batch 15.1's content type for this body (_operations.py, terminate_job)
CONTENT_TYPE = "application/json; odata=minimalmetadata"
REASON_MAX = 256
ANSWER_MAX = 2**20  # an IMDS token answer is a few KiB, a Batch error body less
ATTEMPTS = 3
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Outcome:
    called: bool
    status: int | None
    note: str  # one line for the log


def terminate_reason(node_id: str, code: int, message: str, what: str = "job preparation") -> str:
    """The text the portal shows as the job's terminateReason: who, which exit, why."""
    try:
        name = ExitCode(code).name.lower()
    except ValueError:
        name = "unknown"
    first = (message.strip().splitlines() or [""])[0]
    text = f"{what} failed on node {node_id}: exit {code} {name}: {first}"
    return text if len(text) <= REASON_MAX else text[: REASON_MAX - 3] + "..."


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is the answer, never followed: urllib would follow a 302/303 of the POST
    as a GET to wherever it points with every header but the content ones, the bearer
    token included (urllib.request.HTTPRedirectHandler.redirect_request)."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _read(r: object, req: urllib.request.Request) -> bytes:
    data = r.read(ANSWER_MAX + 1)  # type: ignore[attr-defined]
    if len(data) > ANSWER_MAX:
        raise NodeAgentError(
            f"{req.get_method()} {req.full_url.split('?')[0]}: answer over {ANSWER_MAX} bytes"
        )
    return bytes(data)


def _open(req: urllib.request.Request) -> tuple[int, bytes]:
    """One request with a few tries for what waiting can fix (no answer, 429, 5xx); a
    redirect is not followed, an answer is read up to ANSWER_MAX bytes."""
    last: Exception | None = None
    for i in range(ATTEMPTS):
        try:
            with _OPENER.open(req, timeout=TIMEOUT_S) as r:
                return int(r.status), _read(r, req)
        except urllib.error.HTTPError as e:
            if e.code not in (408, 429, 500, 502, 503, 504) or i == ATTEMPTS - 1:
                return int(e.code), _read(e, req)
            last = e
        except (urllib.error.URLError, OSError) as e:
            last = e
        time.sleep(0.5 * 2**i)
    reason = getattr(last, "reason", last)
    raise NodeAgentError(f"{req.get_method()} {req.full_url.split('?')[0]}: {reason}")


def imds_token(identity: str, endpoint: str, redactor: Redactor) -> str:
    """An access token for Batch, as the user-assigned identity `identity` (resource id)."""
    query = urlencode(
        {"api-version": IMDS_API_VERSION, "resource": BATCH_RESOURCE, "msi_res_id": identity}
    )
    req = urllib.request.Request(
        f"{endpoint.rstrip('/')}/metadata/identity/oauth2/token?{query}",
        headers={"Metadata": "true"},
    )
    status, body = _open(req)
    if status != 200:
        raise NodeAgentError(f"IMDS token for {identity}: HTTP {status}")
    try:
        token = str(json.loads(body)["access_token"])
    except (ValueError, KeyError, TypeError):
        raise NodeAgentError(f"IMDS token for {identity}: no access_token in the answer") from None
    redactor.add(token)
    return token


def terminate_job(account_url: str, job_id: str, reason: str, token: str) -> int:
    """POST {account}/jobs/{job}/terminate (REST spec Jobs_TerminateJob; body
    BatchJobTerminateOptions {"terminateReason"}); the HTTP status (202 accepted, 409 when
    the job already completed or is terminating)."""
    query = urlencode({"api-version": BATCH_API_VERSION})
    req = urllib.request.Request(
        f"{account_url.rstrip('/')}/jobs/{quote(job_id, safe='')}/terminate?{query}",
        data=json.dumps({"terminateReason": reason}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": CONTENT_TYPE},
    )
    status, _ = _open(req)
    return status


def end_job_after(
    code: int,
    message: str,
    env: Mapping[str, str],
    redactor: Redactor,
    log: logging.Logger,
    what: str = "job preparation",
) -> Outcome:
    """After `what` (job preparation, or a task that has the identity variable too) failed
    with `code`/`message`: terminate the job when no retry can fix the cause (exitpolicy),
    else leave it to Batch's retries."""
    if then_for(code, message) != "end_job":
        return Outcome(False, None, f"exit {code} can pass on a retry: the job is left running")
    identity = env.get(IDENTITY_ENV, "")
    account, job = env.get("AZ_BATCH_ACCOUNT_URL", ""), env.get("AZ_BATCH_JOB_ID", "")
    if not identity or not account or not job:
        return Outcome(
            False,
            None,
            f"no {IDENTITY_ENV} (pool settings identity_resource_id): the job is not "
            "terminated from here and ends at its maxWallClockTime",
        )
    reason = terminate_reason(env.get("AZ_BATCH_NODE_ID", "?"), code, redactor(message), what)
    try:
        token = imds_token(identity, env.get(IMDS_ENV) or IMDS_DEFAULT, redactor)
        status = terminate_job(account, job, reason, token)
    except NodeAgentError as e:
        return Outcome(False, None, f"terminating job {job} failed: {redactor(str(e))}")
    if status in (200, 202):
        note = f"job {job} terminated: {reason}"
    elif status == 409:
        note = f"job {job} was already completed or terminating (HTTP 409)"
    else:
        note = f"terminating job {job}: Batch answered HTTP {status}"
    log.log(logging.WARNING if status not in (200, 202, 409) else logging.INFO, "%s", note)
    return Outcome(True, status, note)
