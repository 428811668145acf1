"""A task that runs again (spot preemption, retry, requeue) renders only what is missing.

Before the renderer starts, the task reads its ledger and lists its output folder in
storage once (node_agent.output_record: each committed frame blob's size, Content-MD5 and
ETag, for this job, task and spec). Frames stored whole are skipped; the rest is rendered:
- renderers that take any frame list (Renderer.frame_list: Blender, kick, V-Ray) get
  exactly the frames not in storage;
- range-only renderers (Maya, 3ds Max) get the rest when it is still a start/end/step
  range (the usual case: frames render in order and the node went away after some of
  them); otherwise the whole set is rendered again, said in one log line;
- a TD's template (render.command) renders the whole set: node_agent cannot know how it
  reads {frames}/{start}/{end}.

Batch retries every non-zero exit up to maxTaskRetryCount: its ExitOptions cannot say "do
not retry this code" (exitpolicy's docstring cites the REST spec). So an attempt that ends
with a cause no retry fixes (exitpolicy.why_no_retry, refined by what the attempt saw:
`verdict_record`) leaves that verdict in its ledger after its logs and summary are
uploaded, and the retry, reading the same ledger for the same job, task and spec, ends at
once with the same exit code and a reason naming it, without starting the renderer and
without listing storage (`not_retried`). A requeue makes new task ids: it renders again.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from node_agent.errors import ExitCode, NodeAgentError
from node_agent.exitpolicy import why_no_retry
from node_agent.frames import format_frames
from node_agent.output_record import (
    LEDGER_NAME,
    Ledger,
    Reader,
    RestReader,
    SdkReader,
    Stored,
    write_ledger,
)
from node_agent.renderers import CommandContext, Launch, build_launch
from node_agent.renderers import get as get_renderer

if TYPE_CHECKING:
    from node_agent.outputs import Layout
    from node_agent.redact import Redactor
    from node_agent.renderers import Renderer
    from node_agent.spec import Render
    from node_agent.spec_storage import Storage
    from node_agent.storage import BlobStore
    from node_agent.storage.retry import RetryPolicy
    from node_agent.supervise import RunResult


@dataclass(frozen=True)
class Plan:
    render: list[int]  # the frames to render now
    skipped: dict[int, Stored] = field(default_factory=dict)  # frame -> its stored blob
    note: str = ""  # one line for the log when something is skipped or could not be


def _is_range(frames: list[int]) -> bool:
    if len(frames) < 3:
        return True
    step = frames[1] - frames[0]
    return all(b - a == step for a, b in itertools.pairwise(frames))


def plan(
    frames: list[int],
    expected: dict[int, str],
    stored: list[Stored],
    ledger: Ledger | None,
    layout: Layout,
    fresh: Ledger,
    descriptor: Renderer | None,
    template: bool,
) -> Plan:
    """Which frames to render, given what storage holds and the earlier run's ledger (pure).
    `fresh` is this run's (empty) ledger: its job, task and spec must be the earlier one's."""
    by_blob = {s.blob: s for s in stored}
    done: dict[int, Stored] = {}
    for frame, name in expected.items():
        s = by_blob.get(layout.output(name))
        if (
            s is not None
            and ledger is not None
            and ledger.holds(s, fresh.job, fresh.task, fresh.spec_sha256)
        ):
            done[frame] = s
    if not done:
        return Plan(frames)
    rest = [f for f in frames if f not in done]
    found = f"frames {format_frames(sorted(done))} already in storage from an earlier run"
    if template:
        return Plan(frames, note=f"{found}; a render.command template renders every frame")
    if descriptor is not None and not descriptor.frame_list and not _is_range(rest):
        return Plan(
            frames,
            note=f"{found}; {descriptor.name} takes a range and the rest "
            f"({format_frames(rest)}) is not one: rendering every frame",
        )
    what = f"rendering only {format_frames(rest)}" if rest else "nothing left to render"
    return Plan(rest, done, note=f"{found} (ETag, size and Content-MD5 as uploaded): {what}")


@dataclass(frozen=True)
class Narrowed:
    """The task's launch after reading storage: the frames skipped, or why it must not run."""

    launch: Launch
    skipped: dict[int, Stored] = field(default_factory=dict)
    not_retried: tuple[ExitCode, str] | None = None  # (exit code, reason): end at once


_REASON_MAX = 400  # characters of the earlier attempt's reason repeated (it comes from storage)


def verdict_record(
    code: ExitCode, reason: str, result: RunResult | None, frames_stored: int
) -> dict[str, object] | None:
    """What an attempt that ended with `code` leaves for Batch's retry of it (Ledger.ended),
    or None when a retry may fix it. exitpolicy says which causes no retry fixes; what this
    attempt saw narrows it:
    - exit 10 only when the renderer could not be started (missing): one that ran and
      failed gave no cause, and one stopped by SIGTERM (Batch terminating or preempting the
      task) was not its own failure;
    - exit 16 by render.timeout_s after this attempt stored frames: the retry renders only
      the rest (render_rerun.plan), in a limit of its own. A stall (render.stall_timeout_s)
      hangs on the same frame again."""
    why = why_no_retry(int(code), reason)
    if why is None:
        return None
    if code is ExitCode.RENDER_FAILED and result is not None:
        return None
    if code is ExitCode.TIMEOUT and result is not None and result.timed_out and frames_stored:
        return None
    return {"exit_code": int(code), "exit_class": code.name.lower(), "reason": reason, "why": why}


