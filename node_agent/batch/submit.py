"""`node-agent batch submit`: package, spec and assets to storage; pool, job and tasks to Batch.

Uses the official azure-batch SDK. Credentials: a shared key from an environment variable
(never from argv, never printed), else Entra ID through azure-identity's DefaultAzureCredential.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential, TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)

from node_agent import preflight
from node_agent.batch.jobjson import SPEC_CONTAINER, job_json, spec_blob, task_chunks
from node_agent.batch.pooljson import (
    AGENT_CONTAINER,
    BatchPoolSettings,
    node_config_json,
    pool_config_blob,
    pool_config_url,
    pool_json,
)
from node_agent.batch.warnings import batch_warnings
from node_agent.conventions import job_container
from node_agent.errors import BatchServiceError, SpecError, UsageError
from node_agent.jobplan import POOL_CONFIG_FILE, SPEC_FILE
from node_agent.pins import resolve_latest
from node_agent.preflight_storage import check_storage
from node_agent.redact import Redactor
from node_agent.spec import JobSpec, submitted
from node_agent.storage import BlobStore
from node_agent.storage.retry import policy
from node_agent.sync.manifest import PushSummary, project_prefix, push, push_cache_file
from node_agent.sync.progress import format_bytes

KEY_ENV = "AZURE_BATCH_ACCESS_KEY"  # the same variables the Azure CLI reads
ACCOUNT_ENV = "AZURE_BATCH_ACCOUNT"
ENDPOINT_ENV = "AZURE_BATCH_ENDPOINT"


@dataclass(frozen=True)
class SubmitOptions:
    endpoint: str
    account_name: str | None = None
    key_env: str = KEY_ENV
    create_pool: bool = False
    package: Path | None = None
    assets_dir: Path | None = None
    allow_missing: bool = False  # missing scene dependencies are warnings, not exit 12
    strict: bool = False  # a frame outside the scene's range is an error (exit 2)


@dataclass
class SubmitResult:
    pool_created: bool
    tasks: int
    requests: int  # add-task-collection requests
    package_url: str | None
    pool_config_url: str | None = None


def _account_from_endpoint(endpoint: str) -> str:
    return (urlparse(endpoint).hostname or "").split(".")[0]


def make_client(opts: SubmitOptions, redactor: Redactor) -> BatchClient:
    """Shared key when the key variable is set, else Entra ID (az login, managed identity...)."""
    if not urlparse(opts.endpoint).scheme or not urlparse(opts.endpoint).hostname:
        raise UsageError(
            f"--endpoint '{opts.endpoint}' is not a URL like https://<account>.<region>.batch.azure.com"
        )
    key = os.environ.get(opts.key_env)
    credential: AzureNamedKeyCredential | TokenCredential
    if key:
        redactor.add(key)
        account = opts.account_name or _account_from_endpoint(opts.endpoint)
        credential = AzureNamedKeyCredential(account, key)
    else:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    return BatchClient(endpoint=opts.endpoint.rstrip("/"), credential=credential)


@contextmanager
def _batch_errors(what: str, redactor: Redactor) -> Iterator[None]:
    try:
        yield
    except ClientAuthenticationError as e:
        raise UsageError(
            f"Batch: {what}: authentication failed ({redactor(_first_line(e))})"
        ) from None
    except HttpResponseError as e:
        code = getattr(getattr(e, "error", None), "code", None) or e.reason or ""
        raise BatchServiceError(
            f"Batch: {what}: HTTP {e.status_code} {code}: {redactor(_first_line(e))}"
        ) from None
    except AzureError as e:
        raise BatchServiceError(f"Batch: {what}: {redactor(_first_line(e))}") from None


def _first_line(e: Exception) -> str:
    text = str(getattr(e, "message", None) or e)
    return (text.strip().splitlines() or [type(e).__name__])[0]


def _pool_exists(client: BatchClient, pool_id: str) -> bool:
    # azure-batch 15.1's error policy raises on the 404 that pool_exists means to return as False
    try:
        return bool(client.pool_exists(pool_id))
    except ResourceNotFoundError:
        return False


def storage_warnings(spec: JobSpec) -> list[str]:
    """What will not work on Azure nodes with this spec's storage auth (local URLs are
    batch_warnings' part)."""
    auths = [("storage.auth", spec.storage.auth)] + [
        (f"storage.replicas[{i}].auth", r.auth)
        for i, r in enumerate(spec.storage.replicas)
        if r.auth is not None
    ]
    return [
        f"{where}.kind '{auth.kind}' reads its secret from ${auth.env} on the node; "
        "submit does not copy secrets into the job: use managed_identity on Batch"
        for where, auth in auths
        if auth.kind in ("sas", "account_key", "connection_string")
    ]


