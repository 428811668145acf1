"""`batch submit` against a local HTTP endpoint replaying recorded Batch REST exchanges."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from helpers import REPO, CliResult, make_spec_doc, node_of, run_cli, run_job_prep, upload_tree

from node_agent.azurite import AzuriteServer
from node_agent.batch.jobjson import SPEC_CONTAINER, job_json, spec_blob
from node_agent.batch.pooljson import PackageSource, load_pool_settings, pool_json
from node_agent.batch.submit import SubmitOptions, submit
from node_agent.errors import ExitCode
from node_agent.pins import LATEST
from node_agent.poolconfig import NodeConfig, load_node_config
from node_agent.redact import Redactor
from node_agent.spec import load_spec
from node_agent.storage import BlobStore
from node_agent.sync.manifest import parse

FIXTURES = REPO / "tests" / "fixtures"
KEY = "c2VjcmV0LWJhdGNoLWtleS1mb3ItdGVzdHMtb25seQ=="  # base64, as Batch keys are
IDENTITY = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/render"


class Replay:
    """An HTTP server on 127.0.0.1 that answers requests with recorded exchanges, in order."""

    def __init__(self, exchanges: list[dict[str, Any]]) -> None:
        self.exchanges = list(exchanges)
        self.requests: list[dict[str, Any]] = []
        self.mismatches: list[str] = []
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                url = urlparse(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                req = {
                    "method": self.command,
                    "path": url.path,
                    "query": parse_qs(url.query),
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": json.loads(raw) if raw else None,
                }
                replay.requests.append(req)
                want = replay.exchanges.pop(0) if replay.exchanges else None
                if want is None or (want["method"], want["path"]) != (self.command, url.path):
                    replay.mismatches.append(f"{self.command} {url.path} (expected {want})")
                    self._send(
                        400, {"code": "UnexpectedRequest", "message": {"value": "not recorded"}}, {}
                    )
                    return
                body = want.get("body")
                if want.get("taskResults"):
                    body = {
                        "value": [
                            {
                                "status": want["taskResults"],
                                "taskId": t["id"],
                                **(
                                    {"error": {"code": "TaskExists", "message": {"value": "x"}}}
                                    if want["taskResults"] != "success"
                                    else {}
                                ),
                            }
                            for t in req["body"]["value"]
                        ]
                    }
                self._send(want["status"], body, want.get("headers", {}))

            def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
                data = (
                    json.dumps(body).encode()
                    if body is not None and self.command != "HEAD"
                    else b""
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/json;odata=minimalmetadata")
                self.send_header("request-id", "00000000-0000-0000-0000-000000000000")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_HEAD = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Replay:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recording() -> list[dict[str, Any]]:
    return list(json.loads((FIXTURES / "batch_recording_submit.json").read_text())["exchanges"])


@pytest.fixture
def files(tmp_path: Path, azurite: AzuriteServer) -> dict[str, Path]:
    doc = make_spec_doc(azurite.account_url, frames="1-250")
    doc["assets"][0]["prefix"] = "submit-test/"  # type: ignore[index]
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(doc))
    pool = tmp_path / "pool.yaml"
    pool.write_text(yaml.safe_dump({"identity_resource_id": IDENTITY, "task_slots_per_node": 2}))
    pkg = tmp_path / "node-agent-0.1.0.zip"
    pkg.write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip is enough to test the upload
    assets = tmp_path / "assets"
    (assets / "tex").mkdir(parents=True)
    (assets / "spin.blend").write_bytes(b"scene")
    (assets / "tex" / "wood.png").write_bytes(b"png")
    # already uploaded, as a listed source: what submit without --assets checks in storage
    upload_tree(BlobStore(load_spec(spec).storage, Redactor()), assets, "assets", "submit-test/")
    return {"spec": spec, "pool": pool, "package": pkg, "assets": assets}


def _submit(
    files: dict[str, Path], endpoint: str, *extra: str, account: str | None = "acct"
) -> CliResult:
    """`node-agent batch submit` of the test's spec and pool settings to `endpoint`, in-process."""
    args = ["batch", "submit", str(files["spec"]), "--pool-settings", str(files["pool"])]
    args += ["--endpoint", endpoint, *(["--account", account] if account else []), *extra]
    return run_cli(args)


def _replayed(
    files: dict[str, Path],
    exchanges: list[dict[str, Any]],
    *extra: str,
    account: str | None = "acct",
) -> tuple[CliResult, Replay]:
    """`_submit` to a Replay of `exchanges`: the CLI's result and what Batch was sent."""
    with Replay(exchanges) as batch:
        res = _submit(files, batch.url, *extra, account=account)
    return res, batch


