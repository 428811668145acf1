"""Shared fixtures: a real Azurite per test session, local Batch node environments.
Shared functions live in the `helpers` package (tests/helpers)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, make_spec_doc, unmount_all_under
from helpers.toy import registered_toy

from node_agent import renderers
from node_agent.azurite import AzuriteServer
from node_agent.redact import Redactor
from node_agent.spec import JobSpec, spec_from_data
from node_agent.storage import BlobStore


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteServer]:
    """A blob-only Azurite on a free port, stopped at the end of the session."""
    server = AzuriteServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def spec_doc(azurite: AzuriteServer) -> dict[str, object]:
    return make_spec_doc(azurite.account_url)


@pytest.fixture
def store(azurite: AzuriteServer) -> BlobStore:
    spec: JobSpec = spec_from_data(make_spec_doc(azurite.account_url))
    return BlobStore(spec.storage, Redactor())


@pytest.fixture(scope="session")
def blender_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo scene (spin.blend + textures/), built once per session by real Blender."""
    out = tmp_path_factory.mktemp("scene")
    subprocess.run(
        [
            "blender",
            "-b",
            "--python-exit-code",
            "1",
            "-P",
            str(REPO / "examples" / "make_scene.py"),
            "--",
            str(out),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=300,
    )
    return out


@pytest.fixture(autouse=True)
def _no_mount_left_behind(tmp_path: Path) -> Iterator[None]:
    """Job prep presents a job's view as an overlay mount: whatever a test leaves mounted
    under its tmp_path (a failing test, or one that never runs job release) is unmounted,
    so pytest can remove the folder and no mount outlives the run."""
    yield
    unmount_all_under(tmp_path)


@pytest.fixture
def toy(tmp_path: Path) -> Iterator[renderers.Renderer]:
    """The "toyrender" renderer (helpers/toy.py) registered for one test."""
    with registered_toy(tmp_path) as descriptor:
        yield descriptor
