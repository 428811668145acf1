"""What a Batch pool needs besides its REST body, and what will not work as configured.

`pool_uploads`: the blobs a pool made from `pool-json` reads (its node config, the package)
and where they must be. `batch_warnings`: one list for `pool-json`, `job-json` and `submit`:
emulator URLs (Batch nodes cannot reach Azurite), a storage account that is not the Batch
account's linked one, and the node config's secrets.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from node_agent.batch.account import application_name
from node_agent.batch.jobjson import credential_warnings
from node_agent.batch.pooljson import (
    AGENT_CONTAINER,
    BatchPoolSettings,
    pool_config_blob,
    pool_config_url,
    secret_warnings,
)
from node_agent.conventions import job_container
from node_agent.mounts.model import AzureFilesMount
from node_agent.spec import JobSpec
from node_agent.storage.credentials import account_name, is_local_host

EMULATOR_ACCOUNT = "devstoreaccount1"  # Azurite's (and the old storage emulator's) account


def is_emulator_url(url: str) -> bool:
    """An Azurite / storage emulator endpoint: a local or bare-IP host, a host named
    `azurite`, or the emulator's well-known account."""
    host = (urlparse(url).hostname or "").lower()
    return is_local_host(host) or host.startswith("azurite") or EMULATOR_ACCOUNT in url


def _emulator_fields(spec: JobSpec | None, cfg: BatchPoolSettings) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if spec is not None and is_emulator_url(spec.storage.account_url):
        found.append(("storage.account_url", spec.storage.account_url))
    for i, r in enumerate(spec.storage.replicas if spec is not None else []):
        if is_emulator_url(r.account_url):
            found.append((f"storage.replicas[{i}]", r.account_url))
    if cfg.package.url and is_emulator_url(cfg.package.url):
        found.append(("package.url", cfg.package.url))
    if cfg.node_config is not None:
        for i, m in enumerate(cfg.node_config.mounts):
            if not isinstance(m, AzureFilesMount) and is_emulator_url(m.account_url):
                found.append((f"node_config.mounts[{i}].account_url", m.account_url))
    for i, entry in enumerate(cfg.mounts):
        for conf in entry.values():
            if isinstance(conf, dict) and _mentions_emulator(conf):
                found.append((f"mounts[{i}]", EMULATOR_ACCOUNT))
    return found


def _mentions_emulator(conf: dict[str, Any]) -> bool:
    return any(
        isinstance(v, str) and (v == EMULATOR_ACCOUNT or ("://" in v and is_emulator_url(v)))
        for v in conf.values()
    )


def _linked_storage(spec: JobSpec | None, cfg: BatchPoolSettings) -> list[str]:
    linked = cfg.batch_account.auto_storage_account if cfg.batch_account else None
    if spec is None or linked is None:
        return []
    used = account_name(spec.storage.account_url)
    if used == linked:
        return []
    out = [
        f"storage.account_url: account '{used}' is not the Batch account's linked "
        f"(auto-storage) account '{linked}': frames and logs go to '{used}' "
        f"(container {job_container(spec.job_id)}), but the portal and Batch "
        "Explorer show File Conventions outputs on a task's Outputs tab only from the "
        "linked account"
    ]
    if cfg.blob_access == "auto_storage":
        out.append(
            f"blob_access 'auto_storage': the nodes download the package, node config and "
            f"spec from the linked account '{linked}', but submit uploads them to '{used}': "
            "the start task and job preparation will fail; use the linked account or "
            "blob_access 'identity'"
        )
    return out


def batch_warnings(spec: JobSpec | None, cfg: BatchPoolSettings) -> list[str]:
    """Every warning about running this spec on this pool on Batch (one line each)."""
    out = [
        f"{field}: {url} is a storage emulator (Azurite) URL: Batch nodes cannot reach it; "
        "use the real storage account in a spec and pool settings meant for Batch"
        for field, url in _emulator_fields(spec, cfg)
    ]
    return out + _linked_storage(spec, cfg) + secret_warnings(cfg) + credential_warnings(cfg)


def pool_uploads(
    spec: JobSpec | None, cfg: BatchPoolSettings, config_file: str | None = None
) -> list[str]:
    """What must be in storage before the pool's nodes start, and where (one line each)."""
    linked = cfg.batch_account.auto_storage_account if cfg.batch_account else None
    in_linked = f"in the Batch account's linked storage account{f' {linked!r}' if linked else ''}"
    out: list[str] = []
    if cfg.node_config is not None:
        blob = pool_config_blob(cfg.pool_id)
        if cfg.blob_access == "auto_storage":
            where = f"{AGENT_CONTAINER}/{blob} {in_linked}"
        elif spec is not None:
            where = pool_config_url(spec.storage.account_url, cfg.pool_id)
        else:
            where = f"{AGENT_CONTAINER}/{blob} in the spec's storage account"
        src = (
            f" (written to {config_file})" if config_file else " (--node-config-out FILE writes it)"
        )
        out.append(f"the node config pool-config.json{src} to {where}; `batch submit` uploads it")
    pkg = cfg.package
    if pkg.kind == "application":
        acct = cfg.batch_account
        name = application_name(pkg.application_id)
        out.append(
            f"the package as application package {name} {pkg.version}: "
            f"az batch application package create --application-name {name} "
            f"--version-name {pkg.version} --package-file node-agent-{pkg.version}.zip "
            f"-n {acct.name if acct else '<account>'} "
            f"-g {acct.resource_group if acct else '<resource-group>'} "
            "(the zip from `batch package`)"
        )
    elif cfg.blob_access == "auto_storage":
        out.append(f"the package zip to {AGENT_CONTAINER}/{pkg.blob or '<blob>'} {in_linked}")
    else:
        out.append(f"the package zip to {pkg.url or '<package.url>'}")
    return out


def node_summary(cfg: BatchPoolSettings) -> str:
    """The pool's size, dedicated and spot, and what spot means for the job."""
    text = f"{cfg.dedicated_nodes} dedicated + {cfg.low_priority_nodes} spot {cfg.vm_size}"
    if cfg.low_priority_nodes:
        # https://learn.microsoft.com/azure/batch/batch-spot-vms: no SLA, preemptible at any
        # time, a separate (larger) vCPU quota; Batch re-queues the tasks of a preempted node
        text += (
            " (spot: billed at the lower Spot/low-priority price, a separate vCPU quota, "
            "can be preempted at any time: Batch re-queues a preempted node's tasks)"
        )
    return text
