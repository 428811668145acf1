"""`batch pool-json` / `batch job-json`: REST bodies the azure-batch SDK accepts, built on jobplan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from azure.batch import models as bm
from azure.batch._utils.model_base import Model, SdkJSONEncoder
from helpers import REPO, CliResult, make_spec_doc, run_cli

from node_agent import exitpolicy
from node_agent.batch.jobjson import credential_warnings, job_json, local_plan
from node_agent.batch.pooljson import BatchPoolSettings, PackageSource, pool_json
from node_agent.batch.restcheck import unknown_fields
from node_agent.errors import ExitCode
from node_agent.jobplan import exit_conditions, iso_duration, plan_job, start_task_script
from node_agent.localpool.jobrun import duration_s
from node_agent.spec import JobSpec, spec_from_data

URL = "https://acct.blob.core.windows.net"
# the application package reference is the full resource id, built from the Batch account
BATCH_ACCOUNT = {"subscription_id": "sub", "resource_group": "rg", "name": "renderbatch"}
APP_ID = (
    "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Batch/batchAccounts/renderbatch"
    "/applications/node-agent"
)


def round_trip(cls: type[Model], data: dict[str, Any]) -> dict[str, Any]:
    """Deserialize into the SDK model, serialize with the SDK's own encoder."""
    return json.loads(json.dumps(cls(data), cls=SdkJSONEncoder))


def _spec(**render: Any) -> JobSpec:
    doc = make_spec_doc(URL, frames="1-250", frames_per_task=2, **render)
    doc["storage"]["auth"] = {"kind": "managed_identity"}  # type: ignore[index]
    return spec_from_data(doc)


@pytest.mark.parametrize("os_name", ["linux", "windows"])
@pytest.mark.parametrize("kind", ["application", "resource_file"])
def test_pool_json_round_trips_through_sdk(os_name: str, kind: str) -> None:
    cfg = BatchPoolSettings(
        os=os_name,
        batch_account=BATCH_ACCOUNT,  # type: ignore[arg-type]
        task_slots_per_node=4,
        package=PackageSource(kind=kind, url=f"{URL}/node-agent/packages/p.zip"),  # type: ignore[arg-type]
        identity_resource_id="/subscriptions/s/resourceGroups/g/providers/x/userAssignedIdentities/render",
        mounts=[
            {
                "azureBlobFileSystemConfiguration": {
                    "accountName": "acct",
                    "containerName": "assets",
                    "relativeMountPath": "assets",
                    "identityReference": {"resourceId": "/subscriptions/s/x/render"},
                    "blobfuseOptions": "-o attr_timeout=240",
                }
            }
        ],
    )
    body = pool_json(cfg, _spec())
    assert unknown_fields(bm.BatchPoolCreateOptions, body) == []
    assert round_trip(bm.BatchPoolCreateOptions, body) == body
    pool = bm.BatchPoolCreateOptions(body)
    st = pool.start_task
    assert st.user_identity.auto_user.scope == bm.AutoUserScope.POOL
    assert st.user_identity.auto_user.elevation_level == bm.ElevationLevel.ADMIN
    assert st.wait_for_success is True
    assert pool.task_slots_per_node == 4
    assert [(e.name, e.value) for e in st.environment_settings] == [("NODE_AGENT_HOME", cfg.home())]
    script = "start_task\\run.cmd" if os_name == "windows" else "start_task/run.sh"
    assert st.command_line.rstrip("\"'").endswith(script)
    assert (
        pool.mount_configuration[0].azure_blob_file_system_configuration.container_name == "assets"
    )
    if kind == "application":
        assert pool.application_package_references[0].application_id == APP_ID
    else:
        assert st.resource_files[0].http_url.endswith("/p.zip")
        assert st.resource_files[0].identity_reference.resource_id.endswith("/render")


def test_auto_storage_downloads_need_no_identity() -> None:
    pkg = PackageSource(kind="resource_file", blob="packages/node-agent-0.1.0.zip")
    cfg = BatchPoolSettings(blob_access="auto_storage", package=pkg)
    pool = pool_json(cfg)
    assert unknown_fields(bm.BatchPoolCreateOptions, pool) == []
    st = bm.BatchPoolCreateOptions(pool).start_task
    rf = st.resource_files[0]
    assert (rf.auto_storage_container_name, rf.blob_prefix) == ("node-agent", pkg.blob)
    assert rf.identity_reference is None and rf.file_path is None
    assert "python3 -m zipfile -e packages/node-agent-0.1.0.zip pkg" in st.command_line
    job = job_json(_spec(), cfg)["job"]
    assert unknown_fields(bm.BatchJobCreateOptions, job) == []
    prep = bm.BatchJobCreateOptions(job).job_preparation_task.resource_files[0]
    # lands at <working dir>/job.json, where `--spec job.json` looks
    assert (prep.auto_storage_container_name, prep.blob_prefix, prep.file_path) == (
        "job-job-a",
        "job.json",
        None,
    )


