"""Blob names a sync refuses: unsafe, Windows-reserved and colliding names."""

from __future__ import annotations

import pytest

from node_agent.sync.names import NameChecker, name_problem


@pytest.mark.parametrize(
    "name",
    [
        "../evil",
        "a/../../evil",
        "/abs",
        "a//b",
        "a\\b",
        "C:x",
        "c:/x",
        "a/\x00b",
        "./a",
        "a/.",
        "x" * 256,
        "a/" + "é" * 128,
    ],
)
def test_unsafe_names_are_refused(name: str) -> None:
    assert name_problem(name) is not None


def test_windows_names_and_collisions() -> None:
    assert name_problem("tex/CON.png", windows=True) is not None
    assert name_problem("tex/lpt1", windows=True) is not None
    assert name_problem("tex/a:b", windows=True) is not None
    assert name_problem("tex/CON.png") is None  # fine on Linux
    c = NameChecker(case_insensitive=True)
    assert c.check("Tex/A.png") is None
    assert "collides" in str(c.check("tex/a.png"))
    c = NameChecker()
    assert c.check("Tex/A.png") is None and c.check("tex/a.png") is None  # case-sensitive fs
    assert c.check("dir") is None
    assert "also a file" in str(c.check("dir/f"))
    assert c.check("d2/f") is None
    assert "folder" in str(c.check("d2"))