def _submit_ok(
    files: dict[str, Path],
    exchanges: list[dict[str, Any]],
    *extra: str,
    account: str | None = "acct",
) -> tuple[CliResult, Replay]:
    """`_replayed`, which must succeed having made exactly the recorded requests, in order."""
    res, batch = _replayed(files, exchanges, *extra, account=account)
    assert res.returncode == 0, res.stdout + res.stderr
    assert batch.mismatches == [] and batch.exchanges == []
    return res, batch


@pytest.fixture
def batch_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Batch account's shared key, as the submitting shell has it."""
    monkeypatch.setenv("AZURE_BATCH_ACCESS_KEY", KEY)


def test_submit_sends_pool_job_and_task_chunks(
    files: dict[str, Path],
    recording: list[dict[str, Any]],
    store: BlobStore,
    batch_key: None,
) -> None:
    res, batch = _submit_ok(
        files,
        recording,
        "--create-pool",
        "--package",
        str(files["package"]),
        "--assets",
        str(files["assets"]),
    )
    assert [(r["method"], r["path"]) for r in batch.requests] == [
        ("HEAD", "/pools/render-pool"),
        ("POST", "/pools"),
        ("POST", "/jobs"),
        ("POST", "/jobs/job-a/addtaskcollection"),
        ("POST", "/jobs/job-a/addtaskcollection"),
        ("POST", "/jobs/job-a/addtaskcollection"),
        ("PATCH", "/jobs/job-a"),
    ]
    for r in batch.requests:
        assert r["query"]["api-version"] == ["2025-06-01"]
        assert r["headers"]["authorization"].startswith("SharedKey acct:")
        assert KEY not in json.dumps(r["body"])
    assert KEY not in res.stdout + res.stderr
    # the bodies are exactly what pool-json / job-json print (with the uploaded package)
    spec = load_spec(files["spec"])
    package_url = f"{spec.storage.account_url}/{SPEC_CONTAINER}/packages/node-agent-0.1.0.zip"
    cfg = load_pool_settings(files["pool"])
    cfg = cfg.model_copy(update={"package": PackageSource(kind="resource_file", url=package_url)})
    assert batch.requests[1]["body"] == pool_json(cfg, spec)
    doc = job_json(spec, cfg)
    assert batch.requests[2]["body"] == doc["job"]
    chunks = [r["body"]["value"] for r in batch.requests[3:6]]
    assert [len(c) for c in chunks] == [100, 100, 50]
    assert [t for c in chunks for t in c] == doc["tasks"]
    assert batch.requests[6]["body"] == {"onAllTasksComplete": "terminatejob"}
    # storage: package, spec and assets are where the nodes will look
    names = {b.name for b in store.list_blobs(SPEC_CONTAINER)}
    assert {"packages/node-agent-0.1.0.zip", spec_blob("job-a")} <= names
    assert json.loads(store.read_blob(SPEC_CONTAINER, spec_blob("job-a")))["job_id"] == "job-a"
    # --assets is an `assets push` into the first source's prefix, pinned in the spec sent
    pin = store.read_blob("assets", "submit-test/manifests/latest").decode()
    sent = json.loads(store.read_blob(SPEC_CONTAINER, spec_blob("job-a")))
    assert sent["assets"][0]["manifest"] == pin
    manifest = parse(store.read_blob("assets", f"submit-test/manifests/{pin}.json"), "m")
    assert sorted(f.path for f in manifest) == ["spin.blend", "tex/wood.png"]
    content = {b.name for b in store.list_blobs("assets", "submit-test/content/")}
    assert content == {f"submit-test/content/{f.sha256}" for f in manifest}
    assert f"the job pins manifest {pin}" in res.stdout
    assert "250 task(s) in 3 request(s)" in res.stdout
    assert "submit: warning: storage.account_url: http://127.0.0.1:" in res.stdout  # Azurite
    assert "is a storage emulator (Azurite) URL: Batch nodes cannot reach it" in res.stdout


def test_existing_pool_is_reused_and_a_refused_task_fails_the_submit(
    files: dict[str, Path],
    batch_key: None,
) -> None:
    exchanges = [
        {"method": "HEAD", "path": "/pools/render-pool", "status": 200},
        {"method": "POST", "path": "/jobs", "status": 201},
        {
            "method": "POST",
            "path": "/jobs/job-a/addtaskcollection",
            "status": 200,
            "taskResults": "clienterror",
        },
    ]
    res, batch = _replayed(files, exchanges, "--create-pool")
    assert batch.mismatches == [] and batch.exchanges == []
    assert res.returncode == int(ExitCode.BATCH)
    assert "pool render-pool exists; using it" in res.stdout
    assert res.stderr.strip() == (
        "node-agent: error: Batch: 100 of 100 tasks were not added; first: task 'frames-00001-00001': TaskExists"
    )


