"""The Batch pool (REST body) for render nodes: image, start task that installs node_agent.

The start task installs node_agent from its package (application package or resource file)
into NODE_AGENT_HOME once per node, then runs the same `start_task/run.sh` the local pool runs.

BatchPoolSettings is the file `batch pool-json|job-json|submit` and `local run` take with
`--pool-settings`: the Batch side of a pool (VM size, image, nodes, package, Batch mounts).
Its `node_config` is the node side (node_agent.poolconfig.NodeConfig), the file the start
task takes with `--pool-config`.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from azure.batch import models as bm
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from node_agent import renderers
from node_agent.batch.account import (
    APP_ID_PATTERN,
    BatchAccount,
    application_name,
    full_application_id,
)
from node_agent.batch.restcheck import problems, unknown_fields
from node_agent.errors import SpecError
from node_agent.jobplan import POOL_CONFIG_FILE, start_task_script
from node_agent.mounts.model import AzureFilesMount
from node_agent.poolconfig import NodeConfig
from node_agent.spec import JobSpec
from node_agent.specfile import load_document

OS = Literal["linux", "windows"]
PACKAGE_FILE = "node-agent-package.zip"
# package (packages/), specs (jobs/<job_id>/job.json), node configs (pools/<pool_id>/...)
AGENT_CONTAINER = "node-agent"

_IMAGES: dict[str, tuple[dict[str, str], str]] = {
    "linux": (
        {
            "publisher": "canonical",
            "offer": "0001-com-ubuntu-server-jammy",
            "sku": "22_04-lts",
            "version": "latest",
        },
        "batch.node.ubuntu 22.04",
    ),
    "windows": (
        {
            "publisher": "microsoftwindowsserver",
            "offer": "windowsserver",
            "sku": "2022-datacenter-smalldisk",
            "version": "latest",
        },
        "batch.node.windows amd64",
    ),
}


def agent_version() -> str:
    try:
        return version("node-agent")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0.0.0"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Image(_Model):
    publisher: str
    offer: str
    sku: str
    version: str = "latest"
    node_agent_sku_id: str


class PackageSource(_Model):
    """Where the start task gets node_agent: a Batch application package or a resource file."""

    kind: Literal["application", "resource_file"] = "application"
    application_id: str = Field(
        default="node-agent",
        pattern=APP_ID_PATTERN,
        description="the application's name (with batch_account) or its full resource id",
    )
    version: str = Field(default_factory=agent_version, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    url: str | None = Field(default=None, description="resource_file: blob URL of the package zip")
    blob: str | None = Field(
        default=None,
        description="resource_file + auto_storage: blob name in the node-agent container",
    )


class BatchPoolSettings(_Model):
    pool_id: str = Field(default="render-pool", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    os: OS = "linux"
    vm_size: str = "Standard_D8s_v5"
    image: Image | None = None
    batch_account: BatchAccount | None = Field(
        default=None,
        description="the Batch account (subscription, resource group, name, linked storage): "
        "the application package's full resource id is built from it",
    )
    dedicated_nodes: int = Field(default=1, ge=0)
    low_priority_nodes: int = Field(
        default=0,
        ge=0,
        validation_alias=AliasChoices("spot_nodes", "low_priority_nodes"),
        description="spot_nodes: the pool's targetLowPriorityNodes (Spot on Batch-managed "
        "accounts, low-priority on user-subscription ones): cheaper, can be preempted, "
        "their tasks are re-queued by Batch",
    )
    task_slots_per_node: int = Field(default=1, ge=1, le=256)
    package: PackageSource = PackageSource()
    node_agent_home: str | None = Field(default=None, description="install folder on the node")
    identity_resource_id: str | None = Field(
        default=None, description="user-assigned managed identity (of the pool) that reads blobs"
    )
    task_elevation: Literal["admin", "nonadmin"] = Field(
        default="admin",
        description="user of job prep, frame tasks and job release: the start task's elevated "
        "pool-wide auto-user by default, so they can write the node_agent folders it created",
    )
    blob_access: Literal["identity", "auto_storage"] = Field(
        default="identity",
        description="how nodes download package and spec: the pool's managed identity "
        "(identity_resource_id) or the Batch account's linked auto-storage account",
    )
    mounts: list[dict[str, Any]] = Field(
        default=[], max_length=10, description="mountConfiguration"
    )
    application_licenses: bool = Field(
        default=False,
        description="emit applicationLicenses (pay-per-use, retired by Azure in 2024)",
    )
    node_config: NodeConfig | None = Field(
        default=None,
        description="the pool config the start task applies on every node (docs/ops.md): "
        "node_agent mounts, renderer checks, free temp disk, licenses, cache budget",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_spot_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "spot_nodes" in data and "low_priority_nodes" in data:
            raise ValueError("spot_nodes: is low_priority_nodes' new name: give only one")
        return data

    @field_validator("mounts")
    @classmethod
    def _mounts(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, entry in enumerate(v):
            if isinstance(entry, dict) and "driver" in entry:
                raise ValueError(
                    f"[{i}] is a node_agent mount (driver '{entry['driver']}'): put it under "
                    "node_config.mounts; this list holds Batch mountConfiguration entries"
                )
            if not isinstance(entry, dict) or len(entry) != 1:
                raise ValueError(f"[{i}] must hold exactly one of the Batch mount configurations")
            bad = unknown_fields(bm.MountConfiguration, entry)
            if bad:
                raise ValueError(f"[{i}]: '{bad[0]}' is not a Batch mountConfiguration field")
            refused = problems(bm.MountConfiguration, entry)
            if refused:
                raise ValueError(f"[{i}].{refused[0]}")
        return v

    def home(self) -> str:
        if self.node_agent_home:
            return self.node_agent_home
        v = self.package.version
        return f"C:\\node_agent\\{v}" if self.os == "windows" else f"/opt/node_agent/{v}"

    def with_os(self, os_name: OS | None) -> BatchPoolSettings:
        return (
            self
            if os_name is None or os_name == self.os
            else self.model_copy(update={"os": os_name})
        )


def _node_setting_at_top(data: dict[str, Any]) -> str | None:
    for key in data:
        if key in NodeConfig.model_fields and key not in BatchPoolSettings.model_fields:
            return f"{key}: is a setting of the start task's pool config: put it under node_config"
    return None


def load_pool_settings(path: Path | None) -> BatchPoolSettings:
    """The pool settings file (YAML or JSON); no file means the defaults."""
    if path is None:
        return BatchPoolSettings()
    return load_document(path, BatchPoolSettings, "pool settings", check=_node_setting_at_top)


def pool_config_blob(pool_id: str) -> str:
    """Where `submit` uploads a pool's node config in the node-agent container."""
    return f"pools/{pool_id}/{POOL_CONFIG_FILE}"


