"""Start-up cost: `node-agent --version`, `--help` and `import node_agent.cli` load no heavy
library (pydantic, the Azure SDK, urllib3, YAML, importlib.metadata): every Batch task pays
the CLI's start, so a command imports what it needs inside the command (issue 16).

A process of its own per case (tests/unit may not start processes): sys.modules of this
test process already holds everything."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers.node import REPO

HEAVY = ("pydantic", "pydantic_core", "azure", "urllib3", "yaml", "importlib.metadata")

_PROBE = """
import json, sys
from node_agent.cli import main
args = json.loads(sys.argv[1])
code = main(args) if args is not None else 0
heavy = sorted({m for m in sys.modules for h in sys.argv[2:] if m == h or m.startswith(h + ".")})
print("HEAVY " + json.dumps(heavy), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize(
    "args", [None, ["--version"], ["--help"]], ids=["import", "version", "help"]
)
def test_cli_start_imports_no_heavy_library(args: list[str] | None) -> None:
    p = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args), *HEAVY],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("HEAVY ")][-1]
    assert json.loads(line[len("HEAVY ") :]) == []
    if args == ["--version"]:
        import node_agent

        assert f"version {node_agent.__version__}" in p.stdout


def test_version_is_the_package_version() -> None:
    """`--version` prints node_agent.__version__ (no importlib.metadata look-up at start): it
    must be the version pyproject.toml builds."""
    import re

    import node_agent

    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    m = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
    assert m is not None
    assert node_agent.__version__ == m.group(1)
