"""The render task's start (issue 16: start -> renderer <= 0.25 s): what runs before the
renderer's process is only what the renderer's command needs.

- The re-run check (render_rerun) reads the ledger over the lean REST path: the storage
  SDK, psutil, watchdog and the mount manager are not loaded when the renderer starts; the
  SDK loads beside it, in the uploader's thread, and the frames are still uploaded.
- The output folder is watched from then on too: a frame written before is uploaded at
  once, not left for the final sweep.
- That path keeps the guarantee of the SDK's: storage refusing the credential ends the task
  with exit 4 before the renderer starts, naming the credential, the SAS never printed.

A process of its own per case, with the CLI's own entry point (`main`): the probe records
which modules are loaded at the moment the renderer is spawned (ProcessGroup.spawn).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from helpers.node import REPO
from helpers.secrets import azurite_sas, sas_sig
from helpers.task import Task, standin_task
from standins._common import png

from node_agent.azurite import AzuriteServer
from node_agent.errors import ExitCode
from node_agent.outputs import Layout
from node_agent.storage import BlobStore
from node_agent.watcher import ProgressiveUploader

# loaded only once the renderer runs (or never, on Linux; the other commands' modules never)
AFTER_START = (
    "azure",
    "psutil",
    "watchdog",
    "yaml",  # never: the spec a node stores for its tasks is JSON (specfile_yaml)
    "node_agent.storage.blob",
    "node_agent.mounts.manager",
    "node_agent.commands.job",
    "node_agent.commands.ops",
    "node_agent.commands.sync",
    "node_agent.commands.mounts",
)

_PROBE = """
import atexit, json, sys
from node_agent import proctree

heavy = sys.argv[1].split(",")
seen = []
spawn = proctree.ProcessGroup.spawn.__func__

def probe(cls, argv, **kw):
    if not seen:  # the first process spawned is the renderer
        seen.append(sorted({m for m in sys.modules for h in heavy if m == h or m.startswith(h + ".")}))
    return spawn(cls, argv, **kw)

proctree.ProcessGroup.spawn = classmethod(probe)
atexit.register(lambda: print("AT-SPAWN " + json.dumps(seen[0] if seen else None), file=sys.stderr))
from node_agent.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _run_probed(t: Task) -> tuple[subprocess.CompletedProcess[str], list[str] | None]:
    p = subprocess.run(
        [sys.executable, "-c", _PROBE, ",".join(AFTER_START), *t.args("1")],
        env=t.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("AT-SPAWN ")][-1]
    return p, json.loads(line[len("AT-SPAWN ") :])


def test_the_renderer_starts_before_the_storage_sdk_loads_and_frames_still_upload(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    # its own task id: Azurite lives for the session, other tests render task-1 of job-a
    t = standin_task(
        tmp_path, azurite.account_url, "envdump.py", "{frame}", frames="1", task="task-start"
    )
    p, at_spawn = _run_probed(t)
    assert p.returncode == 0, p.stderr
    assert at_spawn == [], f"loaded before the renderer started: {at_spawn}"
    s = t.summary()
    assert s["exit_class"] == "ok", s["reason"]
    assert [o["frame"] for o in s["outputs"]] == [1]
    names = {b.name for b in store.list_blobs(t.container, "task-start/$TaskOutput/")}
    assert names == {"task-start/$TaskOutput/frame_0001.png"}


def test_a_refused_credential_ends_the_task_before_the_renderer_starts(
    tmp_path: Path, azurite: AzuriteServer
) -> None:
    t = standin_task(
        tmp_path, azurite.account_url, "envdump.py", "{frame}", frames="1", task="task-refused"
    )
    good = azurite_sas()
    sig = sas_sig(good)
    bad = good.replace(sig, ("A" if sig[0] != "A" else "B") + sig[1:])  # a wrong signature
    t.use_sas(bad)
    p, at_spawn = _run_probed(t)
    assert p.returncode == int(ExitCode.STORAGE), p.stderr
    assert at_spawn is None  # nothing was spawned: the renderer never started
    assert not (t.out_dir.parent / "standin.json").exists()
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("node-agent: error:")]
    assert len(err) == 1 and "access denied" in err[0], p.stderr
    assert "uploaded.json" in err[0] and "storage.auth" in err[0], err[0]
    assert sas_sig(bad) not in p.stderr and "Traceback" not in p.stderr


def test_a_frame_written_before_the_watching_began_is_uploaded_without_waiting_for_the_end(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    out = tmp_path / "out"
    store.ensure_container("early")
    up = ProgressiveUploader(store, Layout("early", "t1"), out, {"job": "j"}, settle_s=0.05)
    up.start(defer_store=True)  # as the render task: nothing watched nor uploaded yet
    (out / "frame_0001.png").write_bytes(png())
    up.begin()  # the renderer started
    deadline = time.monotonic() + 30
    while not up.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [u.rel for u in up.done()] == ["frame_0001.png"]  # before finish()'s sweep
    assert [u.rel for u in up.finish()] == ["frame_0001.png"]
    assert [b.name for b in store.list_blobs("early")] == ["t1/$TaskOutput/frame_0001.png"]
