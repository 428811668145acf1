"""`batch pool-json` against the Batch REST spec (2025-06-01): the application package's full
resource id, spot nodes, what must be uploaded, warnings, and the REST-model check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from azure.batch import models as bm
from helpers import make_spec_doc, run_cli

from node_agent.batch.pooljson import BatchPoolSettings, PackageSource, app_package_var, pool_json
from node_agent.batch.restcheck import unknown_fields
from node_agent.errors import ExitCode, SpecError
from node_agent.spec import JobSpec, spec_from_data

URL = "https://acct.blob.core.windows.net"
SUB, RG, ACCOUNT = "0000-sub", "render-rg", "renderbatch"
APP_ID = (
    f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Batch/"
    f"batchAccounts/{ACCOUNT}/applications/node-agent"
)
BATCH_ACCOUNT = {"subscription_id": SUB, "resource_group": RG, "name": ACCOUNT}
# the pool's managed identity: without one, batch_warnings also says job prep cannot end the job
IDENTITY = (
    f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities/render"
)


def _spec(url: str = URL) -> JobSpec:
    doc = make_spec_doc(url)
    doc["storage"]["auth"] = {"kind": "managed_identity"}  # type: ignore[index]
    return spec_from_data(doc)


def _cli(tmp_path: Path, settings: dict[str, Any], *extra: str, url: str = URL) -> Any:
    spec = tmp_path / "job.yaml"
    doc = make_spec_doc(url)
    spec.write_text(yaml.safe_dump(doc))
    cfg = tmp_path / "pool.yaml"
    cfg.write_text(yaml.safe_dump(settings))
    return run_cli(["batch", "pool-json", str(spec), "--pool-settings", str(cfg), *extra])


# -- 1. application package reference: the full resource id ------------------------------


def test_application_package_id_is_built_from_the_batch_account() -> None:
    cfg = BatchPoolSettings.model_validate({"batch_account": BATCH_ACCOUNT})
    body = pool_json(cfg, _spec())
    [ref] = body["applicationPackageReferences"]
    assert ref == {"applicationId": APP_ID, "version": cfg.package.version}
    assert unknown_fields(bm.BatchPoolCreateOptions, body) == []
    assert bm.BatchPoolCreateOptions(body).application_package_references[0].application_id == (
        APP_ID
    )
    # the node's variable is named after the application's name, not its resource id
    assert (
        f"$AZ_BATCH_APP_PACKAGE_node_agent_{cfg.package.version.replace('.', '_')}"
        in (body["startTask"]["commandLine"])
    )


def test_a_full_application_id_is_taken_as_it_is() -> None:
    pkg = PackageSource(application_id=APP_ID.replace("node-agent", "na2"), version="1.2")
    body = pool_json(BatchPoolSettings(package=pkg), _spec())
    assert body["applicationPackageReferences"][0]["applicationId"].endswith("/applications/na2")
    assert "$AZ_BATCH_APP_PACKAGE_na2_1_2/" in body["startTask"]["commandLine"]
    assert app_package_var(pkg.application_id, "1.2", "windows") == "AZ_BATCH_APP_PACKAGE_NA2#1.2"


def test_a_short_application_id_without_the_account_is_refused() -> None:
    with pytest.raises(SpecError) as e:
        pool_json(BatchPoolSettings(), _spec())
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("package.application_id: 'node-agent'")
    assert "batch_account" in msg and "/subscriptions/" in msg


def test_a_malformed_full_id_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="application_id"):
        PackageSource(application_id="/subscriptions/s/resourceGroups/g/applications/x")


def test_pool_json_cli_refuses_a_short_application_id(tmp_path: Path) -> None:
    res = _cli(tmp_path, {"pool_id": "farm"})
    assert res.returncode == int(ExitCode.USAGE)
    assert res.stderr.strip().startswith("node-agent: error: package.application_id:")
    assert len(res.stderr.strip().splitlines()) == 1
    res = _cli(tmp_path, {"pool_id": "farm", "batch_account": BATCH_ACCOUNT})
    assert res.returncode == 0, res.stderr
    body = json.loads(res.stdout)
    assert body["applicationPackageReferences"][0]["applicationId"] == APP_ID


# -- 2. what must be uploaded, and warnings -----------------------------------------------

EMULATOR = "http://127.0.0.1:10000/devstoreaccount1"
NODE_CONFIG = {"renderers": ["blender"], "min_free_temp_disk_gb": 20}


def test_pool_json_says_what_to_upload_and_where(tmp_path: Path) -> None:
    settings = {
        "pool_id": "farm",
        "batch_account": BATCH_ACCOUNT,
        "node_config": NODE_CONFIG,
        "identity_resource_id": IDENTITY,
    }
    out = tmp_path / "pool-config.json"
    res = _cli(tmp_path, settings, "--node-config-out", str(out))
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    config_url = f"{URL}/node-agent/pools/farm/pool-config.json"
    [cfg_line] = [
        ln for ln in lines if "pool-config.json" in ln and ln.startswith("pool-json: upload")
    ]
    assert config_url in cfg_line and str(out) in cfg_line
    assert json.loads(out.read_text())["min_free_temp_disk_gb"] == 20
    [pkg_line] = [ln for ln in lines if ln.startswith("pool-json: upload") and "package" in ln]
    assert (
        "az batch application package create" in pkg_line
        and "--application-name node-agent" in (pkg_line)
    )
    assert f"-n {ACCOUNT} -g {RG}" in pkg_line
    assert "warning" not in res.stderr
    # the body itself is still the only thing on stdout
    assert json.loads(res.stdout)["id"] == "farm"


def test_resource_file_package_upload_line(tmp_path: Path) -> None:
    pkg = {"kind": "resource_file", "url": f"{URL}/node-agent/packages/node-agent-9.zip"}
    res = _cli(tmp_path, {"package": pkg, "identity_resource_id": "/subscriptions/s/id"})
    assert res.returncode == 0, res.stderr
    assert f"pool-json: upload: the package zip to {pkg['url']}" in res.stderr


@pytest.mark.parametrize("command", ["pool-json", "job-json"])
def test_emulator_urls_are_warned_about(tmp_path: Path, command: str) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(make_spec_doc(EMULATOR)))
    cfg = tmp_path / "pool.yaml"
    cfg.write_text(yaml.safe_dump({"batch_account": BATCH_ACCOUNT}))
    res = run_cli(["batch", command, str(spec), "--pool-settings", str(cfg)])
    assert res.returncode == 0, res.stderr
    warn = [ln for ln in res.stderr.splitlines() if ln.startswith(f"{command}: warning:")]
    assert any("storage.account_url" in w and "emulator" in w and EMULATOR in w for w in warn)


def test_every_emulator_url_is_named() -> None:
    from node_agent.batch.warnings import batch_warnings

    cfg = BatchPoolSettings.model_validate(
        {
            "identity_resource_id": IDENTITY,
            "package": {
                "kind": "resource_file",
                "url": "http://azurite:10000/devstoreaccount1/p.zip",
            },
            "node_config": {
                "mounts": [
                    {
                        "name": "lib",
                        "driver": "rclone",
                        "account_url": "http://localhost:10000/devstoreaccount1",
                        "container": "lib",
                        "auth": {"mode": "msi"},
                    }
                ]
            },
            "mounts": [
                {
                    "azureBlobFileSystemConfiguration": {
                        "accountName": "devstoreaccount1",
                        "containerName": "c",
                        "relativeMountPath": "c",
                    }
                }
            ],
        }
    )
    text = "\n".join(batch_warnings(_spec(), cfg))
    for field in ("package.url", "node_config.mounts[0].account_url", "mounts[0]"):
        assert field in text, field
    assert "storage.account_url" not in text  # the spec's own account is a real one
    assert batch_warnings(_spec(), BatchPoolSettings(identity_resource_id=IDENTITY)) == []


def test_a_storage_account_that_is_not_the_linked_one_is_warned_about() -> None:
    from node_agent.batch.warnings import batch_warnings

    linked = {**BATCH_ACCOUNT, "auto_storage_account": "renderlinked"}
    cfg = BatchPoolSettings.model_validate(
        {"batch_account": linked, "identity_resource_id": IDENTITY}
    )
    [w] = batch_warnings(_spec(), cfg)
    assert "'acct'" in w and "'renderlinked'" in w and "Outputs" in w
    assert batch_warnings(_spec("https://renderlinked.blob.core.windows.net"), cfg) == []
    # with auto_storage downloads the nodes read the linked account: the job cannot start
    auto = cfg.model_copy(update={"blob_access": "auto_storage"})
    assert any("blob_access 'auto_storage'" in w for w in batch_warnings(_spec(), auto))
    # no linked account named: nothing to compare with
    assert (
        batch_warnings(
            _spec(),
            BatchPoolSettings.model_validate(
                {"batch_account": BATCH_ACCOUNT, "identity_resource_id": IDENTITY}
            ),
        )
        == []
    )


# -- 3. spot nodes ------------------------------------------------------------------------


def test_spot_nodes_are_the_pools_low_priority_target(tmp_path: Path) -> None:
    settings = {"batch_account": BATCH_ACCOUNT, "dedicated_nodes": 0, "spot_nodes": 8}
    cfg = BatchPoolSettings.model_validate(settings)
    body = pool_json(cfg, _spec())
    assert (body["targetDedicatedNodes"], body["targetLowPriorityNodes"]) == (0, 8)
    pool = bm.BatchPoolCreateOptions(body)
    assert (pool.target_dedicated_nodes, pool.target_low_priority_nodes) == (0, 8)
    # the former name still works; both at once is refused
    assert BatchPoolSettings.model_validate({"low_priority_nodes": 3}).low_priority_nodes == 3
    with pytest.raises(ValueError, match="spot_nodes"):
        BatchPoolSettings.model_validate({"low_priority_nodes": 3, "spot_nodes": 2})
    with pytest.raises(ValueError, match="spot_nodes"):
        BatchPoolSettings.model_validate({"spot_nodes": -1})
    res = _cli(tmp_path, settings)
    assert res.returncode == 0, res.stderr
    [line] = [ln for ln in res.stderr.splitlines() if ln.startswith("pool-json: nodes:")]
    assert "0 dedicated + 8 spot" in line and "preempt" in line


# -- 5. the bodies against the REST spec's models -----------------------------------------

IDENTITY = "/subscriptions/s/resourceGroups/g/providers/x/userAssignedIdentities/render"
BLOB_MOUNT = {
    "azureBlobFileSystemConfiguration": {
        "accountName": "acct",
        "containerName": "assets",
        "relativeMountPath": "assets",
        "identityReference": {"resourceId": IDENTITY},
    }
}


def _full_settings(os_name: str, kind: str) -> BatchPoolSettings:
    return BatchPoolSettings.model_validate(
        {
            "os": os_name,
            "batch_account": {**BATCH_ACCOUNT, "auto_storage_account": "acct"},
            "dedicated_nodes": 1,
            "spot_nodes": 6,
            "task_slots_per_node": 2,
            "identity_resource_id": IDENTITY,
            "package": {"kind": kind, "url": f"{URL}/node-agent/packages/p.zip"},
            "mounts": [BLOB_MOUNT],
            "node_config": NODE_CONFIG,
        }
    )


@pytest.mark.parametrize("os_name", ["linux", "windows"])
@pytest.mark.parametrize("kind", ["application", "resource_file"])
def test_pool_and_job_json_pass_the_rest_model_check(os_name: str, kind: str) -> None:
    from node_agent.batch.jobjson import job_json
    from node_agent.batch.restcheck import problems

    cfg = _full_settings(os_name, kind)
    body = pool_json(cfg, _spec())
    assert body["targetLowPriorityNodes"] == 6 and body["mountConfiguration"] == [BLOB_MOUNT]
    assert (kind == "application") == ("applicationPackageReferences" in body)
    assert problems(bm.BatchPoolCreateOptions, body) == []
    doc = job_json(_spec(), cfg)
    assert problems(bm.BatchJobCreateOptions, doc["job"]) == []
    for task in doc["tasks"]:
        assert problems(bm.BatchTaskCreateOptions, task) == []


def test_the_rest_model_check_finds_what_batch_refuses() -> None:
    from node_agent.batch.restcheck import problems

    body = pool_json(_full_settings("linux", "application"), _spec())
    bad = json.loads(json.dumps(body))
    del bad["vmSize"]
    bad["taskSchedulingPolicy"]["nodeFillType"] = "sideways"
    bad["targetLowPriorityNodes"] = "6"
    bad["startTask"]["waitForSuccess"] = "yes"
    bad["startTask"]["userIdentity"]["autoUser"]["elevationLevel"] = "root"
    del bad["mountConfiguration"][0]["azureBlobFileSystemConfiguration"]["relativeMountPath"]
    bad["applicationPackageReferences"][0] = {"version": "1"}
    bad["virtualMachineConfiguration"]["imageReference"]["skew"] = "x"
    assert sorted(problems(bm.BatchPoolCreateOptions, bad)) == sorted(
        [
            "vmSize: required by BatchPoolCreateOptions",
            "taskSchedulingPolicy.nodeFillType: 'sideways' is not one of spread, pack",
            "targetLowPriorityNodes: expected int, got str",
            "startTask.waitForSuccess: expected bool, got str",
            "startTask.userIdentity.autoUser.elevationLevel: 'root' is not one of nonadmin, admin",
            "mountConfiguration[0].azureBlobFileSystemConfiguration.relativeMountPath: required "
            "by AzureBlobFileSystemConfiguration",
            "applicationPackageReferences[0].applicationId: required by "
            "BatchApplicationPackageReference",
            "virtualMachineConfiguration.imageReference.skew: not a field of BatchVmImageReference",
        ]
    )


def test_a_batch_mount_missing_a_required_field_is_refused_in_the_settings() -> None:
    mount = {"azureBlobFileSystemConfiguration": {"accountName": "a", "containerName": "c"}}
    with pytest.raises(ValueError, match="relativeMountPath: required"):
        BatchPoolSettings.model_validate({"mounts": [mount]})


def test_replicas_are_warned_about_like_the_primary() -> None:
    """A replica at an emulator URL, or one whose own auth needs a secret variable, is named
    in the same warnings as the primary account (nodes on Azure cannot use either)."""
    from node_agent.batch.submit import storage_warnings
    from node_agent.batch.warnings import batch_warnings

    doc = make_spec_doc(URL)
    doc["storage"]["auth"] = {"kind": "managed_identity"}  # type: ignore[index]
    doc["storage"]["replicas"] = [  # type: ignore[index]
        "http://127.0.0.1:10000/devstoreaccount1",
        {
            "account_url": "https://acct3.blob.core.windows.net",
            "auth": {"kind": "account_key", "env": "K3"},
        },
    ]
    spec = spec_from_data(doc)
    text = "\n".join(batch_warnings(spec, BatchPoolSettings(identity_resource_id=IDENTITY)))
    assert "storage.replicas[0]" in text and "storage.account_url" not in text, text
    [w] = storage_warnings(spec)
    assert w.startswith("storage.replicas[1].auth.kind 'account_key'") and "$K3" in w, w