def pool_config_url(account_url: str, pool_id: str) -> str:
    return f"{account_url.rstrip('/')}/{AGENT_CONTAINER}/{pool_config_blob(pool_id)}"


def node_config_json(node: NodeConfig) -> bytes:
    """The file the start task gets (`--pool-config`): the node config, which names
    environment variables and never holds a secret."""
    return node.model_dump_json(indent=2).encode()


def secret_env_names(node: NodeConfig | None) -> list[str]:
    """The variables a node config reads secrets from (mount keys, SAS, client secrets)."""
    if node is None:
        return []
    names = {m.key_env if isinstance(m, AzureFilesMount) else m.auth.env for m in node.mounts}
    return sorted(n for n in names if n)


def secret_warnings(cfg: BatchPoolSettings) -> list[str]:
    names = secret_env_names(cfg.node_config)
    if not names:
        return []
    return [
        f"node_config reads mount secrets from ${', $'.join(names)} on the nodes; node_agent "
        "never writes a secret into the pool (Batch keeps a start task's environment settings "
        "in plain text), so the start task's environment must provide them, or it fails with "
        "exit 21: prefer auth mode 'msi' with the pool's managed identity"
    ]


def app_package_var(application_id: str, pkg_version: str, os_name: OS) -> str:
    """The variable Batch sets to an application package's folder on the node: named after
    the application's name (a full resource id is reduced to it)."""
    application_id = application_name(application_id)
    if os_name == "windows":
        return f"AZ_BATCH_APP_PACKAGE_{application_id.upper()}#{pkg_version}"
    clean = re.sub(r"[^A-Za-z0-9]", "_", f"{application_id}_{pkg_version}")
    return f"AZ_BATCH_APP_PACKAGE_{clean.lower()}"


def _identity(cfg: BatchPoolSettings) -> dict[str, Any]:
    return (
        {"identityReference": {"resourceId": cfg.identity_resource_id}}
        if cfg.identity_resource_id
        else {}
    )


def auto_user(elevation: str) -> dict[str, Any]:
    return {"autoUser": {"scope": "pool", "elevationLevel": elevation}}


def _pool_config_file(
    cfg: BatchPoolSettings, account_url: str | None, url: str | None
) -> tuple[dict[str, Any], str] | None:
    """The node config's resource file and its path in the start task's working folder."""
    if cfg.node_config is None:
        return None
    blob = pool_config_blob(cfg.pool_id)
    if cfg.blob_access == "auto_storage":
        # a container source lands at <working dir>/<blob name>
        rf: dict[str, Any] = {"autoStorageContainerName": AGENT_CONTAINER, "blobPrefix": blob}
        return rf, blob.replace("/", "\\") if cfg.os == "windows" else blob
    if url is None:
        if account_url is None:
            raise SpecError("node_config: the pool config's URL needs the job spec's storage")
        url = pool_config_url(account_url, cfg.pool_id)
    return {"httpUrl": url, "filePath": POOL_CONFIG_FILE, **_identity(cfg)}, POOL_CONFIG_FILE


