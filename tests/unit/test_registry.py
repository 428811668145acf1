"""The renderer registry: adding a renderer is one new module plus one registry line.

The test writes a renderer module (helpers/toy.py's TOY_MODULE) to a temporary folder (what
a new file under node_agent/renderers/ would hold), registers its descriptor (the registry
line), and shows that every place that varies per renderer reads it: spec validation (names
and inline-code flags), the command line, output classification, the pool config and its
health check, and the pool's application licenses (the start task's node facts and the
doctor run its program: tests/integration/test_registry_node.py). Unregistered, the spec
refuses the name again.
"""

from __future__ import annotations

import textwrap
from pathlib import Path, PurePosixPath

import pytest
from helpers import make_spec_doc
from helpers.toy import TOY_MODULE, fake_program, load_module

from node_agent import renderers
from node_agent.batch.pooljson import BatchPoolSettings, licenses_for, pool_json
from node_agent.classify import OutputMonitor
from node_agent.errors import ExitCode, SpecError
from node_agent.poolconfig import NodeConfig
from node_agent.renderers import CommandContext, build_launch, find_executable
from node_agent.spec import JobSpec, spec_from_data

URL = "https://acct.blob.core.windows.net"


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
    exe = fake_program(tmp_path / "bin")
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


def test_the_pool_asks_for_its_licence(toy: renderers.Renderer) -> None:
    spec = _toy_spec()
    assert licenses_for(spec) == ["toy"]
    account = {"subscription_id": "sub", "resource_group": "rg", "name": "renderbatch"}
    cfg = BatchPoolSettings.model_validate({"application_licenses": True, "batch_account": account})
    assert pool_json(cfg, spec)["applicationLicenses"] == ["toy"]
    assert NodeConfig.model_validate({"application_licenses": ["toy"]}).application_licenses == [
        "toy"
    ]


def test_unregistered_again_the_name_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "toyrender.py"
    source.write_text(textwrap.dedent(TOY_MODULE))
    descriptor = load_module(source).RENDERER
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
