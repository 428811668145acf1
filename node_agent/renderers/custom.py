"""Renderer 'custom': no built-in adapter; the spec's `render.command` template is the command
line (its first argument, or render.executable, names the program)."""

from __future__ import annotations

from node_agent.renderers.base import Renderer

RENDERER = Renderer(
    name="custom",
    build=None,
    executables=None,
    path_remap="none: the template passes paths itself",
)