NODE_CONFIG = {
    "renderers": ["blender"],
    "min_free_temp_disk_gb": 20,
    "cache_budget_mb": 5000,
    "mounts": [
        {
            "name": "library",
            "driver": "rclone",
            "account_url": URL,
            "container": "library",
            "auth": {"mode": "key", "env": "LIBRARY_KEY"},
        }
    ],
}


@pytest.mark.parametrize("os_name", ["linux", "windows"])
@pytest.mark.parametrize("access", ["identity", "auto_storage"])
def test_pool_json_gives_the_start_task_its_pool_config(os_name: str, access: str) -> None:
    identity = "/subscriptions/s/resourceGroups/g/providers/x/userAssignedIdentities/render"
    cfg = BatchPoolSettings.model_validate(
        {
            "os": os_name,
            "batch_account": BATCH_ACCOUNT,
            "blob_access": access,
            "identity_resource_id": identity if access == "identity" else None,
            "node_config": NODE_CONFIG,
        }
    )
    body = pool_json(cfg, _spec())
    assert unknown_fields(bm.BatchPoolCreateOptions, body) == []
    assert round_trip(bm.BatchPoolCreateOptions, body) == body
    st = bm.BatchPoolCreateOptions(body).start_task
    [rf] = st.resource_files  # the application package needs no resource file
    blob = "pools/render-pool/pool-config.json"
    if access == "identity":
        assert rf.http_url == f"{URL}/node-agent/{blob}"
        assert rf.file_path == "pool-config.json"
        assert rf.identity_reference.resource_id == identity
        path = "pool-config.json"
    else:
        assert (rf.auto_storage_container_name, rf.blob_prefix) == ("node-agent", blob)
        assert rf.file_path is None and rf.identity_reference is None
        path = blob if os_name == "linux" else blob.replace("/", "\\")  # <wd>/<blob name>
    if os_name == "linux":
        assert st.command_line.endswith(f" && {start_task_script(path)}'")
    else:
        assert st.command_line.endswith(f'start_task\\run.cmd" --pool-config {path}"')
    # the secret's variable is named in the node config, never given a value in the pool
    assert [(e.name, e.value) for e in st.environment_settings] == [("NODE_AGENT_HOME", cfg.home())]
    # without a node config the start task runs as before: no flag, no extra resource file
    plain = pool_json(cfg.model_copy(update={"node_config": None}), _spec())["startTask"]
    assert "--pool-config" not in plain["commandLine"] and "resourceFiles" not in plain


def _pool_json(spec: Path, cfg: Path, *extra: str) -> CliResult:
    """`node-agent batch pool-json <spec> --pool-settings <cfg>`, in-process."""
    return run_cli(["batch", "pool-json", str(spec), "--pool-settings", str(cfg), *extra])


def test_pool_json_cli_warns_about_secrets_and_places_node_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIBRARY_KEY", "c2VjcmV0LWxpYnJhcnkta2V5")
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(make_spec_doc(URL)))
    cfg = tmp_path / "pool.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"pool_id": "farm", "batch_account": BATCH_ACCOUNT, "node_config": NODE_CONFIG}
        )
    )
    out = _pool_json(spec, cfg)
    assert out.returncode == 0, out.stderr
    st = json.loads(out.stdout)["startTask"]
    assert "--pool-config pool-config.json" in st["commandLine"]
    assert st["resourceFiles"][0]["httpUrl"] == f"{URL}/node-agent/pools/farm/pool-config.json"
    assert "$LIBRARY_KEY" in out.stderr and "c2VjcmV0" not in out.stdout + out.stderr
    # the start task's settings at the top level are pointed to node_config
    cfg.write_text(yaml.safe_dump({"pool_id": "farm", "renderers": ["maya"]}))
    res = _pool_json(spec, cfg)
    assert res.returncode == int(ExitCode.USAGE)
    assert res.stderr.strip() == (
        f"node-agent: error: {cfg}: renderers: is a setting of the start task's pool config: "
        "put it under node_config"
    )
    cfg.write_text(yaml.safe_dump({"mounts": NODE_CONFIG["mounts"]}))
    res = _pool_json(spec, cfg)
    assert res.returncode == int(ExitCode.USAGE)
    assert "put it under node_config.mounts" in res.stderr
    # a node config the start task would refuse is refused here, before any node starts
    cfg.write_text(yaml.safe_dump({"node_config": {"renderers": ["houdini"]}}))
    res = _pool_json(spec, cfg)
    assert res.returncode == int(ExitCode.USAGE)
    assert "node_config.renderers" in res.stderr


