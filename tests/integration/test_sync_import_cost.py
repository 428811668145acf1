"""The sync engine's import does not build the spec's pydantic models (issue 16: start-up).

`node_agent.spec` is needed by the engine for types only; importing it costs ~0.1 s of
every command and task that loads the engine without a spec (measured with -X importtime)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_importing_the_sync_engine_leaves_the_spec_models_unbuilt() -> None:
    code = (
        "import sys, node_agent.sync.engine\n"
        "print(sorted(m for m in ('node_agent.spec', 'pydantic') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", f"importing node_agent.sync.engine also imported {out.strip()}"