def test_rejected_key_is_one_line_without_the_key(
    files: dict[str, Path],
    batch_key: None,
) -> None:
    exchanges = [
        {
            "method": "POST",
            "path": "/jobs",
            "status": 403,
            "body": {
                "code": "AuthenticationFailed",
                "message": {
                    "lang": "en-US",
                    "value": f"Server failed to authenticate the request. key {KEY}",
                },
            },
        }
    ]
    res, batch = _replayed(files, exchanges)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and "adding job 'job-a'" in lines[0] and "AuthenticationFailed" in lines[0]
    )
    assert KEY not in res.stdout + res.stderr


def test_submit_needs_a_pool_identity(files: dict[str, Path]) -> None:
    files["pool"].write_text(yaml.safe_dump({"pool_id": "p"}))
    res = _submit(files, "http://127.0.0.1:9", account=None)
    assert res.returncode == int(ExitCode.USAGE)
    assert "identity_resource_id is required" in res.stderr


def test_auto_storage_submit_puts_package_and_spec_where_batch_downloads_them(
    files: dict[str, Path],
    recording: list[dict[str, Any]],
    store: BlobStore,
    batch_key: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files["pool"].write_text(yaml.safe_dump({"blob_access": "auto_storage"}))  # no identity needed
    monkeypatch.setenv("AZURE_BATCH_ACCOUNT", "farmacct")
    res, batch = _submit_ok(
        files, recording, "--create-pool", "--package", str(files["package"]), account=None
    )
    start_rf = batch.requests[1]["body"]["startTask"]["resourceFiles"]
    assert start_rf == [
        {"autoStorageContainerName": "node-agent", "blobPrefix": "packages/node-agent-0.1.0.zip"}
    ]
    prep_rf = batch.requests[2]["body"]["jobPreparationTask"]["resourceFiles"]
    assert prep_rf == [{"autoStorageContainerName": "job-job-a", "blobPrefix": "job.json"}]
    assert "packages/node-agent-0.1.0.zip" in {b.name for b in store.list_blobs("node-agent")}
    assert json.loads(store.read_blob("job-job-a", "job.json"))["job_id"] == "job-a"
    # without --account, the account name comes from $AZURE_BATCH_ACCOUNT (as for the Azure CLI)
    assert batch.requests[0]["headers"]["authorization"].startswith("SharedKey farmacct:")


def test_submit_uploads_the_pool_config_the_start_task_reads(
    files: dict[str, Path],
    recording: list[dict[str, Any]],
    store: BlobStore,
    batch_key: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "bGlicmFyeS1rZXktdGhhdC1tdXN0LW5vdC1sZWFr"
    monkeypatch.setenv("LIBRARY_KEY", secret)  # as if the submitting shell had it
    node_config = {
        "renderers": [{"name": "arnold", "executable": "/opt/arnold/bin/kick"}],
        "min_free_temp_disk_gb": 50,
        "mounts": [
            {
                "name": "library",
                "driver": "blobfuse2",
                "account_url": "https://myassets.blob.core.windows.net",
                "container": "library",
                "auth": {"mode": "key", "env": "LIBRARY_KEY"},
            }
        ],
    }
    files["pool"].write_text(
        yaml.safe_dump(
            {
                "identity_resource_id": IDENTITY,
                "node_config": node_config,
                # the default package is an application package: its full id needs the account
                "batch_account": {"subscription_id": "s", "resource_group": "g", "name": "acct"},
            }
        )
    )
    res, batch = _submit_ok(files, recording, "--create-pool")
    spec = load_spec(files["spec"])
    blob = "pools/render-pool/pool-config.json"
    url = f"{spec.storage.account_url}/{SPEC_CONTAINER}/{blob}"
    pool_body = batch.requests[1]["body"]
    assert batch.requests[1]["path"] == "/pools"
    start = pool_body["startTask"]
    assert start["resourceFiles"] == [
        {
            "httpUrl": url,
            "filePath": "pool-config.json",
            "identityReference": {"resourceId": IDENTITY},
        }
    ]
    assert start["commandLine"].endswith(
        '"$NODE_AGENT_HOME/start_task/run.sh" --pool-config pool-config.json\''
    )
    cfg = load_pool_settings(files["pool"])
    assert pool_body == pool_json(cfg, spec)  # what pool-json prints
    # the start task's environment names no secret, and no secret went anywhere
    assert start["environmentSettings"] == [{"name": "NODE_AGENT_HOME", "value": cfg.home()}]
    for r in batch.requests:
        assert secret not in json.dumps(r["body"])
    uploaded = store.read_blob(SPEC_CONTAINER, blob)
    assert secret.encode() not in uploaded
    # the blob is the node config the start task loads with --pool-config
    kept = files["spec"].parent / "pool-config.json"
    kept.write_bytes(uploaded)
    assert load_node_config(kept) == NodeConfig.model_validate(node_config)
    assert f"submit: pool config uploaded to {url}" in res.stdout
    assert "submit: warning: node_config reads mount secrets from $LIBRARY_KEY" in res.stdout
    assert secret not in res.stdout + res.stderr


def _job_exchanges(job: str) -> list[dict[str, Any]]:
    """What Batch answers to a submit of a few tasks to an existing pool."""
    return [
        {"method": "POST", "path": "/jobs", "status": 201},
        {
            "method": "POST",
            "path": f"/jobs/{job}/addtaskcollection",
            "status": 200,
            "taskResults": "success",
        },
        {"method": "PATCH", "path": f"/jobs/{job}", "status": 200},
    ]


def test_submit_without_assets_checks_storage_like_validate(
    files: dict[str, Path],
    store: BlobStore,
    blender_scene: Path,
    tmp_path: Path,
    batch_key: None,
) -> None:
    """No --assets: the upload in storage is scanned as `validate --storage` does; both
    textures left out: exit 12, each named, nothing sent to Batch; --allow-missing submits
    with warnings and the scene's range read from the uploaded .blend."""
    upload = tmp_path / "upload"
    shutil.copytree(blender_scene, upload)
    shutil.rmtree(upload / "textures")
    upload_tree(store, upload, "assets", "no-textures/")
    doc = yaml.safe_load(files["spec"].read_text())
    doc["job_id"] = "job-st"
    doc["assets"][0]["prefix"] = "no-textures/"
    del doc["render"]["frames"]
    files["spec"].write_text(yaml.safe_dump(doc))

    res, batch = _replayed(files, [])
    assert res.returncode == int(ExitCode.MISSING_ASSET), res.stdout + res.stderr
    missing = sorted(ln for ln in res.stderr.splitlines() if "missing dependency" in ln)
    assert len(missing) == 2, res.stderr
    assert "'textures/checker.png'" in missing[0] and "'textures/stripes.png'" in missing[1]
    assert "render.scene 'spin.blend' in storage: 2 file(s) the render needs are missing" in (
        res.stderr
    )
    assert batch.requests == []
    assert spec_blob("job-st") not in {b.name for b in store.list_blobs(SPEC_CONTAINER)}

    res, batch = _submit_ok(files, _job_exchanges("job-st"), "--allow-missing")
    warned = [ln for ln in res.stdout.splitlines() if "warning: preflight: missing" in ln]
    assert len(warned) == 2, res.stdout
    sent = json.loads(store.read_blob(SPEC_CONTAINER, spec_blob("job-st")))
    assert sent["render"]["frames"] == "1-24"


def test_submit_pins_latest_and_a_later_push_reaches_no_node(
    files: dict[str, Path],
    store: BlobStore,
    tmp_path: Path,
    batch_key: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`manifest: latest` at submit: the spec stored for the nodes names the hash of the
    last push; a push after the submit leaves it, and a node's job prep gets the first."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ws = files["assets"]

    def push() -> str:
        args = ["assets", "push", str(ws), "--project", "pin-test", "--container", "assets"]
        r = run_cli([*args, "--account-url", load_spec(files["spec"]).storage.account_url])
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()[-1].removeprefix("manifest ")

    m1 = push()
    spec = load_spec(files["spec"])
    source = spec.assets[0].model_copy(update={"prefix": "pin-test/", "manifest": LATEST})
    spec = spec.model_copy(update={"job_id": "job-pin", "assets": [source]})
    lines: list[str] = []
    with Replay(_job_exchanges("job-pin")) as batch:
        render = spec.render.model_copy(update={"frames": "1-2"})
        spec = spec.model_copy(update={"render": render})
        submit(
            spec,
            load_pool_settings(files["pool"]),
            SubmitOptions(batch.url, "acct"),
            Redactor(),
            lines.append,
        )
    assert batch.mismatches == [] and batch.exchanges == []
    assert f"submit: assets[0] 'scene': manifest: latest -> {m1}" in lines

    (ws / "tex" / "wood.png").write_bytes(b"repainted")
    m2 = push()
    assert m2 != m1
    stored = tmp_path / "job.json"
    stored.write_bytes(store.read_blob(SPEC_CONTAINER, spec_blob("job-pin")))
    assert json.loads(stored.read_text())["assets"][0]["manifest"] == m1
    r = run_job_prep(tmp_path / "node", "job-pin", stored)
    assert r.returncode == 0, r.stderr
    view = node_of(tmp_path / "node", "job-pin").job_assets_dir()
    assert (view / "tex" / "wood.png").read_bytes() == b"png"  # the first push