def test_application_licenses_only_when_asked_and_only_for_licensed_renderers() -> None:
    maya = _spec(renderer="maya")
    acct = BatchPoolSettings.model_validate({"batch_account": BATCH_ACCOUNT})
    assert "applicationLicenses" not in pool_json(acct, maya)
    body = pool_json(acct.model_copy(update={"application_licenses": True}), maya)
    assert body["applicationLicenses"] == ["arnold", "maya"]
    # azure-batch 15 (API 2025-06-01) no longer has the field: pay-per-use licensing was retired
    assert unknown_fields(bm.BatchPoolCreateOptions, body) == ["applicationLicenses"]
    assert "applicationLicenses" not in pool_json(
        acct.model_copy(update={"application_licenses": True}), _spec()
    )
    # the pool asks for the licences of the renderer the options choose (BatchExplorer-data
    # pool templates): Maya with V-Ray is [maya, vray], Maya Software [maya]
    on = acct.model_copy(update={"application_licenses": True})
    vray = _spec(renderer="maya", options={"renderer": "vray"})
    assert pool_json(on, vray)["applicationLicenses"] == ["maya", "vray"]
    sw = _spec(renderer="maya", options={"renderer": "sw"})
    assert pool_json(on, sw)["applicationLicenses"] == ["maya"]


@pytest.mark.parametrize("os_name", ["linux", "windows"])
def test_job_and_tasks_round_trip_through_sdk(os_name: str) -> None:
    spec = _spec()
    doc = job_json(spec, BatchPoolSettings(os=os_name, identity_resource_id="/sub/x/id"))  # type: ignore[arg-type]
    job, tasks = doc["job"], doc["tasks"]
    assert unknown_fields(bm.BatchJobCreateOptions, job) == []
    assert round_trip(bm.BatchJobCreateOptions, job) == job
    assert len(tasks) == 125
    for t in tasks:
        assert unknown_fields(bm.BatchTaskCreateOptions, t) == []
        assert round_trip(bm.BatchTaskCreateOptions, t) == t
    m = bm.BatchJobCreateOptions(job)
    assert m.pool_info.pool_id == "render-pool"
    assert m.job_release_task.max_wall_clock_time.total_seconds() <= 15 * 60
    assert m.job_preparation_task.wait_for_success is True
    rf = m.job_preparation_task.resource_files[0]
    assert rf.file_path == "job.json" and rf.http_url == f"{URL}/node-agent/jobs/job-a/job.json"
    assert rf.identity_reference.resource_id == "/sub/x/id"
    assert m.all_tasks_complete_mode == bm.BatchAllTasksCompleteMode.NO_ACTION
    # without this Batch refuses tasks that carry an exitConditions jobAction (HTTP 400)
    assert m.task_failure_mode == bm.BatchTaskFailureMode.PERFORM_EXIT_OPTIONS_JOB_ACTION
    t = bm.BatchTaskCreateOptions(tasks[0])
    # the same pool-wide elevated user as the start task, which created node_agent's folders
    for user in (
        t.user_identity,
        m.job_preparation_task.user_identity,
        m.job_release_task.user_identity,
    ):
        assert user.auto_user.scope == bm.AutoUserScope.POOL
        assert user.auto_user.elevation_level == bm.ElevationLevel.ADMIN
    assert t.constraints.max_task_retry_count == spec.policies.task_retries
    if os_name == "windows":
        assert (
            t.command_line
            == 'cmd /c ""%NODE_AGENT_HOME%\\bin\\node-agent.cmd" render --frames 1-2"'
        )
        assert "job_prep\\run.cmd" in m.job_preparation_task.command_line


