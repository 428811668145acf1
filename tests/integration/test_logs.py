"""Phase logs: text or JSON lines on stderr and in the phase's file, every line with its
time, phase, job and task; secrets (a SAS in an exception message) redacted in both."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import make_spec_doc, node_env, run_agent, upload_tree

from node_agent.azurite import AzuriteServer
from node_agent.errors import ExitCode
from node_agent.logs import LOGGER_NAME
from node_agent.redact import Redactor
from node_agent.runtime import run_edge, start_phase
from node_agent.storage import BlobStore

JOB, TASK = "logs-job", "jobpreparation"
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
# what a text line starts with: time, level, then the phase, job and task
TEXT = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR|CRITICAL) *"
    rf"\[phase=job-prep job={JOB} task={TASK}\] "
)
SIG = "Xq3vR8nT2mK9pL4wZ7yB1cD6fG0hJ5sA2eU8iO3kM%3D"
SAS = f"sv=2021-08-06&sr=c&sp=rl&se=2030-01-01T00%3A00%3A00Z&sig={SIG}"


@pytest.fixture
def phase_log_cleanup() -> Iterator[None]:
    """In-process phases configure the node_agent logger: close its handlers afterwards."""
    yield
    logger = logging.getLogger(LOGGER_NAME)
    for h in list(logger.handlers):
        h.close()
    logger.handlers.clear()


def _prep(tmp_path: Path, azurite: AzuriteServer, store: BlobStore, fmt: str) -> tuple[str, Path]:
    """Run job prep with --log-format `fmt`; returns its stderr and its log file."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "spin.blend").write_bytes(b"scene")
    (src / "tex").mkdir()
    (src / "tex" / "wood.png").write_bytes(b"png")
    upload_tree(store, src, "assets", f"logs-{fmt}/")
    doc = make_spec_doc(azurite.account_url)
    doc["job_id"] = JOB
    doc["assets"][0]["prefix"] = f"logs-{fmt}/"
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(doc))
    root = tmp_path / "node"
    res = run_agent(
        ["job-prep", "--spec", str(spec), "--log-format", fmt], node_env(root, JOB), timeout=300
    )
    assert res.returncode == 0, res.stderr
    log_file = root / "shared" / "node_agent" / "logs" / f"job-prep_{JOB}_{TASK}.log"
    assert log_file.is_file(), sorted(p.name for p in log_file.parent.iterdir())
    return res.stderr, log_file


def _json_lines(text: str, where: str) -> list[dict[str, str]]:
    docs = []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            raise AssertionError(f"{where}: not a JSON line: {line!r}") from None
        assert set(doc) == {"ts", "level", "phase", "job", "task", "msg"}, (where, doc)
        assert TS.match(doc["ts"]) and doc["level"] in LEVELS, (where, doc)
        assert (doc["phase"], doc["job"], doc["task"]) == ("job-prep", JOB, TASK), (where, doc)
        docs.append(doc)
    return docs


def test_json_lines_on_stderr_and_in_the_phase_file(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """--log-format json: every stderr line and every line of
    shared/node_agent/logs/job-prep_<job>_<task>.log is one JSON object with the time, level,
    phase, job, task and message."""
    err, log_file = _prep(tmp_path, azurite, store, "json")
    on_stderr = _json_lines(err, "stderr")
    in_file = _json_lines(log_file.read_text(), str(log_file))
    assert any(d["msg"].startswith("syncing 1 asset source") for d in on_stderr)
    assert any(d["msg"].startswith("sync: 2 listed") for d in on_stderr)
    # the file has every line stderr has (and the debug ones)
    assert {d["msg"] for d in on_stderr} <= {d["msg"] for d in in_file}


def test_text_lines_carry_time_phase_job_and_task(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    err, log_file = _prep(tmp_path, azurite, store, "text")
    for where, text in (("stderr", err), (str(log_file), log_file.read_text())):
        lines = text.splitlines()
        assert lines, where
        bad = [ln for ln in lines if not TEXT.match(ln)]
        assert bad == [], f"{where}: lines without time, phase, job and task: {bad}"
    assert "sync: 2 listed" in err


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_an_exception_carrying_a_sas_is_redacted(
    tmp_path: Path, fmt: str, phase_log_cleanup: None, capfd: pytest.CaptureFixture[str]
) -> None:
    """A bug whose exception message holds a storage URL with a SAS: stderr gets one
    redacted line, the phase log the redacted details (the traceback), in both formats;
    in text every line of the log, traceback included, carries time, phase, job and task."""
    env = node_env(tmp_path / "node", JOB)
    log_file = tmp_path / "node" / "shared" / "node_agent" / "logs" / f"job-prep_{JOB}_{TASK}.log"

    def phase(r: Redactor) -> int:
        p = start_phase("job-prep", need_job=True, log_format=fmt, env=env, redactor=r)
        p.log.info("fetching the scene")
        url = f"http://127.0.0.1:10000/devstoreaccount1/assets/spin.blend?{SAS}"
        raise RuntimeError(f"GET {url} failed: the server hung up")

    assert run_edge(phase) == int(ExitCode.FAILED)
    logging.getLogger(LOGGER_NAME).handlers[-1].flush()
    err = capfd.readouterr().err
    text = log_file.read_text()
    for where, data in (("stderr", err), (str(log_file), text)):
        assert SIG not in data and SIG[:20] not in data, f"{where} holds the SAS signature"
    edge = [ln for ln in err.splitlines() if ln.startswith("node-agent:")]
    assert len(edge) == 1 and "RuntimeError: GET" in edge[0] and "sig=***" in edge[0], err
    if fmt == "json":
        docs = _json_lines(text, str(log_file))
        details = [d["msg"] for d in docs if d["level"] == "DEBUG" and "Traceback" in d["msg"]]
        assert details and "sig=***" in details[0] and "RuntimeError: GET" in details[0], text
        _json_lines("\n".join(ln for ln in err.splitlines() if ln not in edge), "stderr")
    else:
        assert "Traceback" in text and "RuntimeError: GET" in text and "sig=***" in text, text
        bad = [ln for ln in text.splitlines() if not TEXT.match(ln)]
        assert bad == [], f"log lines without time, phase, job and task: {bad}"
        bad = [ln for ln in err.splitlines() if ln not in edge and not TEXT.match(ln)]
        assert bad == [], f"stderr lines without time, phase, job and task: {bad}"