def start_task(
    cfg: BatchPoolSettings, account_url: str | None = None, config_url: str | None = None
) -> dict[str, Any]:
    """Install node_agent (idempotent), then the same start task script the local pool runs,
    with the pool's node config (a resource file) when it has one."""
    pkg = cfg.package
    resource_files: list[dict[str, Any]] = []
    node_cfg = _pool_config_file(cfg, account_url, config_url)
    config_path = None
    if node_cfg is not None:
        resource_files.append(node_cfg[0])
        config_path = node_cfg[1]
    zip_path = PACKAGE_FILE
    if pkg.kind == "resource_file" and cfg.blob_access == "auto_storage":
        if not pkg.blob:
            raise SpecError("package.blob: an auto_storage package needs its blob name")
        # a container source lands at <working dir>/<blob name>
        resource_files.append({"autoStorageContainerName": AGENT_CONTAINER, "blobPrefix": pkg.blob})
        zip_path = pkg.blob
    elif pkg.kind == "resource_file":
        if not pkg.url:
            raise SpecError("package.url: a resource_file package needs the blob URL of its zip")
        resource_files.append({"httpUrl": pkg.url, "filePath": PACKAGE_FILE, **_identity(cfg)})
    if cfg.os == "windows":
        if pkg.kind == "application":
            src, pre = f"%{app_package_var(pkg.application_id, pkg.version, 'windows')}%", ""
        else:
            src = "pkg"
            pre = f'powershell -NoProfile -Command "Expand-Archive -Force {zip_path} pkg" && '
        args = f" --pool-config {config_path}" if config_path else ""
        cmd = (
            f'cmd /c "{pre}"{src}\\bootstrap\\install.cmd" && '
            f'"%NODE_AGENT_HOME%\\start_task\\run.cmd"{args}"'
        )
    else:
        if pkg.kind == "application":
            src, pre = f"${app_package_var(pkg.application_id, pkg.version, 'linux')}", ""
        else:
            src, pre = "pkg", f"python3 -m zipfile -e {zip_path} pkg && "
        cmd = (
            f'/bin/bash -c \'{pre}bash "{src}/bootstrap/install.sh" && '
            f"{start_task_script(config_path)}'"
        )
    body: dict[str, Any] = {
        "commandLine": cmd,
        "environmentSettings": [{"name": "NODE_AGENT_HOME", "value": cfg.home()}],
        # mounting and installing into NODE_AGENT_HOME need an elevated, pool-wide auto-user
        "userIdentity": auto_user("admin"),
        "maxTaskRetryCount": 2,
        "waitForSuccess": True,
    }
    if resource_files:
        body["resourceFiles"] = resource_files
    return body


def licenses_for(spec: JobSpec | None) -> list[str]:
    """The pay-per-use licenses (the pool's applicationLicenses) the spec's renderer needs:
    its registry entry's `licenses_for` the render options (Maya + V-Ray is [maya, vray],
    Maya Software [maya]: the BatchExplorer-data pool templates)."""
    if spec is None:
        return []
    descriptor = renderers.get(spec.render.renderer)
    if descriptor is None:
        return []
    return sorted(set(descriptor.licenses_for(spec.render.options)))


def application_reference(cfg: BatchPoolSettings) -> str:
    """The pool's `applicationPackageReferences[].applicationId`: the full resource id the REST
    spec requires when creating a pool (see node_agent/batch/account.py for the citation)."""
    app = cfg.package.application_id
    full = full_application_id(app, cfg.batch_account)
    if full is None:
        raise SpecError(
            f"package.application_id: '{app}' is a name, but a pool's applicationPackageReferences"
            "[].applicationId must be the full resource id (/subscriptions/<sub>/resourceGroups/"
            f"<rg>/providers/Microsoft.Batch/batchAccounts/<account>/applications/{app}): give "
            "batch_account (subscription_id, resource_group, name) in the pool settings or the "
            "full id"
        )
    return full


def pool_json(
    cfg: BatchPoolSettings, spec: JobSpec | None = None, config_url: str | None = None
) -> dict[str, Any]:
    """The `POST /pools` body for a render pool. The node config, if any, is read from
    `config_url`, else from where `submit` uploads it in the spec's storage account."""
    image, sku = _IMAGES[cfg.os]
    image_ref = dict(image)
    if cfg.image is not None:
        image_ref = cfg.image.model_dump(exclude={"node_agent_sku_id"})
        sku = cfg.image.node_agent_sku_id
    body: dict[str, Any] = {
        "id": cfg.pool_id,
        "vmSize": cfg.vm_size,
        "virtualMachineConfiguration": {"imageReference": image_ref, "nodeAgentSKUId": sku},
        "targetDedicatedNodes": cfg.dedicated_nodes,
        "targetLowPriorityNodes": cfg.low_priority_nodes,
        "taskSlotsPerNode": cfg.task_slots_per_node,
        "taskSchedulingPolicy": {"nodeFillType": "spread"},
        "startTask": start_task(cfg, spec.storage.account_url if spec else None, config_url),
    }
    if cfg.package.kind == "application":
        body["applicationPackageReferences"] = [
            {"applicationId": application_reference(cfg), "version": cfg.package.version}
        ]
    if cfg.mounts:
        body["mountConfiguration"] = list(cfg.mounts)
    licenses = licenses_for(spec)
    if cfg.application_licenses and licenses:
        body["applicationLicenses"] = licenses
    return body