def test_exit_conditions_come_from_the_exit_code_table() -> None:
    doc = job_json(_spec(), BatchPoolSettings())
    table = {e["code"]: e["exitOptions"]["jobAction"] for e in exit_conditions()["exitCodes"]}
    # every cause of exitpolicy.POLICY, none left to Batch's default (terminate)
    assert table == {int(c.code): c.job_action for c in exitpolicy.POLICY}
    ends = {c for c, a in table.items() if a == "terminate"}
    assert ends == {int(ExitCode.USAGE), int(ExitCode.ASSETS), int(ExitCode.MISSING_ASSET)}
    for t in doc["tasks"]:
        ec = bm.BatchTaskCreateOptions(t).exit_conditions
        by_code = {e.code: e.exit_options.job_action for e in ec.exit_codes}
        assert by_code[11] == by_code[17] == by_code[14] == by_code[4] == "none"
        assert by_code[2] == by_code[12] == bm.BatchJobActionKind.TERMINATE
        assert ec.default.job_action == bm.BatchJobActionKind.NONE
        # ExitOptions has jobAction and dependencyAction only (no per-code retry); the job
        # uses no task dependencies, so no dependencyAction is sent
        assert all(set(e["exitOptions"]) == {"jobAction"} for e in t["exitConditions"]["exitCodes"])


def test_exit_4_ends_the_job_only_for_an_authorization_failure() -> None:
    assert exitpolicy.then_for(4, "assets/x: access denied (403; check storage.auth)") == "end_job"
    assert exitpolicy.then_for(4, "x: authentication failed (check the credentials)") == "end_job"
    assert exitpolicy.then_for(4, "storage.auth.env: environment variable K is not set") == (
        "end_job"
    )
    assert exitpolicy.then_for(4, "x: storage is unreachable (connection refused)") == "retry"
    assert exitpolicy.then_for(2, "render.scene: 'x' is not in the job's assets") == "end_job"
    assert exitpolicy.then_for(11) == exitpolicy.then_for(17) == exitpolicy.then_for(14) == "retry"
    assert exitpolicy.then_for(15) == exitpolicy.then_for(16) == "end_task"


def test_docs_table_is_the_exit_policy() -> None:
    doc = (REPO / "docs" / "azure-batch.md").read_text()
    assert exitpolicy.markdown_table() in doc


def test_job_json_ends_as_printed_and_bounds_time() -> None:
    spec = _spec()  # render.timeout_s default 3600
    pool = BatchPoolSettings(identity_resource_id="/sub/x/id", dedicated_nodes=5)
    doc = job_json(spec, pool)
    job, tasks = doc["job"], doc["tasks"]
    # Batch counts a job with no tasks as complete: noaction on create, terminatejob after
    # the last task (REST spec onAllTasksComplete); the update is part of the printed calls
    assert job["onAllTasksComplete"] == "noaction"
    assert doc["jobUpdate"] == {"onAllTasksComplete": "terminatejob"}
    assert unknown_fields(bm.BatchJobUpdateOptions, doc["jobUpdate"]) == []
    m = bm.BatchJobCreateOptions(job)
    # tasks: render.timeout_s plus a margin; the job: the backstop (125 tasks on 5 nodes)
    t = bm.BatchTaskCreateOptions(tasks[0])
    assert t.constraints.max_wall_clock_time.total_seconds() == 3600 + 15 * 60
    assert m.constraints.max_wall_clock_time.total_seconds() == 2 * 3600 + 25 * 4500 * 2
    prep = m.job_preparation_task
    assert prep.constraints.max_task_retry_count == spec.policies.task_retries
    assert [(e.name, e.value) for e in prep.environment_settings] == [
        ("NODE_AGENT_JOB_CONTROL_IDENTITY", "/sub/x/id")
    ]
    assert credential_warnings(pool) == []
    # no identity: no terminate from job prep, and a bare httpUrl: both said
    bare = BatchPoolSettings()
    assert "environmentSettings" not in job_json(spec, bare)["job"]["jobPreparationTask"]
    [warning] = credential_warnings(bare)
    assert "bare httpUrl" in warning and "403" in warning and "maxWallClockTime" in warning
    assert credential_warnings(BatchPoolSettings(blob_access="auto_storage")) != []


def test_iso_durations() -> None:
    assert [iso_duration(s) for s in (0, 59, 3600, 4500, 3661)] == [
        "PT0S",
        "PT59S",
        "PT1H",
        "PT1H15M",
        "PT1H1M1S",
    ]
    assert [duration_s(iso_duration(s)) for s in (0, 59, 3600, 4500, 3661)] == [
        0,
        59,
        3600,
        4500,
        3661,
    ]


@pytest.mark.parametrize("access", ["identity", "auto_storage"])
def test_batch_json_is_the_local_plan_plus_batch_only_fields(access: str) -> None:
    spec = _spec()
    doc = job_json(spec, BatchPoolSettings(blob_access=access))  # type: ignore[arg-type]
    assert local_plan(doc) == plan_job(spec)
    plan_tasks = plan_job(spec)["tasks"]
    assert [t["commandLine"] for t in doc["tasks"]] == [t["commandLine"] for t in plan_tasks]


