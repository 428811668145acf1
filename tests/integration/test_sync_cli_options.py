"""`node-agent sync` refuses a bad source or option with one line naming it and the reason
(exit 2, before anything is read or written): the reason is the rule's own words, not
pydantic's "For further information visit https://errors.pydantic.dev/..." line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import run_cli

AZ = "http://127.0.0.1:10000/devstoreaccount1"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["Bad_Cont/x"], "source 'Bad_Cont/x': 'Bad_Cont' is not a valid container name"),
        (["assets/../x"], "source 'assets/../x': '../x' has a '..' component"),
        (["assets/x", "--manifest", "zz"], "source 'assets/x': 'zz' is not a manifest hash"),
        (
            ["assets/x", "--auth", "sas"],
            "options: auth: auth kind 'sas' needs 'env': the variable holding the secret",
        ),
    ],
)
def test_a_bad_source_or_option_is_one_line_with_its_reason(
    tmp_path: Path, args: list[str], line: str
) -> None:
    r = run_cli(["sync", *args, str(tmp_path / "dest"), "--account-url", AZ])
    assert r.returncode == 2, r.stderr
    assert f"node-agent: error: {line}" in r.stderr
    assert "pydantic" not in r.stderr
    assert not (tmp_path / "dest").exists()
