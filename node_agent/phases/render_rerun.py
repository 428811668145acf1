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
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from node_agent.frames import format_frames
from node_agent.output_record import LEDGER_NAME, Ledger, Stored, list_stored, read_ledger
from node_agent.renderers import CommandContext, Launch, build_launch
from node_agent.renderers import get as get_renderer

if TYPE_CHECKING:
    from node_agent.outputs import Layout
    from node_agent.renderers import Renderer
    from node_agent.spec import Render
    from node_agent.storage import BlobStore
    from node_agent.storage.retry import RetryPolicy


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


def narrow(
    log: logging.Logger,
    store: BlobStore,
    render: Render,
    ctx: CommandContext,
    launch: Launch,
    launch_env: Mapping[str, str],
    layout: Layout,
    fresh: Ledger,
    retry: RetryPolicy,
) -> tuple[Launch, dict[int, Stored]]:
    """The task's launch for the frames not yet in storage (the earlier ledger read, the
    output folder listed once), and the frames skipped, whose ledger entries `fresh` keeps
    (a third run still skips them). Nothing left: the launch expects no frame."""
    ledger = read_ledger(store, layout.container, layout.log(LEDGER_NAME), retry)
    stored = list_stored(store, layout.container, layout.output_root) if ledger else []
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
        return build_launch(render, replace(ctx, frames=p.render), launch_env), p.skipped
    if p.skipped:
        return replace(launch, expected={}), p.skipped
    return launch, {}
