"""The one containment rule (node_agent.safepath) as a table of names, and each spec field
that checks a path against it (one rule, the field's extras on top, its own message).

Cases marked "go" are ported from Go's path/filepath IsLocal tests (islocaltests and
winislocaltests in src/path/filepath/path_test.go, golang/go); where our answer differs
from Go's the row says why (we refuse a '..' component even when it stays inside, and a
'.' or empty component unless the field allows it).
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import make_spec_doc

from node_agent.errors import SpecError
from node_agent.safepath import ContainmentError, check_component, rel_problem, split_rel
from node_agent.sync.names import name_problem

LOOKALIKES = ["\uff0f", "\u2215", "\u2044", "\uff3c", "\uff0e", "\u2024"]

# (name, problem substring or None when safe) for rel_problem with its defaults
TABLE: list[tuple[str, str | None]] = [
    # plain names, both separators, mixed
    ("a", None),
    ("a/b/c.exr", None),
    ("a\\b\\c.exr", None),
    ("a/b\\c", None),
    ("...", None),  # three dots are a real name (Windows too)
    ("..a", None),
    ("a..", None),
    ("a/..b/c", None),
    ("dollar$", None),  # go: not a special file name
    ("caf\u00e9/\u00bd.png", None),  # accents and fractions are plain names
    # characters NFKC turns into '..', '...' or something holding '/' (review of stop 10)
    ("a/\ufe30/b", "U+FE30"),
    ("\ufe19", "U+FE19"),
    ("x\u2100y", "U+2100"),
    ("c\u2105o", "U+2105"),
    ("com0", None),  # go
    # empty and NUL
    ("", "is empty"),  # go
    ("\x00", "contains NUL"),
    ("a\x00b", "contains NUL"),
    ("a/b\x00/c", "contains NUL"),
    # other control characters: a newline in a blob name forges a line in every log
    ("frame\nnode-agent: error: forged", "control character U+000A"),
    ("a\rb", "control character U+000D"),
    ("tab\there", "control character U+0009"),
    ("esc\x1b[31m", "control character U+001B"),
    ("del\x7f", "control character U+007F"),
    # absolute, UNC
    ("/", "absolute"),  # go
    ("/a", "absolute"),  # go
    ("/a/../..", "absolute"),  # go
    ("\\", "absolute"),  # go (windows)
    ("\\a", "absolute"),  # go (windows)
    ("\\\\server\\share", "absolute"),
    ("//server/share", "absolute"),
    ("\\\\?\\C:\\a", "absolute"),
    # drives
    ("C:", "drive"),  # go (windows)
    ("C:\\a", "drive"),  # go (windows)
    ("c:\\", "drive"),
    ("c:/x", "drive"),
    ("C:a", "drive"),
    ("z:", "drive"),
    # '..' at every position, either separator
    ("..", "'..'"),  # go
    ("../a", "'..'"),  # go
    ("..\\a", "'..'"),  # go (windows)
    ("a/..", "'..'"),
    ("a\\..", "'..'"),
    ("a/../b", "'..'"),
    ("a\\..\\b", "'..'"),
    ("a/..\\b", "'..'"),
    ("a\\../b", "'..'"),
    ("a/b/../../..", "'..'"),
    ("a/../a", "'..'"),  # go says local; we refuse every '..' component
    ("a/../b:/../../c", "'..'"),  # go
    ("a/../c:", "'..'"),  # go (windows)
    # '.' and empty components: one spelling per name
    (".", "'.'"),  # go says local (the root itself); not a name here
    ("./a", "'.'"),
    ("a/.", "'.'"),  # go says local
    ("a/./b/./c", "'.'"),  # go says local
    ("a\\.\\b", "'.'"),
    ("a//b", "'//'"),
    ("a\\\\b", "'//'"),
    ("a/\\b", "'//'"),
    ("a/", "'//'"),  # go says local; a trailing separator is an empty component
    ("a\\", "'//'"),
]
# look-alikes of '/', '\\' and '.' anywhere in a name
TABLE += [(f"a{c}b", f"U+{ord(c):04X}") for c in LOOKALIKES]
TABLE += [(f"..{c}etc", f"U+{ord(c):04X}") for c in LOOKALIKES]
TABLE += [(f"{c}{c}", f"U+{ord(c):04X}") for c in LOOKALIKES]


@pytest.mark.parametrize(("name", "problem"), TABLE, ids=repr)
def test_rel_problem_table(name: str, problem: str | None) -> None:
    got = rel_problem(name)
    if problem is None:
        assert got is None
    else:
        assert got is not None and problem in got


@pytest.mark.parametrize(("name", "problem"), TABLE, ids=repr)
def test_split_rel_agrees_with_rel_problem(name: str, problem: str | None) -> None:
    if problem is None:
        parts = split_rel(name, "blob")
        assert parts == name.replace("\\", "/").split("/")
        assert all(p not in ("", ".", "..") for p in parts)
    else:
        with pytest.raises(ContainmentError) as e:
            split_rel(name, "output file")
        line = str(e.value)
        assert line.startswith("output file ") and problem in line and "\n" not in line


# fields that are only joined to their root may allow '.' and empty components; never '..'
RELAXED = [
    (".", None),
    ("./a", None),
    ("a/.", None),
    ("a/./b/./c", None),
    ("a//b", None),
    ("a/", None),
    ("..", "'..'"),
    ("a/../a", "'..'"),
    ("a/.\\..", "'..'"),
    ("/a", "absolute"),
    ("C:a", "drive"),
    ("a\x00", "NUL"),
    ("a\u2215b", "U+2215"),
]


@pytest.mark.parametrize(("name", "problem"), RELAXED, ids=repr)
def test_rel_problem_relaxed_fields_still_refuse_escapes(name: str, problem: str | None) -> None:
    got = rel_problem(name, allow_dot=True, allow_empty=True)
    assert (got is None) if problem is None else (got is not None and problem in got)
    if problem is None:
        assert rel_problem(name) is not None  # the default stays strict


@pytest.mark.parametrize(
    ("name", "allow_dot", "allow_empty", "ok"),
    [
        ("a/./b", True, False, True),
        ("a//b", True, False, False),
        ("a//b", False, True, True),
        ("a/./b", False, True, False),
        ("a/../b", True, True, False),
    ],
)
def test_rel_problem_allows_only_what_is_asked(
    name: str, allow_dot: bool, allow_empty: bool, ok: bool
) -> None:
    assert (rel_problem(name, allow_dot=allow_dot, allow_empty=allow_empty) is None) is ok


# --- one component: AZ_BATCH_* ids used as folder names -----------------------------------
@pytest.mark.parametrize(
    "value",
    [
        "job-2024_shot010",  # AZ_BATCH_JOB_ID: letters, digits, '-', '_' (1-64)
        "render-00042",  # AZ_BATCH_TASK_ID
        "jobpreparation",
        "tvmps_4e0c0a7c3b2f9e1d_d",  # AZ_BATCH_NODE_ID
        "render-pool",  # AZ_BATCH_POOL_ID
        "a" * 64,
        "...",
        "dollar$",
    ],
)
def test_check_component_accepts_batch_ids(value: str) -> None:
    assert check_component(value, "AZ_BATCH_TASK_ID") == value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "empty"),
        (".", "'.'"),
        ("..", "'..'"),
        ("a/b", "separator"),
        ("a\\b", "separator"),
        ("../job", "'..'"),
        ("/job", "absolute"),
        ("\\job", "absolute"),
        ("\\\\server\\share", "absolute"),
        ("C:", "drive"),
        ("c:job", "drive"),
        ("job\x00", "NUL"),
        *[(f"job{c}1", f"U+{ord(c):04X}") for c in LOOKALIKES],
        *[(f"{c}{c}", f"U+{ord(c):04X}") for c in LOOKALIKES],
    ],
    ids=repr,
)
def test_check_component_refuses(value: str, problem: str) -> None:
    with pytest.raises(ContainmentError) as e:
        check_component(value, "AZ_BATCH_JOB_ID")
    line = str(e.value)
    assert line.startswith("AZ_BATCH_JOB_ID ") and problem in line and "folder name" in line


# --- Go's Windows device names: sync/names.name_problem(windows=True) on top ------------
@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("NUL", False),
        ("nul", False),
        ("nul ", False),
        ("nul.", False),
        ("a/nul:", False),
        ("a/nul : a", False),
        ("com0", True),
        *[(f"com{i}", False) for i in range(1, 10)],
        ("cOm1", False),
        ("lpt1", False),
        ("LPT1", False),
        ("./nul", False),
        ("\\", False),
        ("\\a", False),
        ("C:", False),
        ("C:\\a", False),
        ("..\\a", False),
        ("a/../c:", False),
        ("CONIN$", False),
        ("conin$", False),
        ("CONOUT$", False),
        ("conout$", False),
        ("dollar$", True),
        ("com\u00b9", False),
        ("lpt\u00b3", False),
    ],
    ids=repr,
)
def test_go_windows_islocal_cases(name: str, ok: bool) -> None:
    assert (name_problem(name, windows=True) is None) is ok


# --- the spec fields: one rule, the field's extras, a message naming the field -----------
def _spec(**render: Any) -> dict[str, Any]:
    doc: dict[str, Any] = make_spec_doc("http://127.0.0.1:10000/devstoreaccount1")
    doc["render"] = {**doc["render"], **render}
    return doc


FIELD_CASES: list[tuple[str, Any, str | None]] = [
    # render.scene: '/' only; '.' and empty components allowed (joined on disk)
    ("scene", "shots/a.blend", None),
    ("scene", "./a.blend", None),
    ("scene", "shots//a.blend", None),
    ("scene", "../a.blend", "render.scene: '../a.blend' has a '..' component"),
    ("scene", "C:/a.blend", "render.scene: 'C:/a.blend' starts with a drive letter"),
    ("scene", "/a.blend", "render.scene: '/a.blend' is an absolute path"),
    ("scene", "a\\b.blend", "render.scene: 'a\\b.blend' must be a relative path with '/'"),
    ("scene", "a\u2215..\u2215b", "render.scene: 'a\u2215..\u2215b' contains U+2215"),
    ("scene", "", "render.scene: '' is empty"),
]


@pytest.mark.parametrize(("field", "value", "error"), FIELD_CASES, ids=repr)
def test_spec_path_fields_use_the_one_rule(field: str, value: Any, error: str | None) -> None:
    from node_agent.spec import spec_from_data

    doc = _spec(**{field: value})
    if error is None:
        assert getattr(spec_from_data(doc).render, field) == value
        return
    with pytest.raises(SpecError) as e:
        spec_from_data(doc, "job.yaml")
    assert str(e.value).startswith(f"job.yaml: {error}")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("prefix", "error"),
    [
        ("shots/010", None),
        ("shots//010/", None),  # a blob name may hold '//'
        ("shots/./010", "'.' component"),
        ("shots/../010", "'..' component"),
        ("/shots", "is an absolute path"),
        ("shots\\010", "relative blob prefix with '/'"),
        ("C:/shots", "drive letter"),
        ("shots\uff0e\uff0e/x", "U+FF0E"),
    ],
    ids=repr,
)
def test_blob_prefix_fields_use_the_one_rule(prefix: str, error: str | None) -> None:
    from node_agent.spec import spec_from_data

    assets_doc = _spec()
    assets_doc["assets"][0]["prefix"] = prefix
    for where, doc in (
        ("assets[0].prefix", assets_doc),
        ("render.output.prefix", _spec(output={"prefix": prefix})),
    ):
        if error is None:
            spec_from_data(doc)
            continue
        with pytest.raises(SpecError) as e:
            spec_from_data(doc, "job.yaml")
        assert str(e.value).startswith(f"job.yaml: {where}: '{prefix}'") and error in str(e.value)


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("mnt/lib", None),
        ("mnt//lib/", None),
        ("./lib", "'.' component"),
        ("lib/..", "'..' component"),
        ("/lib", "is an absolute path"),
        ("lib\\x", "with '/' separators"),
        ("D:lib", "drive letter"),
        ("lib\u2044x", "U+2044"),
    ],
    ids=repr,
)
def test_mount_path_uses_the_one_rule(path: str, error: str | None) -> None:
    from node_agent.poolconfig import NodeConfig
    from node_agent.specfile import validate_document

    mount = {
        "name": "lib",
        "driver": "rclone",
        "path": path,
        "account_url": "http://127.0.0.1:10000/devstoreaccount1",
        "container": "library",
        "auth": {"mode": "emulator"},
    }
    if error is None:
        cfg = validate_document({"mounts": [mount]}, NodeConfig, "pool.yaml", "pool config")
        assert cfg.mounts[0].path == path.strip("/")
        return
    with pytest.raises(SpecError) as e:
        validate_document({"mounts": [mount]}, NodeConfig, "pool.yaml", "pool config")
    line = str(e.value)
    assert line.startswith(f"pool.yaml: mounts[0].rclone.path: '{path}'") and error in line


def test_messages_show_control_characters_escaped() -> None:
    """A refused name is shown on one line: its control characters as \\xNN."""
    with pytest.raises(ContainmentError) as e:
        split_rel("frame\nnode-agent: error: forged", "blob")
    assert "\n" not in str(e.value) and "frame\\x0anode-agent" in str(e.value)
    with pytest.raises(ContainmentError) as e:
        check_component("job\x1b[2J", "AZ_BATCH_JOB_ID")
    assert "\x1b" not in str(e.value) and "job\\x1b[2J" in str(e.value)
