"""The job spec's `assets` entries (AssetSource) and the name checks they share with the rest
of the spec, apart from the whole job model.

`node-agent sync` builds an AssetSource for its source argument: importing node_agent.spec
for it built the whole job model (renderers, mounts, frames, YAML: ~35-70 ms of a no-op
sync's start). spec.py can re-export these names (see docs/sync.md, "Start-up").
"""

from __future__ import annotations

from pydantic import Field, field_validator

from node_agent.fieldrules import CONTAINER
from node_agent.safepath import rel_problem
from node_agent.spec_storage import FrozenModel


def check_container(v: str | None) -> str | None:
    if v is not None and not CONTAINER.match(v):
        raise ValueError(
            f"'{v}' is not a valid container name (3-63 of a-z, 0-9, '-'; no '--'; "
            "starts and ends with a letter or digit)"
        )
    return v


def check_relpath(v: str) -> str:
    """A path below the job's assets folder (render.scene, assets[].dest, path_map targets).

    The containment rule is safepath's (no absolute path, drive, '..', NUL or look-alike of
    '.' or '/'); on top, this field takes '/' only. A '.' or empty component is allowed here
    (`./scene.blend`, `textures/`): the path is joined on disk, where they mean nothing."""
    if "\\" in v:
        raise ValueError(f"'{v}' must be a relative path with '/' separators")
    problem = rel_problem(v.rstrip("/") or v, allow_dot=True, allow_empty=True)
    if problem:
        raise ValueError(
            f"'{v}' {problem}: it must stay inside the assets folder (a relative path with "
            "'/' separators, no '..')"
        )
    return v


def check_blob_prefix(v: str) -> str:
    """A blob name prefix: the containment rule of safepath on the prefix without its
    trailing '/'; on top, '/' separators only and no '.' segment (storage resolves '.' and
    '..' in URLs, so 'a/./b' would name something else than it says). An empty segment
    ('a//b') is a real blob name and stays allowed."""
    if not v:
        return v
    if "\\" in v:
        raise ValueError(f"'{v}' must be a relative blob prefix with '/' separators")
    problem = rel_problem(v.rstrip("/") or v, allow_empty=True)
    if problem:
        raise ValueError(
            f"'{v}' {problem}: it must be a relative blob prefix with '/' separators "
            "(no '.' or '..' segments)"
        )
    return v


class AssetSource(FrozenModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    container: str
    prefix: str = ""
    dest: str = Field("", description="subfolder of the job's assets folder ('' = its root)")
    manifest: str | None = Field(
        None,
        pattern=r"^([0-9a-f]{64}|latest)$",
        description="pinned manifest hash (from `assets push`), or `latest`: the last push, "
        "pinned at submit / local run",
    )

    _container = field_validator("container")(check_container)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        """A prefix names a folder: `shot01`, `shot01/` and `shot01//` are all `shot01/`, so
        the listing can never take a sibling (`shot010/`, `shot01_old/`, `shot01.bak`)."""
        v = check_blob_prefix(v)
        return v.rstrip("/") + "/" if v else v

    @field_validator("dest")
    @classmethod
    def _dest(cls, v: str) -> str:
        return check_relpath(v) if v else v