def push_assets(store: BlobStore, spec: JobSpec, local: Path) -> tuple[JobSpec, PushSummary]:
    """`assets push` of a local folder into the spec's first asset source (its container,
    its prefix as the project: content by hash, a manifest), and the spec with that source
    pinned to the new manifest (node_agent.sync.manifest): what the nodes sync is exactly
    this push, whatever is pushed after."""
    if not local.is_dir():
        raise UsageError(f"--assets '{local}': not a folder")
    src = spec.assets[0]
    cache = push_cache_file(local, spec.storage.account_url, src.container, src.prefix)
    summary = push(store, src.container, src.prefix, local, cache)
    pinned = src.model_copy(update={"manifest": summary.manifest})
    return spec.model_copy(update={"assets": [pinned, *spec.assets[1:]]}), summary


def _check_added(result: bm.BatchCreateTaskCollectionResult, chunk: list[dict[str, Any]]) -> None:
    failed = [r for r in (result.result_values or []) if r.status != bm.BatchTaskAddStatus.SUCCESS]
    if failed:
        r = failed[0]
        code = r.error.code if r.error else r.status
        raise BatchServiceError(
            f"Batch: {len(failed)} of {len(chunk)} tasks were not added; first: task '{r.task_id}': {code}"
        )


def preflight_spec(
    spec: JobSpec, opts: SubmitOptions, say: Callable[[str], None], redactor: Redactor
) -> JobSpec:
    """Before anything is uploaded: the scene's dependencies checked (exit 12 naming every
    missing one unless allow_missing) in the --assets folder, or without it in storage as
    `validate --storage` does (which also pins `manifest: latest` to the last push), and an
    omitted render.frames filled from the scene; the spec to submit."""
    log = preflight.say_logger("submit", lambda line: say(f"submit: {line}"))
    where = f"render.scene '{spec.render.scene}'"
    if opts.assets_dir is None:
        return check_storage(
            spec,
            allow_missing=opts.allow_missing,
            strict=opts.strict,
            log=log,
            where=f"{where} in storage",
            redactor=redactor,
        )
    if not opts.assets_dir.is_dir():
        raise UsageError(f"--assets '{opts.assets_dir}': not a folder")
    spec, notes = preflight.with_scene_frames(spec, opts.assets_dir)
    for note in preflight.strict_notes(notes, strict=opts.strict):
        say(f"submit: warning: {note}")
    preflight.enforce(
        spec.render,
        opts.assets_dir,
        allow_missing=opts.allow_missing,
        log=log,
        where=where,
        outside_ok=False,
    )
    return spec


