"""Pydantic models of the mounts a pool config or a job spec asks for.

Secrets are never in these documents: `env` names the environment variable that
holds the account key, SAS or client secret (as in the job spec's storage.auth).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from node_agent.fieldrules import CONTAINER, ENV_NAME, account_url
from node_agent.safepath import rel_problem
from node_agent.storage.credentials import MountMode, account_name, is_local_host

_SHARE = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _relpath(v: str) -> str:
    """A folder below the mounts folder (a mount's path) or in a container (a blob mount's
    prefix), without its leading/trailing '/'. The containment rule is safepath's (no
    absolute path, drive, '..', NUL or look-alike of '.' or '/'); on top, this field takes
    '/' only and no '.' component. An empty component ('a//b') stays allowed, as before."""
    if "\\" in v:
        raise ValueError(f"'{v}' must be a relative path with '/' separators")
    problem = rel_problem(v.rstrip("/") or v, allow_empty=True)
    if problem:
        raise ValueError(
            f"'{v}' {problem}: it must stay inside the mounts folder (no absolute path, "
            "no '.' or '..')"
        )
    return v.strip("/")


def _env_name(v: str | None) -> str | None:
    if v is not None and not ENV_NAME.match(v):
        raise ValueError(f"'{v}' is not a valid environment variable name")
    return v


class BlobAuth(_Model):
    """How a blob mount authenticates.

    key: account key in `env`; sas: SAS token in `env`; msi: managed identity (optional
    `client_id` or `resource_id` of a user-assigned identity); spn: service principal
    (`client_id`, `tenant_id`, client secret in `env`); emulator: Azurite's public dev key.
    """

    mode: MountMode  # the one vocabulary: storage/credentials.py
    env: str | None = Field(None, description="environment variable holding the secret")
    client_id: str | None = None
    resource_id: str | None = None
    tenant_id: str | None = None

    _env = field_validator("env")(_env_name)

    @model_validator(mode="after")
    def _complete(self) -> BlobAuth:
        if self.mode in ("key", "sas", "spn") and not self.env:
            raise ValueError(
                f"auth mode '{self.mode}' needs 'env': the variable holding the secret"
            )
        if self.mode == "spn" and not (self.client_id and self.tenant_id):
            raise ValueError("auth mode 'spn' needs 'client_id' and 'tenant_id'")
        if self.mode == "msi" and self.client_id and self.resource_id:
            raise ValueError("auth mode 'msi' takes 'client_id' or 'resource_id', not both")
        return self


class _MountBase(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    path: str = Field("", description="mount point under the mounts dir (default: the name)")
    read_only: bool = True

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return _relpath(v) if v else v

    @property
    def rel_path(self) -> str:
        return self.path or self.name


class _BlobMount(_MountBase):
    account_url: str
    container: str
    prefix: str = Field("", description="mount only this folder of the container")
    auth: BlobAuth

    @field_validator("account_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return account_url(v)

    @field_validator("container")
    @classmethod
    def _container(cls, v: str) -> str:
        if not CONTAINER.match(v):
            raise ValueError(f"'{v}' is not a valid container name")
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return _relpath(v) if v.strip("/") else ""

    @property
    def is_emulator(self) -> bool:
        return is_local_host(urlparse(self.account_url).hostname or "")

    @property
    def account_name(self) -> str:
        return account_name(self.account_url)

    @property
    def container_url(self) -> str:
        return f"{self.account_url}/{self.container}"


class RcloneMount(_BlobMount):
    driver: Literal["rclone"]
    vfs_cache_max_size_mb: int | None = Field(None, ge=1)
    dir_cache_time_s: int = Field(300, ge=0)
    attr_timeout_s: int = Field(60, ge=0)
    sas_expiry_days: int = Field(
        30, ge=1, le=365, description="SAS made from a key for non-Azure endpoints"
    )


class Blobfuse2Mount(_BlobMount):
    driver: Literal["blobfuse2"]
    attr_cache_timeout_s: int = Field(240, ge=0)
    entry_timeout_s: int = Field(240, ge=0)
    negative_timeout_s: int = Field(120, ge=0)
    file_cache_timeout_s: int = Field(120, ge=0)
    file_cache_max_mb: int | None = Field(None, ge=1)
    virtual_directory: bool = True
    allow_other: bool = False


class AzureFilesMount(_MountBase):
    driver: Literal["azurefiles"]
    account_name: str
    share: str
    key_env: str = Field(description="environment variable holding the storage account key")
    endpoint_suffix: str = "file.core.windows.net"
    drive: str = Field("S:", pattern=r"^[D-Zd-z]:$", description="Windows drive letter")
    options: list[str] = Field(
        default_factory=lambda: ["vers=3.0", "dir_mode=0777", "file_mode=0777", "serverino"],
        description="Linux cifs mount options (credentials= and ro are added)",
    )

    _key_env = field_validator("key_env")(_env_name)

    @field_validator("account_name")
    @classmethod
    def _account(cls, v: str) -> str:
        if not _ACCOUNT.match(v):
            raise ValueError(f"'{v}' is not a storage account name (3-24 of a-z, 0-9)")
        return v

    @field_validator("share")
    @classmethod
    def _share(cls, v: str) -> str:
        if not _SHARE.match(v):
            raise ValueError(f"'{v}' is not a valid share name")
        return v

    @field_validator("options")
    @classmethod
    def _options(cls, v: list[str]) -> list[str]:
        for o in v:
            if not re.match(r"^[A-Za-z0-9_.=-]+$", o) or o.split("=")[0] in (
                "credentials",
                "password",
                "pass",
                "username",
                "user",
            ):
                raise ValueError(
                    f"'{o}' is not an allowed cifs option (credentials go in the key_env variable)"
                )
        return v

    @property
    def host(self) -> str:
        return f"{self.account_name}.{self.endpoint_suffix}"


MountSpec = Annotated[RcloneMount | Blobfuse2Mount | AzureFilesMount, Field(discriminator="driver")]


def _unique(mounts: list[MountSpec]) -> list[MountSpec]:
    names = [m.name for m in mounts]
    if len(names) != len(set(names)):
        raise ValueError("mount names must be unique")
    paths = [m.rel_path for m in mounts]
    if len(paths) != len(set(paths)):
        raise ValueError("mount paths must be unique")
    return mounts


MountList = Annotated[list[MountSpec], AfterValidator(_unique)]
