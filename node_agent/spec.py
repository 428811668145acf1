"""The job spec: one validated document (JSON or YAML) that describes a render job."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
)

from node_agent import renderers
from node_agent.batchenv import ENTITLEMENT_VARS
from node_agent.errors import SpecError
from node_agent.fieldrules import ENV_NAME
from node_agent.frames import parse_frames
from node_agent.mounts.model import MountList
from node_agent.renderers.template import (
    check_no_code_placeholder,
    check_no_renderer_code_placeholder,
    check_placeholders,
)
from node_agent.spec_assets import AssetSource as AssetSource
from node_agent.spec_assets import check_blob_prefix as _check_blob_prefix
from node_agent.spec_assets import check_container as _check_container
from node_agent.spec_assets import check_relpath as _check_relpath
from node_agent.spec_storage import FrozenModel as _Model
from node_agent.spec_storage import Storage as Storage
from node_agent.spec_storage import StorageAuth as StorageAuth
from node_agent.specfile import MAX_SPEC_BYTES as MAX_SPEC_BYTES
from node_agent.specfile import format_validation_error as format_validation_error
from node_agent.specfile import load_document, validate_document


class Output(_Model):
    container: str | None = Field(None, description="default: the job's File Conventions container")
    prefix: str = ""
    pattern: str = "frame_####"
    format: Literal["PNG", "JPEG", "OPEN_EXR", "TIFF"] = "PNG"

    _container = field_validator("container")(_check_container)
    _prefix = field_validator("prefix")(_check_blob_prefix)

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.#-]{1,100}", v) or "#" not in v:
            raise ValueError(
                f"'{v}' is not a frame file name pattern: 1-100 of letters, digits, '_', '.', "
                "'-' with '#' for the frame number (frame_####)"
            )
        if v.startswith("."):
            raise ValueError(
                f"'{v}' starts with '.': the uploader skips dot files, so every frame would "
                "be lost (frame_####)"
            )
        if ".." in v:
            raise ValueError(f"'{v}' must not contain '..' (frame_####)")
        return v


class Render(_Model):
    renderer: str = Field(description="a registered renderer (node_agent.renderers.REGISTRY)")
    scene: str
    frames: str | None = Field(
        None,
        description="frames to render (1-10, 1-100x5, 1,5,10-12); omitted: the scene's own "
        "range, read from the scene where the renderer's reader knows it (Blender)",
    )
    frames_per_task: int = Field(1, ge=1, le=10_000)
    output: Output = Output()
    executable: str | None = None
    command: list[str] | None = Field(
        None,
        description="TD template: arguments with {placeholders}",
        validate_default=True,  # renderer 'custom' without one is said with the other problems
    )
    extra_args: list[str] = Field(
        [],
        description="arguments with {placeholders} the built-in adapter adds to its command "
        "(where its renderer takes options); not with 'command' or renderer 'custom'",
    )
    options: dict[str, str | int | float | bool] = {}
    env: dict[str, str] = {}
    timeout_s: int = Field(3600, ge=1, le=7 * 24 * 3600)
    stall_timeout_s: int | None = Field(None, ge=1)
    threads: int = Field(0, ge=0, le=1024)
    path_map: dict[str, str] = Field({}, description="workstation prefix -> folder under assets")
    kill_grace_s: int = Field(10, ge=0, le=600)

    _scene = field_validator("scene")(_check_relpath)

    @field_validator("renderer", mode="before")
    @classmethod
    def _renderer(cls, v: object) -> object:
        if not isinstance(v, str) or renderers.get(v) is None:
            raise ValueError(renderers.not_one_of(v, renderers.names()))
        return v

    @field_validator("frames")
    @classmethod
    def _frames(cls, v: str | None) -> str | None:
        if v is not None:
            parse_frames(v)
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if name.upper() in ENTITLEMENT_VARS:
                raise ValueError(
                    f"'{name}' is set by Batch for software entitlement and cannot be overridden"
                )
            if not ENV_NAME.match(name):
                raise ValueError(f"'{name}' is not a valid environment variable name")
        return v

    @field_validator("path_map")
    @classmethod
    def _path_map(cls, v: dict[str, str]) -> dict[str, str]:
        for src, dst in v.items():
            if not src.strip():
                raise ValueError("path_map: a workstation prefix is empty")
            if dst:
                _check_relpath(dst)
        return v

    @field_validator("command")
    @classmethod
    def _template(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        renderer = info.data.get("renderer")
        if v is None:
            descriptor = renderers.get(renderer) if renderer else None
            if descriptor is not None and descriptor.build is None:
                raise ValueError(f"renderer '{renderer}' needs a 'command' template")
            return v
        if not v:
            raise ValueError("command template is empty")
        check_placeholders(v)
        check_no_code_placeholder(v)
        if renderer:  # the renderer's own code flags (--python-expr, -preRender), as extra_args
            check_no_renderer_code_placeholder(renderer, v)
        return v

    @field_validator("extra_args")
    @classmethod
    def _extra_args(cls, v: list[str], info: ValidationInfo) -> list[str]:
        if not v:
            return v
        renderer = info.data.get("renderer")
        descriptor = renderers.get(renderer) if renderer else None
        if descriptor is not None and descriptor.build is None:
            raise ValueError(
                f"renderer '{renderer}' has no adapter command to extend: put the arguments "
                "in 'command'"
            )
        if info.data.get("command"):
            raise ValueError(
                "use 'command' (replaces the adapter's command) or 'extra_args' (extends it), "
                "not both: add the arguments to 'command'"
            )
        check_placeholders(v)
        if renderer:
            check_no_renderer_code_placeholder(renderer, v)
        if info.data.get("executable"):  # a wrapper such as `sh`: its -c code runs too
            check_no_code_placeholder([info.data["executable"], *v])
        return v

    @property
    def frame_list(self) -> list[int]:
        if self.frames is None:
            raise SpecError(
                "render.frames: omitted, and not yet read from the scene (preflight."
                "with_scene_frames: `validate --assets`, submit)"
            )
        return parse_frames(self.frames)


class Policies(_Model):
    task_retries: int = Field(1, ge=0, le=20)
    cleanup: Literal["job", "keep"] = "job"
    free_space_reserve_mb: int = Field(1024, ge=0)
    cache_budget_mb: int | None = Field(None, ge=0, description="shared asset cache budget")
    storage_retry_s: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="how long a storage request keeps retrying connection errors and "
        "throttling (429/5xx) before the phase gives up",
    )
    missing_dependencies: Literal["fail", "warn"] = Field(
        "fail",
        description="a file the scene needs (texture, library, cache, reference) missing "
        "from the synced assets: 'fail' ends job prep with exit 12 before any frame "
        "renders, naming every one; 'warn' logs each and renders anyway",
    )
    job_timeout_s: int | None = Field(
        None,
        ge=60,
        le=30 * 24 * 3600,
        description="the job's maxWallClockTime backstop (ends a job nothing else ended); "
        "default: 2 h + every task at its maxWallClockTime through all tries, nodes x slots "
        "at a time",
    )


class JobSpec(_Model):
    job_id: str

    @field_validator("job_id")
    @classmethod
    def _job_id(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", v):
            raise ValueError(f"'{v}' is not a Batch job id: 1-64 of letters, digits, '-', '_'")
        return v

    storage: Storage
    assets: list[AssetSource] = Field(min_length=1)
    render: Render
    policies: Policies = Policies()
    mounts: MountList = Field(default_factory=list, description="job-scoped mounts (docs/ops.md)")
    submission_id: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{32}$",
        description="set by `batch submit` and `local run`, one per submission: a task's "
        "re-run skips stored frames and honours its previous attempt's verdict only within "
        "the same submission (a job id submitted again renders again)",
    )

    @field_validator("assets")
    @classmethod
    def _unique_assets(cls, v: list[AssetSource]) -> list[AssetSource]:
        """A field rule, not a model one: said even when another field is wrong too."""
        names = [a.name for a in v]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"asset source names must be unique: {', '.join(dups)} given twice")
        return v


def submitted(spec: JobSpec) -> JobSpec:
    """The spec as handed to the nodes by one submission (`batch submit`, `local run`): a new
    `submission_id`, so the task ledgers of an earlier submission of the same job id (same
    spec) neither skip frames nor stop retries of this one (phases/render_rerun.py)."""
    return spec.model_copy(update={"submission_id": uuid.uuid4().hex})


def spec_from_data(data: Any, source: str = "job spec") -> JobSpec:
    """`data` (a parsed document) as a JobSpec; SpecError naming `source` and each field."""
    return validate_document(data, JobSpec, source, "job spec")


def load_spec(path: Path) -> JobSpec:
    """Read and validate a job spec file (JSON or YAML; at most MAX_SPEC_BYTES, no key given
    twice: node_agent.specfile.load_document)."""
    return load_document(path, JobSpec, "job spec")
