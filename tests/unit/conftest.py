"""Unit tests are pure: no Azurite, no renderer, no child process. Starting one fails the
test (put such a test under tests/integration)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _no_subprocess(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a unit test started a process: {args[1:2]}")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    yield
