"""The job client's pure parts: the job-state model, Batch REST documents read as it, the
requeue body, one-line task states and the HTML report's escaping."""

from __future__ import annotations

import re

from node_agent.batch.submit import SubmitOptions
from node_agent.errors import ExitCode
from node_agent.jobclient.actions import is_failed, requeue_body
from node_agent.jobclient.batchrest import BatchBackend
from node_agent.jobclient.model import JobView, Span, TaskView
from node_agent.jobclient.report import render_html
from node_agent.jobclient.taskfiles import task_frames
from node_agent.jobclient.watch import task_line


def _backend() -> BatchBackend:
    return BatchBackend(SubmitOptions(endpoint="https://a.eastus.batch.azure.com"), "j1")


def test_frames_come_from_the_command_line() -> None:
    cmd = "/bin/bash -c '\"$NODE_AGENT_HOME/bin/node-agent\" render --frames 5-6'"
    assert task_frames({"commandLine": cmd}) == [5, 6]
    assert task_frames({"commandLine": "render --frames 1,3,10-12"}) == [1, 3, 10, 11, 12]
    assert task_frames({"commandLine": "echo"}) == []


def test_result_is_the_first_failed_task_or_the_backends_own() -> None:
    done = TaskView("a", [1], state="done")
    bad = TaskView("b", [2], state="failed", exit_code=13)
    assert JobView("j", [done], []).result() == 0
    assert JobView("j", [done, bad], []).result() == 13
    assert JobView("j", [done, TaskView("c", [3])], []).result() == int(ExitCode.FAILED)
    assert JobView("j", [done], [], result_code=12).result() == 12


def test_a_job_terminated_before_its_tasks_ran_is_not_ok() -> None:
    job = {"state": "completed", "executionInfo": {"terminateReason": "UserTerminate"}}
    tasks = [{"id": "frames-00001-00001", "state": "active", "commandLine": "render --frames 1"}]
    view = _backend().view(job, tasks, [], [])
    assert view.finished and view.ended_reason == "UserTerminate"
    assert view.result() == int(ExitCode.FAILED)
    assert view.tasks[0].state == "queued"


def test_batch_task_states_and_failures() -> None:
    info = {
        "exitCode": 12,
        "result": "failure",
        "retryCount": 0,
        "startTime": "2026-01-01T00:00:00Z",
    }
    tasks = [
        {"id": "t1", "state": "completed", "executionInfo": info, "nodeInfo": {"nodeId": "n1"}},
        {"id": "t2", "state": "preparing", "nodeInfo": {"nodeId": "n2"}},
    ]
    view = _backend().view({"state": "active"}, tasks, [], [])
    t1, t2 = view.tasks
    assert (t1.state, t1.attempts, t1.exit_name, t1.reason) == (
        "failed",
        1,
        "missing_asset",
        "exit 12 missing_asset",
    )
    assert t1.stderr == "https://a.eastus.batch.azure.com/jobs/j1/tasks/t1/files/stderr.txt"
    assert t2.state == "preparing" and not view.finished
    assert view.spans == [Span("n1", "task", "t1", 1767225600.0, None, 12, 0)]


def test_job_prep_failure_per_node() -> None:
    preps = [
        {
            "nodeId": "n1",
            "jobPreparationTaskExecutionInfo": {
                "state": "completed",
                "exitCode": 2,
                "result": "failure",
                "failureInfo": {"message": "The task process exited with an unexpected exit code"},
            },
        },
        {"nodeId": "n2", "jobPreparationTaskExecutionInfo": {"state": "running"}},
    ]
    view = _backend().view({"state": "active"}, [], preps, [])
    n1, n2 = view.nodes
    assert (n1.prep, n1.prep_exit) == ("failed", 2) and "unexpected exit code" in n1.prep_reason
    assert n2.prep == "running"


def test_requeue_body_keeps_the_frames_and_drops_what_batch_filled_in() -> None:
    task = {
        "id": "frames-00005-00006",
        "url": "https://x/jobs/j/tasks/frames-00005-00006",
        "state": "completed",
        "commandLine": "render --frames 5-6",
        "exitConditions": {"default": {"jobAction": "none"}},
        "constraints": {
            "maxWallClockTime": "P10675199DT2H48M5.4775807S",
            "retentionTime": "P7D",
            "maxTaskRetryCount": 2,
        },
        "executionInfo": {"exitCode": 10, "result": "failure"},
    }
    assert is_failed(task)
    body = requeue_body(task, "frames-00005-00006-rq1")
    assert body == {
        "id": "frames-00005-00006-rq1",
        "commandLine": "render --frames 5-6",
        "exitConditions": {"default": {"jobAction": "none"}},
        "constraints": {"maxTaskRetryCount": 2},
    }
    assert not is_failed({**task, "executionInfo": {"exitCode": 0, "result": "success"}})


def test_task_line_names_reason_exit_and_logs() -> None:
    t = TaskView(
        "t3",
        [5, 6],
        state="failed",
        node="n1",
        attempts=2,
        exit_code=13,
        reason="renderer ran out of memory",
        stderr="/x/stderr.txt",
        renderer_log="/x/renderer.log",
    )
    assert task_line(t) == (
        "task t3 (frames 5-6) FAILED on n1 after 2 attempt(s): exit 13 out_of_memory: "
        "renderer ran out of memory [/x/stderr.txt, /x/renderer.log]"
    )


def test_report_escapes_what_it_shows_and_fetches_nothing() -> None:
    t = TaskView("t<1>", [1], state="failed", exit_code=10, reason="<script>alert(1)</script>")
    t.log_tail = ["<img src=http://evil/x>"]
    view = JobView("j&1", [t], [], frames_total=1)
    page = render_html(view, {})
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "&lt;img src=http://evil/x&gt;" in page
    assert re.findall(r"<img[^>]*\bsrc=", page) == []  # no image without a data: URI here
    assert "<link" not in page and "@import" not in page
    assert 'data-frame="1" data-missing="1"' in page
