"""A renderer that is not one: "toyrender", written as a new module under
node_agent/renderers/ would be, registered for a test and unregistered after it
(tests/unit/test_registry.py, tests/integration/test_registry_node.py)."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from node_agent import renderers

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


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("toyrender_renderer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_program(folder: Path, name: str = "toyrender") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / name
    exe.write_text(f'#!{sys.executable}\nimport sys\nprint("Toy Render 1.0", sys.argv[1:])\n')
    exe.chmod(0o755)
    return exe


@contextmanager
def registered_toy(folder: Path) -> Iterator[renderers.Renderer]:
    """Write toyrender.py to `folder`, register its descriptor (the one registry line) and
    unregister it on the way out."""
    source = folder / "toyrender.py"
    source.write_text(textwrap.dedent(TOY_MODULE))
    descriptor = load_module(source).RENDERER
    renderers.register(descriptor)
    try:
        yield descriptor
    finally:
        renderers.unregister(descriptor.name)
