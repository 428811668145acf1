"""The two ways a test runs node-agent: in-process (`run_cli`) and as a process (`run_agent`,
`start_agent`, both built on `agent_cmd`), the way Batch runs it."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.node import REPO
from node_agent.cli import main


@dataclass(frozen=True)
class CliResult:
    """What `run_cli` saw: the exit code and everything written to stdout and stderr."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(args: list[str], env: dict[str, str] | None = None) -> CliResult:
    """`node-agent <args>` in this process (no interpreter start-up): for unit tests of the
    command-line edge. `env`, when given, replaces os.environ for the call."""
    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return CliResult(code, out.getvalue(), err.getvalue())


def agent_cmd(*args: str | Path) -> list[str]:
    """The argv of `node-agent <args>` as a subprocess of this interpreter."""
    return [sys.executable, "-m", "node_agent", *(str(a) for a in args)]


def run_agent(
    args: list[str],
    env: dict[str, str] | None = None,
    *,
    timeout: float = 600,
    cwd: Path | str = REPO,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `node-agent <args>` to the end as a process (repo as cwd), capturing text output."""
    return subprocess.run(
        agent_cmd(*args),
        env=env,
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_agent(
    args: list[str], env: dict[str, str] | None = None, **popen: Any
) -> subprocess.Popen[Any]:
    """Start `node-agent <args>` as a process (repo as cwd unless given); popen options
    (stdout, stderr, text, start_new_session...) pass through."""
    popen.setdefault("cwd", REPO)
    return subprocess.Popen(agent_cmd(*args), env=env, **popen)


def run_local_pool(
    spec: Path, workdir: Path, nodes: int = 2, slots: int = 1, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`node-agent local run` of `spec` on a local pool of `nodes` x `slots` in `workdir`."""
    args = ["local", "run", str(spec), "--nodes", str(nodes), "--slots", str(slots)]
    return run_agent([*args, "--workdir", str(workdir), *extra])
