"""The job spec's `assets` entries (AssetSource) and the name checks they share with the rest
of the spec, apart from the whole job model.

The check functions are fieldrules' (`node-agent sync` checks its source argument with them
and builds a plain dataclass, sync/cli_settings.py: importing pydantic and building the
models cost ~60 ms of a no-op sync's start). spec.py imports them from here.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from node_agent.fieldrules import (
    MANIFEST_PIN,
    check_blob_prefix,
    check_container,
    check_relpath,
    folder_prefix,
)
from node_agent.spec_storage import FrozenModel

# the rules live in fieldrules (`node-agent sync` checks its source with them, no pydantic);
# spec.py imports them from here
__all__ = ["AssetSource", "check_blob_prefix", "check_container", "check_relpath"]


class AssetSource(FrozenModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    container: str
    prefix: str = ""
    dest: str = Field("", description="subfolder of the job's assets folder ('' = its root)")
    manifest: str | None = Field(
        None,
        pattern=MANIFEST_PIN.pattern,
        description="pinned manifest hash (from `assets push`), or `latest`: the last push, "
        "pinned at submit / local run",
    )

    _container = field_validator("container")(check_container)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return folder_prefix(v)

    @field_validator("dest")
    @classmethod
    def _dest(cls, v: str) -> str:
        return check_relpath(v) if v else v
