"""Everything the tests share, in one package (conftest.py holds only fixtures).

- `cli`: the two ways to run node-agent: `run_cli` in-process (unit tests) and
  `run_agent`/`start_agent` as a `python -m node_agent` subprocess (integration tests).
- `node`: a local Batch node's environment, job specs, blob uploads, mount clean-up.
- `sync`: seeding blobs and reading job prep's results.
- `mounts`: storage mounts and rclone daemons a test left behind; an Azure Files mount.
- `secrets`: an Azurite SAS and every form of it a log must not hold.
- `preflight`: a spec's render section and what the dependency scan finds missing.
- `pool`: a local-pool job and the stand-in renderer that records its frames.
- `task`: a render task on a local node (`node-agent render` as Batch runs it).
- `proxy` (import it from helpers.proxy): a proxy in front of Azurite that records, delays
  or fails storage requests; `throttle` (helpers.throttle): one that throttles like a busy
  account. Both speak Azure Storage through bench/storage_wire.py, the one home it shares
  with the benchmark's proxy (bench/ is put on sys.path below for it).
- `toy` (helpers.toy): a renderer registered for one test (the `toy` fixture).

tests/unit is pure (tests/unit/conftest.py fails a test that starts a process);
tests/integration uses Azurite, Blender, rclone and processes. `make test-unit` runs the
first, `make test` both.
"""

import sys
from pathlib import Path

from helpers.cli import CliResult, agent_cmd, run_agent, run_cli, run_local_pool, start_agent
from helpers.mounts import (
    cleanup_mounts,
    files_mount,
    mount_table_under,
    mounts_under,
    rclone_daemons_under,
)
from helpers.node import (
    REPO,
    STANDINS,
    agent_dir,
    make_spec_doc,
    node_env,
    unmount_all_under,
    upload_tree,
)
from helpers.pool import pool_job_doc, pool_stand_in, stand_in_job_doc, uploaded_job_doc
from helpers.preflight import missing_deps, scene_render, shot_job_doc
from helpers.secrets import SAS_VAR, azurite_sas, sas_sig, secret_forms
from helpers.sync import (
    count_objects,
    digests,
    make_spec,
    node_of,
    run_job_prep,
    seed,
    spec_store,
    start_job_prep,
    summary,
    tree,
    write_spec,
)
from helpers.task import Task, kill_tree, make_task, standin, standin_task

__all__ = [
    "kill_tree",
    "SAS_VAR",
    "azurite_sas",
    "missing_deps",
    "sas_sig",
    "scene_render",
    "secret_forms",
    "shot_job_doc",
    "REPO",
    "STANDINS",
    "CliResult",
    "Task",
    "agent_cmd",
    "agent_dir",
    "cleanup_mounts",
    "count_objects",
    "digests",
    "files_mount",
    "make_spec",
    "make_spec_doc",
    "make_task",
    "mount_table_under",
    "mounts_under",
    "node_env",
    "node_of",
    "pool_job_doc",
    "pool_stand_in",
    "rclone_daemons_under",
    "run_agent",
    "run_cli",
    "run_job_prep",
    "run_local_pool",
    "stand_in_job_doc",
    "seed",
    "spec_store",
    "standin",
    "standin_task",
    "start_agent",
    "start_job_prep",
    "summary",
    "tree",
    "unmount_all_under",
    "upload_tree",
    "uploaded_job_doc",
    "write_spec",
]

_BENCH = str(Path(__file__).resolve().parents[2] / "bench")
if _BENCH not in sys.path:
    sys.path.append(_BENCH)  # bench/storage_wire.py, for helpers.proxy and helpers.throttle