def test_commands_print_the_bodies(tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(make_spec_doc(URL)))
    cfg = tmp_path / "pool.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"pool_id": "farm", "task_slots_per_node": 2, "batch_account": BATCH_ACCOUNT}
        )
    )
    res = _pool_json(spec, cfg, "--os", "windows")
    assert res.returncode == 0, res.stderr
    pool = json.loads(res.stdout)
    assert pool["id"] == "farm" and pool["taskSlotsPerNode"] == 2
    assert pool["virtualMachineConfiguration"]["nodeAgentSKUId"] == "batch.node.windows amd64"
    res = run_cli(["batch", "job-json", str(spec), "--pool-settings", str(cfg)])
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["job"]["poolInfo"]["poolId"] == "farm"
    mount = {"azureBlobFileSystemConfiguration": {"accountName": "a", "containerNme": "c"}}
    cfg.write_text(yaml.safe_dump({"mounts": [mount]}))
    res = _pool_json(spec, cfg)
    assert res.returncode == int(ExitCode.USAGE)
    assert res.stderr.strip() == (
        f"node-agent: error: {cfg}: mounts: [0]: 'azureBlobFileSystemConfiguration.containerNme' "
        "is not a Batch mountConfiguration field"
    )
    cfg.write_text(yaml.safe_dump({"pool_id": "farm", "vm_sise": "x"}))
    res = _pool_json(spec, cfg)
    assert res.returncode == int(ExitCode.USAGE)
    err = res.stderr
    assert err.strip() == f"node-agent: error: {cfg}: vm_sise: is not a known field"


def test_pool_settings_option_and_its_former_name(tmp_path: Path) -> None:
    """`--pool-settings` is the Batch pool settings; `--pool-config` (the start task's node
    config elsewhere) still works here as its former name, with a warning."""
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(make_spec_doc(URL)))
    cfg = tmp_path / "pool.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "pool_id": "farm",
                "vm_size": "Standard_X",
                "batch_account": BATCH_ACCOUNT,
                "identity_resource_id": "/subscriptions/s/resourceGroups/r/providers/"
                "Microsoft.ManagedIdentity/userAssignedIdentities/render",
            }
        )
    )
    new = _pool_json(spec, cfg)
    assert new.returncode == 0, new.stderr
    assert json.loads(new.stdout)["vmSize"] == "Standard_X" and "warning" not in new.stderr
    old = run_cli(["batch", "job-json", str(spec), "--pool-config", str(cfg)])
    assert old.returncode == 0, old.stderr
    assert json.loads(old.stdout)["job"]["poolInfo"]["poolId"] == "farm"
    assert "--pool-config is now --pool-settings" in old.stderr
    both = run_cli(
        ["batch", "pool-json", str(spec), "--pool-settings", str(cfg), "--pool-config", str(cfg)]
    )
    assert both.returncode == int(ExitCode.USAGE)
    assert "--pool-settings only" in both.stderr
    assert "--pool-config" not in both.stdout
    helptext = run_cli(["batch", "pool-json", "--help"]).stdout
    assert "--pool-settings" in helptext and "--pool-config" not in helptext


def test_pool_without_identity_warns_that_job_prep_cannot_end_the_job(tmp_path: Path) -> None:
    """pool-json, job-json and submit share batch_warnings: a pool without a managed identity
    is told that job.json is a bare httpUrl and that job prep cannot terminate the job."""
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(make_spec_doc(URL)))
    cfg = tmp_path / "pool.yaml"
    cfg.write_text(yaml.safe_dump({"pool_id": "farm", "batch_account": BATCH_ACCOUNT}))
    for cmd in ("pool-json", "job-json"):
        r = run_cli(["batch", cmd, str(spec), "--pool-settings", str(cfg)])
        assert r.returncode == 0, r.stderr
        assert "no identity_resource_id" in r.stderr, r.stderr
        assert "cannot terminate the job" in r.stderr


def test_policies_job_timeout_s_is_the_jobs_max_wall_clock() -> None:
    doc = make_spec_doc("https://acct.blob.core.windows.net")
    doc["policies"] = {"job_timeout_s": 5400}
    job = plan_job(spec_from_data(doc))
    assert job["constraints"]["maxWallClockTime"] == iso_duration(5400) == "PT1H30M"
    default = plan_job(spec_from_data(make_spec_doc("https://acct.blob.core.windows.net")))
    assert default["constraints"]["maxWallClockTime"] != "PT1H30M"
    doc["policies"] = {"job_timeout_s": 10}
    with pytest.raises(Exception, match="job_timeout_s"):
        spec_from_data(doc)
