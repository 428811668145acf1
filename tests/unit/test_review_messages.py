"""A value a validator echoes stays on its line: a job id (or any field) holding a newline
cannot forge a second `node-agent: error:` / log line."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from node_agent.spec import JobSpec
from node_agent.specfile import format_validation_error


def _doc(job_id: str) -> dict:
    return {
        "job_id": job_id,
        "storage": {
            "account_url": "http://127.0.0.1:10000/devstoreaccount1",
            "auth": {"kind": "emulator"},
        },
        "assets": [{"name": "scene", "container": "assets", "prefix": "proj/"}],
        "render": {"renderer": "blender", "scene": "spin.blend", "frames": "1-2"},
    }


@pytest.mark.parametrize("job_id", ["job\nnode-agent: error: forged", "job\rINFO x", "a\x1b[2Jb"])
def test_an_echoed_value_with_control_characters_stays_on_one_line(job_id: str) -> None:
    with pytest.raises(ValidationError) as e:
        JobSpec.model_validate(_doc(job_id))
    msg = format_validation_error("job.json", e.value)
    assert msg.count("\n") == 0, msg
    assert "\r" not in msg and "\x1b" not in msg
    assert msg.startswith("job.json: job_id: 'job") or msg.startswith("job.json: job_id: 'a")
