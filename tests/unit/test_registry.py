"""The renderer registry: adding a renderer is one new module plus one registry line.

The test writes a renderer module to a temporary folder (what a new file under
node_agent/renderers/ would hold), registers its descriptor (the registry line), and shows
that every place that varies per renderer reads it: spec validation (names and inline-code
flags), the command line, output classification, the pool config and its health check, the
start task's node facts, the doctor, and the pool's application licenses. Unregistered, the
spec refuses the name again.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from types import ModuleType

import pytest
from helpers import make_spec_doc, node_env

from node_agent import health, renderers
from node_agent.batch.pooljson import BatchPoolSettings, licenses_for, pool_json
from node_agent.batchenv import BatchNode
from node_agent.classify import OutputMonitor
from node_agent.errors import ExitCode, SpecError
from node_agent.ops import doctor
from node_agent.phases import start_task
from node_agent.poolconfig import NodeConfig, RendererCheck
from node_agent.redact import Redactor
from node_agent.renderers import CommandContext, build_launch, find_executable
from node_agent.runtime import Phase
from node_agent.spec import JobSpec, spec_from_data

URL = "https://acct.blob.core.windows.net"

# The whole of a new renderer: what would be node_agent/renderers/toyrender.py.
TOY_MODULE = """
from node_agent.errors import ExitCode
from node_agent.renderers.base import (
    EXTENSIONS, CommandContext, Executables, Launch, ProgressPattern, Renderer,
    expected_frame_name, extra_args,
)


def build(render, ctx: CommandContext, exe: str) -> Launch:
    ext = EXTENSIONS[render.output.format]
    expected = {f: expected_frame_name(render.output.pattern, f, ext) for f in ctx.frames}
    argv = [exe, "--scene", str(ctx.scene), "--out", str(ctx.output_dir)]
    argv += [*extra_args(render, ctx, exe), "--frames", ",".join(map(str, ctx.frames))]
    return Launch(argv, expected)


