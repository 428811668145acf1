"""Job release: remove the job's per-job files; the shared cache stays."""

from __future__ import annotations

import shutil

from node_agent.runtime import Phase


def run(phase: Phase) -> int:
    job_dir = phase.node.job_dir()
    if job_dir.exists():
        shutil.rmtree(job_dir, ignore_errors=True)
        phase.log.info("removed %s", job_dir)
    else:
        phase.log.info("nothing to remove for job %s", phase.node.job_id)
    return 0