def not_retried(ended: Mapping[str, object]) -> tuple[ExitCode, str] | None:
    """The exit code and one-line reason a retry ends with, from the earlier attempt's
    verdict (Ledger.ended); None when the verdict is unreadable or this node_agent's policy
    now says a retry may fix it (render then)."""
    from node_agent.jobclient.model import inert  # controls in text from storage: shown inert

    try:
        code = ExitCode(int(str(ended.get("exit_code"))))
    except ValueError:
        return None
    reason = " ".join(inert(str(ended.get("reason", ""))).split())
    if len(reason) > _REASON_MAX:
        reason = reason[: _REASON_MAX - 3] + "..."
    why = why_no_retry(int(code), reason)
    if code is ExitCode.OK or why is None:
        return None
    return code, (
        f"not retried: the previous attempt of this task ended with exit {int(code)} "
        f"{code.name.lower()}: {reason}; exitpolicy: {why}"
    )


def record_verdict(
    log: logging.Logger,
    store: BlobStore,
    layout: Layout,
    ledger: Ledger,
    code: ExitCode,
    reason: str,
    result: RunResult | None,
    frames_stored: int,
) -> None:
    """Leave the attempt's verdict in its ledger when no retry fixes it (one Put Blob, after
    the logs and summary; nothing otherwise). A failure only costs the retry a render."""
    ended = verdict_record(code, reason, result, frames_stored)
    if ended is None or ledger.ended == ended:
        return
    ledger.ended = ended
    try:
        write_ledger(store, layout.container, layout.log(LEDGER_NAME), ledger)
    except NodeAgentError as e:
        log.warning("verdict not written to the ledger (a retry renders again): %s", e)


def open_reader(
    storage: Storage,
    redactor: Redactor,
    env: Mapping[str, str],
    container: str,
    retry: RetryPolicy,
) -> tuple[Reader, BlobStore | None]:
    """How this task reads its ledger and output folder before the renderer starts: the
    lean REST path when the credentials give a container SAS without the SDK (key, SAS,
    connection string, emulator: storage.credentials.container_sas), else the SDK's
    BlobStore, returned too so the uploader uses the one already made."""
    from node_agent.storage.credentials import Credentials

    creds = Credentials(storage, redactor, env)
    if storage.auth.env:
        creds.secret()  # a named variable must be set, whatever the kind (as the SDK's)
    sas = creds.container_sas(container)
    if sas is None:  # managed identity: only the SDK authenticates
        from node_agent.storage import BlobStore

        store = BlobStore(storage, redactor, env, retry=retry)
        return SdkReader(store, container, retry), store
    from node_agent.storage.rest import RestClient

    client = RestClient(storage.account_url, container, sas, retry, connections=1)
    return RestReader(client, storage), None


def narrow(
    log: logging.Logger,
    reader: Reader,
    render: Render,
    ctx: CommandContext,
    launch: Launch,
    launch_env: Mapping[str, str],
    layout: Layout,
    fresh: Ledger,
) -> Narrowed:
    """The task's launch for the frames not yet in storage (the earlier ledger read, the
    output folder listed once), and the frames skipped, whose ledger entries `fresh` keeps
    (a third run still skips them). Nothing left: the launch expects no frame. An earlier
    attempt of this same task (job, task id, spec) that ended with a cause no retry fixes:
    `not_retried`, nothing listed, the renderer not started."""
    ledger = reader.ledger(layout.log(LEDGER_NAME))
    if ledger is not None and ledger.ended is not None and ledger.same_task(fresh):
        stop = not_retried(ledger.ended)
        if stop is not None:
            fresh.frames, fresh.ended = dict(ledger.frames), ledger.ended
            return Narrowed(replace(launch, expected={}), not_retried=stop)
    stored = reader.stored(layout.output_root) if ledger else []
    p = plan(
        ctx.frames,
        launch.expected,
        stored,
        ledger,
        layout,
        fresh,
        get_renderer(render.renderer),
        template=bool(render.command),
    )
    if p.note:
        log.info("re-run: %s", p.note)
    if ledger is not None:
        for s in p.skipped.values():
            fresh.frames[s.blob] = ledger.frames[s.blob]
    if p.skipped and p.render:
        return Narrowed(build_launch(render, replace(ctx, frames=p.render), launch_env), p.skipped)
    if p.skipped:
        return Narrowed(replace(launch, expected={}), p.skipped)
    return Narrowed(launch)
