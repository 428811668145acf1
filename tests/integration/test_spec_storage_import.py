"""`storage` can be validated, and the sync's access typed, without the whole job model
(issue 16: start-up; `node-agent sync` validates its options with spec_storage.Storage)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imported_after(stmt: str) -> str:
    code = f"import sys\n{stmt}\nprint('node_agent.spec' in sys.modules)\n"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_sync_access_does_not_import_the_job_spec() -> None:
    assert _imported_after("import node_agent.sync.access") == "False"


def test_storage_section_validates_without_the_job_spec() -> None:
    stmt = (
        "from node_agent.spec_storage import Storage\n"
        "Storage.model_validate({'account_url': 'http://127.0.0.1:10000/devstoreaccount1',"
        " 'auth': {'kind': 'emulator'}})"
    )
    assert _imported_after(stmt) == "False"
