"""The rules of a TD's command template (`render.command`, `render.extra_args`): which
placeholders exist (what CommandContext.values fills) and where a placeholder would be run as
code instead of passed as an argument. The job spec applies them when it validates."""

from __future__ import annotations

import re
import string

from node_agent.renderers import REGISTRY

PLACEHOLDERS = frozenset(
    {
        "scene",
        "frame",
        "frames",
        "start",
        "end",
        "step",
        "output_dir",
        "output_prefix",
        "output_pattern",
        "output_format",
        "assets_dir",
        "task_dir",
        "threads",
        "job_id",
        "task_id",
        "executable",
    }
)

# Programs whose inline-code argument (`sh -c CODE`) would interpret a placeholder's value
# as code, and the flags that introduce such code.
_INTERPRETERS = re.compile(
    r"^(?:sh|bash|dash|zsh|ksh|fish|cmd|powershell|pwsh|python[0-9.]*|perl|ruby|node|mayapy)$"
)
_INLINE_CODE_FLAGS = frozenset({"-c", "/c", "/k", "-command", "--command", "-e", "--eval"})


def _code_flag_with_placeholder(args: list[str], flags: frozenset[str]) -> str | None:
    """The first flag in `flags` whose next argument (code) holds a placeholder."""
    for flag, arg in zip(args[:-1], args[1:], strict=True):
        if flag.lower() in flags and any(n for _, n, _, _ in string.Formatter().parse(arg)):
            return flag
    return None


def check_no_code_placeholder(argv: list[str]) -> None:
    program = re.split(r"[\\/]", argv[0])[-1].lower().removesuffix(".exe")
    if not _INTERPRETERS.match(program):
        return
    flag = _code_flag_with_placeholder(argv[1:], _INLINE_CODE_FLAGS)
    if flag is not None:
        raise ValueError(
            f"a placeholder in the code that '{program} {flag}' runs would be "
            "interpreted, not passed: put placeholders in their own arguments after "
            "the code (sys.argv / $1)"
        )


def check_placeholders(args: list[str]) -> None:
    """Only known placeholders, each without format spec or conversion."""
    for arg in args:
        for _, name, spec, conv in string.Formatter().parse(arg):
            if name is None:
                continue
            if name not in PLACEHOLDERS:
                raise ValueError(
                    f"unknown placeholder '{{{name}}}' (known: {', '.join(sorted(PLACEHOLDERS))})"
                )
            if spec or conv:
                raise ValueError(f"placeholder '{{{name}}}' takes no format spec or conversion")


def check_no_renderer_code_placeholder(renderer: str, args: list[str]) -> None:
    """A built-in renderer's flags whose next argument is code it runs (Blender Python, Maya
    MEL; the registry's `code_flags`): a placeholder there would be interpreted, as in `sh -c`."""
    descriptor = REGISTRY.get(renderer)
    flags = descriptor.code_flags if descriptor else frozenset()
    flag = _code_flag_with_placeholder(args, flags)
    if flag is not None:
        raise ValueError(
            f"a placeholder in the code that {renderer} '{flag}' runs would be interpreted, "
            "not passed: run a script file and give it the value as its own argument"
        )
