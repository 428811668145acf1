"""Exit codes: every code is in the enum and in the README table, each error class carries
its own, the edge turns an interrupt into 130 and a bug into 1."""

from __future__ import annotations

import ast
import re

import pytest
from helpers import REPO

from node_agent import errors
from node_agent.errors import ExitCode, NodeAgentError
from node_agent.redact import Redactor
from node_agent.runtime import run_edge


def test_every_exit_code_is_in_the_readme_table() -> None:
    table = dict(re.findall(r"^\| (\d+) \| (\w+) \|", (REPO / "README.md").read_text(), re.M))
    assert {int(k): v for k, v in table.items()} == {c.value: c.name.lower() for c in ExitCode}


def test_each_error_class_carries_a_code_of_the_enum() -> None:
    classes = [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, NodeAgentError) and c is not NodeAgentError
    ]
    assert len(classes) >= 12
    for cls in classes:
        assert isinstance(cls.exit_code, ExitCode), cls
        assert cls.exit_code is not ExitCode.FAILED, f"{cls.__name__}: 1 is kept for bugs"


def test_no_call_site_overrides_an_error_class_code() -> None:
    """`SomeError(msg, ExitCode.X)` hides the code from the class: use the class that has it."""
    offenders = []
    for path in (REPO / "node_agent").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id.endswith("Error")
                and any(
                    isinstance(a, ast.Attribute)
                    and isinstance(a.value, ast.Name)
                    and a.value.id == "ExitCode"
                    for a in [*node.args, *(k.value for k in node.keywords)]
                )
            ):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
        (errors.BatchServiceError("Batch: add pool: HTTP 409 PoolExists"), ExitCode.BATCH),
        (errors.UsageError("--frames: '1-'"), ExitCode.USAGE),
        (RuntimeError("a bug"), ExitCode.FAILED),
    ],
)
def test_the_edge_turns_each_into_its_code(
    exc: BaseException, code: ExitCode, capsys: pytest.CaptureFixture[str]
) -> None:
    def body(_: Redactor) -> int:
        raise exc

    assert run_edge(body) == int(code)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_every_exit_code_a_node_can_give_has_a_batch_policy() -> None:
    """A new exit code must say whether Batch retries it or it ends the task or the job
    (exitpolicy.POLICY, which makes the exitConditions and the docs table)."""
    from node_agent.exitpolicy import BY_CODE

    not_on_a_node = {
        ExitCode.OK,
        ExitCode.BATCH,  # batch submit, on the workstation
        ExitCode.PACKAGE,  # batch package, on the workstation
        ExitCode.INTERRUPTED,
        ExitCode.BROKEN_PIPE,
    }
    assert {int(c) for c in ExitCode if c not in not_on_a_node} == set(BY_CODE)
