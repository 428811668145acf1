"""The node config ("pool config" in the docs): what the start task makes true on every node.

A JSON or YAML document given to `node-agent start-task --pool-config <file>` (a
resource file of the start task): the mounts to make, the renderers that must run,
the free space the temp disk must have, and whether application licenses are expected.
The start task keeps it as state/pool-config.json (node_agent.nodestate reads it back).

Not to be confused with the Batch pool settings (node_agent.batch.pooljson
BatchPoolSettings, `batch ... --pool-settings`), which hold a node config under
`node_config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from node_agent import renderers as registry
from node_agent.mounts.model import MountList
from node_agent.specfile import load_document


def _license_name(v: object) -> object:
    valid = registry.license_names()  # the registry's, read when a config is validated
    if not isinstance(v, str) or v not in valid:
        raise ValueError(registry.not_one_of(v, valid))
    return v


LicenseName = Annotated[str, BeforeValidator(_license_name)]


class RendererCheck(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="a registered renderer with a program of its own")
    executable: str | None = Field(
        None, description="default: the image's *_EXEC variable, else PATH"
    )
    version_args: list[str] | None = Field(None, description="default: the renderer's usual flag")
    timeout_s: int = Field(60, ge=1, le=600)

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, v: object) -> object:
        valid = registry.names(with_executables=True)
        if not isinstance(v, str) or v not in valid:
            raise ValueError(registry.not_one_of(v, valid))
        return v


class NodeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mounts: MountList = []
    renderers: list[RendererCheck] = []
    min_free_temp_disk_gb: float = Field(0.0, ge=0)
    application_licenses: list[LicenseName] = Field(
        default_factory=list, description="licenses the pool lists; entitlement variables required"
    )
    max_clock_skew_s: int = Field(300, ge=1)
    probe_timeout_s: int = Field(30, ge=1, le=600, description="listing a mount to prove it")
    cache_budget_mb: int | None = Field(
        None, ge=0, description="shared asset cache budget, kept by job release (LRU)"
    )

    @field_validator("renderers", mode="before")
    @classmethod
    def _short_names(cls, v: object) -> object:
        # "renderers: [blender]" is shorthand for "renderers: [{name: blender}]".
        if isinstance(v, list):
            return [{"name": r} if isinstance(r, str) else r for r in v]
        return v


def load_node_config(path: Path) -> NodeConfig:
    """The node config file (an empty file is all defaults): node_agent.specfile's loader
    (size cap, duplicate keys, one line per error naming the field)."""
    return load_document(path, NodeConfig, "pool config", empty_ok=True)