RENDERER = Renderer(
    name="toyrender",
    build=build,
    executables=Executables("toyrender", "toyrender.exe", "TOYRENDER_", ("--about",)),
    code_flags=frozenset({"--exec"}),
    failure_patterns={ExitCode.LICENSE: (r"toy seat refused",)},
    progress=(ProgressPattern(r"toy progress (?P<percent>\\d+)%"),),
    licenses=("toy",),
    path_remap="none",
)
"""


def _load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("toyrender_renderer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def toy(tmp_path: Path) -> Iterator[renderers.Renderer]:
    source = tmp_path / "toyrender.py"
    source.write_text(textwrap.dedent(TOY_MODULE))
    descriptor = _load_module(source).RENDERER
    renderers.register(descriptor)  # the one registry line
    try:
        yield descriptor
    finally:
        renderers.unregister(descriptor.name)


def _fake_program(folder: Path, name: str = "toyrender") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / name
    exe.write_text(f'#!{sys.executable}\nimport sys\nprint("Toy Render 1.0", sys.argv[1:])\n')
    exe.chmod(0o755)
    return exe


def _toy_spec(**render: object) -> JobSpec:
    doc = make_spec_doc(URL, renderer="toyrender", scene="shot.toy", frames="1-3", **render)
    return spec_from_data(doc)


def test_an_unregistered_name_is_refused_in_one_line_naming_the_field() -> None:
    with pytest.raises(SpecError) as e:
        _toy_spec()
    assert str(e.value) == (
        "job spec: render.renderer: 'toyrender' is not one of: 'blender', 'maya', 'arnold', "
        "'vray', '3dsmax' or 'custom'"
    )
    with pytest.raises(ValueError, match="renderers.0.name"):
        NodeConfig.model_validate({"renderers": ["toyrender"]})


def test_a_registered_renderer_is_accepted_and_its_builder_used(
    toy: renderers.Renderer, tmp_path: Path
) -> None:
    spec = _toy_spec(extra_args=["--quality", "{threads}"])
    assert spec.render.renderer == "toyrender"
    ctx = CommandContext(
        scene=PurePosixPath("/a/shot.toy"),
        frames=[1, 2],
        output_dir=PurePosixPath("/o"),
        assets_dir=PurePosixPath("/a"),
        task_dir=PurePosixPath("/t"),
        job_id="job-a",
        task_id="t1",
    )
    exe = _fake_program(tmp_path / "bin")
    launch = build_launch(spec.render, ctx, {"PATH": str(exe.parent)})
    assert launch.argv == [
        *(str(exe), "--scene", "/a/shot.toy", "--out", "/o"),
        *("--quality", "0", "--frames", "1,2"),
    ]
    assert launch.expected == {1: "frame_0001.png", 2: "frame_0002.png"}
    # the image's TOYRENDER_<version>_EXEC variable wins over PATH, as for the built-ins
    assert find_executable(spec.render, {"TOYRENDER_2_EXEC": "/opt/toy2/toyrender"}) == (
        "/opt/toy2/toyrender"
    )
    # its inline-code flag: a placeholder in the code it runs is refused
    with pytest.raises(SpecError, match="toyrender '--exec' runs would be interpreted"):
        _toy_spec(extra_args=["--exec", "load('{scene}')"])


def test_its_output_patterns_classify_failures_and_progress(toy: renderers.Renderer) -> None:
    seen: list[str] = []
    monitor = OutputMonitor("toyrender", report=seen.append)
    monitor("toy progress 40%")
    monitor("ERROR: toy seat refused by the server")
    assert monitor.percent == 40.0 and seen == ["progress: 40%"]
    finding = monitor.failure()
    assert finding is not None and finding.code == ExitCode.LICENSE


def test_the_start_task_health_checks_and_doctor_see_its_program(
    toy: renderers.Renderer, tmp_path: Path
) -> None:
    exe = _fake_program(tmp_path / "bin")
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


def test_the_pool_asks_for_its_licence(toy: renderers.Renderer) -> None:
    spec = _toy_spec()
    assert licenses_for(spec) == ["toy"]
    assert pool_json(BatchPoolSettings(application_licenses=True), spec)["applicationLicenses"] == [
        "toy"
    ]
    assert NodeConfig.model_validate({"application_licenses": ["toy"]}).application_licenses == [
        "toy"
    ]


def test_unregistered_again_the_name_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "toyrender.py"
    source.write_text(textwrap.dedent(TOY_MODULE))
    descriptor = _load_module(source).RENDERER
    renderers.register(descriptor)
    assert _toy_spec().render.renderer == "toyrender"
    with pytest.raises(ValueError, match="already registered"):
        renderers.register(descriptor)
    renderers.unregister("toyrender")
    with pytest.raises(SpecError, match="render.renderer: 'toyrender' is not one of"):
        _toy_spec()
    with pytest.raises(ValueError, match="application_licenses.0"):
        NodeConfig.model_validate({"application_licenses": ["toy"]})
    assert "toyrender" not in renderers.renderer_binaries()


def test_the_registry_holds_what_the_scattered_tables_held() -> None:
    """The facts that lived in base.EXECUTABLES, health.RENDERERS, spec's code flags,
    pooljson.LICENSED_RENDERERS and the RENDERER_BINARIES of doctor and the start task."""
    assert renderers.names() == ("blender", "maya", "arnold", "vray", "3dsmax", "custom")
    assert renderers.renderer_binaries() == ("blender", "Render", "kick", "vray", "3dsmaxcmdio")
    assert renderers.license_names() == ("maya", "arnold", "vray", "3dsmax")
    exe = {n: r.executables for n, r in renderers.REGISTRY.items()}
    assert exe["3dsmax"] == renderers.Executables(
        "3dsmaxcmdio", "3dsmaxcmdio.exe", "3DSMAX_", ("-?",)
    )
    assert exe["custom"] is None
    maya = renderers.REGISTRY["maya"]
    assert maya.licenses == ("maya", "arnold") and "-prerender" in maya.code_flags
    scanned = {n for n, r in renderers.REGISTRY.items() if r.scan_dependencies}
    assert scanned == {"blender", "maya", "arnold"}