def submit(
    spec: JobSpec,
    pool: BatchPoolSettings,
    opts: SubmitOptions,
    redactor: Redactor,
    say: Callable[[str], None] = print,
) -> SubmitResult:
    if pool.blob_access == "identity" and not pool.identity_resource_id:
        raise SpecError(
            "pool settings: identity_resource_id is required with blob_access 'identity': the nodes "
            "read the package and the job spec with the pool's managed identity "
            "(or use blob_access 'auto_storage')"
        )
    # the spec submitted: frames filled from the scene, `manifest: latest` pinned
    spec = submitted(preflight_spec(spec, opts, say, redactor))
    for line in batch_warnings(spec, pool) + storage_warnings(spec):
        say(f"submit: warning: {line}")
    store = BlobStore(spec.storage, redactor, retry=policy(spec.policies))
    config_url = None
    if pool.node_config is not None:
        # the start task's resource file: where pool-json's start task reads it (a pool made
        # from pool-json elsewhere reads the same blob), uploaded on every submit
        store.ensure_container(AGENT_CONTAINER)
        config_url = pool_config_url(spec.storage.account_url, pool.pool_id)
        with tempfile.TemporaryDirectory(prefix="node-agent-submit-") as tmp:
            cfg_file = Path(tmp) / POOL_CONFIG_FILE
            cfg_file.write_bytes(node_config_json(pool.node_config))
            store.upload_file(
                cfg_file,
                AGENT_CONTAINER,
                pool_config_blob(pool.pool_id),
                content_type="application/json",
            )
        say(f"submit: pool config uploaded to {config_url}")
    package_url = None
    if opts.package is not None:
        if not opts.package.is_file():
            raise UsageError(f"--package '{opts.package}': no such file")
        store.ensure_container(SPEC_CONTAINER)
        blob = f"packages/{opts.package.name}"
        package_url = store.upload_file(opts.package, SPEC_CONTAINER, blob, follow_links=True)
        update = {"kind": "resource_file", "url": package_url, "blob": blob}
        pkg = pool.package.model_copy(update=update)
        pool = pool.model_copy(update={"package": pkg})
        say(f"submit: package uploaded to {package_url}")
    if opts.assets_dir is not None:
        spec, pushed = push_assets(store, spec, opts.assets_dir)
        spec = resolve_latest(spec, store, lambda line: say(f"submit: {line}"))  # the others
        src = spec.assets[0]
        say(
            f"submit: assets pushed to {src.container}/{project_prefix(src.prefix)}: "
            f"{pushed.files} file(s), {pushed.uploaded} uploaded "
            f"({format_bytes(pushed.bytes_uploaded)}); the job pins manifest {pushed.manifest}"
        )
    container, blob = SPEC_CONTAINER, spec_blob(spec.job_id)
    if pool.blob_access == "auto_storage":
        container, blob = job_container(spec.job_id), SPEC_FILE
    store.ensure_container(container)
    with tempfile.TemporaryDirectory(prefix="node-agent-submit-") as tmp:
        spec_file = Path(tmp) / SPEC_FILE
        spec_file.write_text(spec.model_dump_json(indent=2), encoding="utf-8")
        store.upload_file(spec_file, container, blob, content_type="application/json")
    doc = job_json(spec, pool)
    client = make_client(opts, redactor)
    created = False
    with client:
        if opts.create_pool:
            with _batch_errors(f"pool '{pool.pool_id}'", redactor):
                if _pool_exists(client, pool.pool_id):
                    say(f"submit: pool {pool.pool_id} exists; using it")
                else:
                    body = pool_json(pool, spec, config_url)
                    client.create_pool(bm.BatchPoolCreateOptions(body))
                    created = True
                    say(
                        f"submit: pool {pool.pool_id} created ({pool.vm_size}, "
                        f"{pool.dedicated_nodes} dedicated + {pool.low_priority_nodes} spot node(s))"
                    )
        with _batch_errors(f"adding job '{spec.job_id}'", redactor):
            client.create_job(bm.BatchJobCreateOptions(doc["job"]))
        chunks = task_chunks(doc["tasks"])
        for i, chunk in enumerate(chunks, 1):
            with _batch_errors(f"adding tasks (request {i} of {len(chunks)})", redactor):
                result = client.create_task_collection(
                    spec.job_id, bm.BatchTaskGroup({"value": chunk})
                )
            _check_added(result, chunk)
        with _batch_errors(f"updating job '{spec.job_id}'", redactor):
            # only now: a job with no tasks yet would count as complete and terminate at once
            client.update_job(spec.job_id, bm.BatchJobUpdateOptions(doc["jobUpdate"]))
    say(
        f"submit: job {spec.job_id} on pool {pool.pool_id}: {len(doc['tasks'])} task(s) "
        f"in {len(chunks)} request(s)"
    )
    return SubmitResult(created, len(doc["tasks"]), len(chunks), package_url, config_url)
