"""A registered renderer as the node sees it: the start task's facts, health checks and the doctor run its program."""

from __future__ import annotations

import logging
from pathlib import Path

from helpers import node_env
from helpers.toy import fake_program

from node_agent import health, renderers
from node_agent.batchenv import BatchNode
from node_agent.ops import doctor
from node_agent.phases import start_task
from node_agent.poolconfig import NodeConfig, RendererCheck
from node_agent.redact import Redactor
from node_agent.runtime import Phase


def test_the_start_task_health_checks_and_doctor_see_its_program(
    toy: renderers.Renderer, tmp_path: Path
) -> None:
    exe = fake_program(tmp_path / "bin")
    env = {**node_env(tmp_path / "node"), "PATH": str(exe.parent)}
    config = tmp_path / "pool.yaml"
    config.write_text("renderers: [toyrender]\n")
    node = BatchNode.from_env(env)
    phase = Phase("start-task", node, Redactor(), logging.getLogger("test_registry"), env)
    assert start_task.run(phase, config) == 0
    facts = start_task.node_facts(phase)
    assert facts["renderers"] == {"toyrender": str(exe)}
    [check] = [c for c in health.run_checks(node, NodeConfig(renderers=[toy.name]), env, [])
               if c.name == "renderer-toyrender"]  # fmt: skip
    assert check.ok and check.detail == f"{exe}: Toy Render 1.0 ['--about']"
    missing = health.check_renderer(RendererCheck(name="toyrender"), {"PATH": "/nonexistent"})
    assert not missing.ok and "'toyrender' is not on PATH" in missing.detail

    checks, _ = doctor.run_checks(node, env, Redactor(), spec_path=None)
    [found] = [c for c in checks if c.name == "renderers"]
    assert found.detail == f"toyrender ({exe}) (no job spec on this node)"
