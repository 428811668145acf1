"""`node-agent job report`: one self-contained HTML page of a job (no server, no CDN, no
script): a contact sheet of the frames (thumbnails inline as data: URIs), per-task rows
(node, times, exit, log tail), a per-node timeline of start task / job prep / tasks / job
release, bytes synced and uploaded."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from node_agent.jobclient.model import JobView, Span, TaskView
from node_agent.jobclient.outputs import JobBlobs
from node_agent.jobclient.watch import result_line
from node_agent.outputs import thumbnail
from node_agent.runtime import write_atomic

if TYPE_CHECKING:
    from node_agent.jobclient.watch import Backend as _Backend

THUMB_PX = 192
MAX_THUMBS = 400  # frames beyond this are shown by their task's $TaskPreview only
THUMB_SOURCE_MAX = 64 * 2**20  # a bigger frame is not fetched for a thumbnail: its preview is

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d232a;background:#f6f7f9}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.result{font-weight:600;padding:6px 10px;border-radius:6px;display:inline-block}
.ok{background:#d8f3dc;color:#1b4332}.bad{background:#ffd6d6;color:#7a0b0b}
.facts{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:12px 0}
.facts dt{color:#5a6470}.facts dd{margin:0}
.sheet{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;background:#fff;border:1px solid #d9dde3;border-radius:6px;padding:4px}
figure img{display:block;max-width:192px;max-height:192px}
figure.missing{width:192px;height:108px;display:flex;align-items:center;justify-content:center;
 color:#9a1b1b;background:#fff1f1}
figcaption{font-size:12px;color:#5a6470;text-align:center}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{border:1px solid #d9dde3;padding:4px 6px;text-align:left;vertical-align:top;font-size:13px}
tr.failed td{background:#fff1f1} tr.done td.state{color:#1b6b35} tr.failed td.state{color:#9a1b1b}
pre{margin:0;font-size:11px;white-space:pre-wrap;max-height:9em;overflow:auto;color:#39424c}
.timeline{background:#fff;border:1px solid #d9dde3;border-radius:6px;padding:8px}
.lane{position:relative;height:26px;margin:4px 0 4px 170px}
.lane .label{position:absolute;left:-170px;width:160px;font-size:12px;top:5px;overflow:hidden}
.span{position:absolute;top:2px;height:22px;border-radius:3px;min-width:2px;font-size:11px;
 color:#fff;overflow:hidden;white-space:nowrap;padding:0 2px;box-sizing:border-box}
.k-starttask{background:#7d8597}.k-jobpreparation{background:#3a86ff}
.k-task{background:#2a9d8f}.k-jobrelease{background:#8338ec}.fail{background:#d62828!important}
.legend span{display:inline-block;padding:1px 6px;margin-right:6px;color:#fff;border-radius:3px}
.note{color:#5a6470;font-size:12px}
"""


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _when(t: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else ""


def _mb(n: int | None) -> str:
    return "unknown" if n is None else f"{n / 1e6:.2f} MB"


def thumbnails(view: JobView, blobs: JobBlobs | None) -> dict[int, str]:
    """Frame number -> data URI: each frame downscaled (Pillow, as the render task makes its
    preview), else its task's $TaskPreview when the frame cannot be read (EXR)."""
    if blobs is None:
        return {}
    listing = blobs.listing()
    frames = blobs.frames(listing)
    previews = blobs.previews(listing)
    by_task = {n: t.id for t in view.tasks for n in t.frames}
    out: dict[int, str] = {}
    preview_cache: dict[str, str | None] = {}
    for f in sorted(frames.values(), key=lambda f: (f.number or 0, f.name))[:MAX_THUMBS]:
        if f.number is None:
            continue
        small = None
        if f.blob.size <= THUMB_SOURCE_MAX:
            data = blobs.read(f.blob.name)
            small = thumbnail(lambda d=data: io.BytesIO(d), THUMB_PX)  # type: ignore[misc]
        if small is None:
            task = f.task or by_task.get(f.number, "")
            if task not in preview_cache:
                p = previews.get(task)
                ok = p is not None and p.size <= THUMB_SOURCE_MAX // 16  # a preview is small
                preview_cache[task] = _png_uri(blobs.read(p.name)) if p and ok else None
            uri = preview_cache[task]
            if uri:
                out[f.number] = uri
            continue
        out[f.number] = _png_uri(small)
    return out


def _timeline(spans: list[Span]) -> str:
    known = [s for s in spans if s.start is not None]
    if not known:
        return '<p class="note">no times recorded</p>'
    t0 = min(s.start or 0 for s in known)
    t1 = max((s.end or s.start or 0) for s in known)
    width = max(t1 - t0, 1e-3)
    lanes: dict[str, list[Span]] = {}
    for s in known:
        lanes.setdefault(s.node, []).append(s)
    rows = []
    for node in sorted(lanes):
        bars = []
        for s in lanes[node]:
            left = 100 * ((s.start or t0) - t0) / width
            w = 100 * (((s.end or t1) - (s.start or t0)) / width)
            fail = " fail" if s.exit_code else ""
            label = s.name if s.kind == "task" else s.kind
            title = f"{s.kind} {s.name} attempt {s.attempt}: {_when(s.start)}-{_when(s.end)}"
            title += f", exit {s.exit_code}" if s.exit_code is not None else ""
            bars.append(
                f'<div class="span k-{escape(s.kind)}{fail}" data-kind="{escape(s.kind)}" '
                f'data-name="{escape(s.name)}" title="{escape(title)}" '
                f'style="left:{left:.3f}%;width:{max(w, 0.2):.3f}%">{escape(label)}</div>'
            )
        rows.append(
            f'<div class="lane" data-node="{escape(node)}"><div class="label">{escape(node)}</div>'
            + "".join(bars)
            + "</div>"
        )
    approx = any(s.approximate for s in known)
    note = (
        '<p class="note">times are approximate (derived from file times and durations)</p>'
        if approx
        else ""
    )
    legend = (
        '<p class="legend"><span class="k-starttask">start task</span>'
        '<span class="k-jobpreparation">job prep</span><span class="k-task">task</span>'
        '<span class="k-jobrelease">job release</span><span class="fail">failed</span>'
        f" {width:.1f} s from {_when(t0)}</p>"
    )
    return f'<div class="timeline">{legend}{"".join(rows)}{note}</div>'


def _task_row(t: TaskView) -> str:
    dur = f"{t.end - t.start:.1f}s" if t.start and t.end else ""
    logs = " ".join(
        f'<a href="{escape(u if "://" in u else Path(u).as_uri())}">{escape(Path(u).name)}</a>'
        for u in (t.stderr, t.renderer_log)
        if u
    )
    frames = f"{min(t.frames)}-{max(t.frames)}" if t.frames else ""
    exit_ = f"{t.exit_code} {t.exit_name}" if t.exit_code is not None else ""
    tail = "\n".join(t.log_tail)
    return (
        f'<tr class="task {t.state}" data-task="{escape(t.id)}" data-state="{t.state}">'
        f"<td>{escape(t.id)}</td><td>{frames}</td><td class='state'>{t.state}</td>"
        f"<td>{escape(t.node)}</td><td>{t.attempts}</td><td>{_when(t.start)}</td>"
        f"<td>{_when(t.end)}</td><td>{dur}</td><td>{escape(exit_)}</td>"
        f"<td>{escape(t.reason)}</td><td>{logs}<pre>{escape(tail)}</pre></td></tr>"
    )


def render_html(view: JobView, thumbs: dict[int, str], outputs_url: str = "") -> str:
    code = view.result()
    c = view.counts()
    by_frame = {n: t for t in view.tasks for n in t.frames}
    figs = []
    for n in sorted(by_frame):
        t = by_frame[n]
        if n in thumbs:
            figs.append(
                f'<figure data-frame="{n}"><img class="thumb" alt="frame {n}" '
                f'src="{thumbs[n]}"><figcaption>frame {n}</figcaption></figure>'
            )
        else:
            figs.append(
                f'<figure class="missing" data-frame="{n}" data-missing="1">frame {n}: '
                f"{escape(t.state)}</figure>"
            )
    facts = [
        ("tasks", ", ".join(f"{v} {k}" for k, v in c.items() if v)),
        ("frames uploaded", f"{len(view.frames_uploaded)} of {view.frames_total}"),
        ("nodes", ", ".join(f"{n.id} (job prep {n.prep})" for n in view.nodes)),
        ("bytes synced", _mb(view.bytes_synced)),
        ("bytes uploaded", _mb(view.bytes_uploaded)),
        *([("ended", view.ended_reason)] if view.ended_reason else []),
        *([("outputs", outputs_url)] if outputs_url else []),
        ("report made", time.strftime("%Y-%m-%d %H:%M:%S")),
    ]
    rows = "".join(_task_row(t) for t in view.tasks)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>node-agent job {escape(view.job_id)}</title><style>{_CSS}</style></head>
<body>
<h1>Job {escape(view.job_id)}</h1>
<div id="result" class="result {"ok" if code == 0 else "bad"}" data-code="{code}">{escape(result_line(view))}</div>
<dl class="facts" id="facts">{"".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)}</dl>
<h2>Frames</h2>
<div class="sheet" id="sheet">{"".join(figs)}</div>
<h2>Timeline</h2>
<div id="timeline">{_timeline(view.spans)}</div>
<h2>Tasks</h2>
<table id="tasks"><thead><tr><th>task</th><th>frames</th><th>state</th><th>node</th><th>tries</th>
<th>start</th><th>end</th><th>time</th><th>exit</th><th>reason</th><th>logs</th></tr></thead>
<tbody>{rows}</tbody></table>
</body></html>
"""


def write_report(backend: _Backend, out: Path, redact: Callable[[str], str] = str) -> JobView:
    """Look at the job once (backend and storage) and write its page to `out` (through
    `redact`: the command's redactor masks any secret a log tail would show)."""
    from node_agent.jobclient.watch import observe

    view = observe(backend)
    blobs = backend.blobs()
    page = render_html(view, thumbnails(view, blobs), blobs.url("") if blobs else "")
    write_atomic(out, redact(page).encode("utf-8"))
    return view


def end_of_local_run(
    workdir: Path, job_id: str, spec_path: Path | None, say: Callable[[str], None] = print
) -> Path:
    """What `local run` can end with: the job's report beside its run record
    (<workdir>/localpool/report-<job>.html) and one line per failed task with its reason
    and the path of its stderr.txt."""
    from node_agent.jobclient.local import POOL_DIR, LocalBackend
    from node_agent.jobclient.watch import task_line
    from node_agent.redact import Redactor

    out = workdir / POOL_DIR / f"report-{job_id}.html"
    r = Redactor()  # learns the spec's storage secret when its storage is opened
    view = write_report(LocalBackend(workdir, job_id, spec_path, r), out, r)
    for t in view.failed():
        say(r(task_line(t)))
    say(f"report: {out}")
    return out
