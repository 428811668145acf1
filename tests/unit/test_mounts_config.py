"""Generated mount configs and command lines: blobfuse2, Azure Files (Linux and Windows)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import files_mount, node_env
from pydantic import ValidationError

from node_agent.azurite import AZURITE_KEY
from node_agent.batchenv import BatchNode
from node_agent.errors import MountError
from node_agent.logs import get_logger
from node_agent.mounts import azurefiles
from node_agent.mounts.manager import MountContext, paths_for, plan_for, resolve_secret
from node_agent.mounts.model import Blobfuse2Mount, RcloneMount
from node_agent.mounts.plan import MountPlan
from node_agent.mounts.platform import WindowsPlatform
from node_agent.poolconfig import NodeConfig
from node_agent.redact import Redactor

KEY = "c2VjcmV0LWFjY291bnQta2V5LWZvci10ZXN0cw=="
SAS = "sv=2022-11-02&ss=b&sp=rl&se=2030-01-01&sig=AbCdEfGhIjKlMnOpQrStUv%3D"
SPN_SECRET = "spn-client-secret-9f8e7d"
ENV = {"MOUNT_KEY": KEY, "MOUNT_SAS": SAS, "SPN_SECRET": SPN_SECRET, "PATH": "/usr/bin:/bin"}
URL = "https://renderassets.blob.core.windows.net"
# an rclone mount of container `scenes` with the node's managed identity
RCLONE_MSI: dict[str, object] = {
    "name": "m",
    "driver": "rclone",
    "account_url": URL,
    "container": "scenes",
    "auth": {"mode": "msi"},
}


def _ctx(tmp_path: Path, windows: bool = False) -> MountContext:
    env = {**node_env(tmp_path), **ENV}
    ctx = MountContext.create(BatchNode.from_env(env), env, Redactor(), get_logger("test"))
    if windows:
        ctx.platform = WindowsPlatform()
    return ctx


def _plan(ctx: MountContext, m: object) -> MountPlan:
    secret = resolve_secret(m, ctx.env, ctx.redactor)  # type: ignore[arg-type]
    return plan_for(m, paths_for(ctx, m, "pool"), secret, ctx.platform.windows)  # type: ignore[arg-type]


def _no_secret_in_argv(plan: MountPlan) -> None:
    argv = " ".join(plan.all_argv())
    for secret in (KEY, SAS, "sig=", SPN_SECRET, AZURITE_KEY):
        assert secret not in argv


AUTHS = {
    "key": ({"mode": "key", "env": "MOUNT_KEY"}, {"mode": "key", "account-key": KEY}),
    "sas": ({"mode": "sas", "env": "MOUNT_SAS"}, {"mode": "sas", "sas": "?" + SAS}),
    "msi": ({"mode": "msi"}, {"mode": "msi"}),
    "msi-client": (
        {"mode": "msi", "client_id": "1111-2222"},
        {"mode": "msi", "appid": "1111-2222"},
    ),
    "msi-resource": (
        {"mode": "msi", "resource_id": "/subscriptions/s/rg/id"},
        {"mode": "msi", "resid": "/subscriptions/s/rg/id"},
    ),
    "spn": (
        {"mode": "spn", "env": "SPN_SECRET", "client_id": "app-1", "tenant_id": "tenant-1"},
        {"mode": "spn", "clientid": "app-1", "tenantid": "tenant-1", "clientsecret": SPN_SECRET},
    ),
}


@pytest.mark.parametrize("auth", sorted(AUTHS))
def test_blobfuse2_config_for_every_auth_mode(tmp_path: Path, auth: str) -> None:
    ctx = _ctx(tmp_path)
    doc, expected = AUTHS[auth]
    m = Blobfuse2Mount.model_validate(
        {
            "name": "assets",
            "driver": "blobfuse2",
            "account_url": URL,
            "container": "scenes",
            "prefix": "proj/a",
            "auth": doc,
        }
    )
    plan = _plan(ctx, m)
    [conf_file] = plan.files
    assert conf_file.mode == 0o600
    conf = yaml.safe_load(conf_file.text)
    az = conf["azstorage"]
    assert {k: az[k] for k in expected} == expected
    assert az["account-name"] == "renderassets" and az["container"] == "scenes"
    assert az["subdirectory"] == "proj/a" and az["virtual-directory"] is True
    assert conf["read-only"] is True
    assert conf["components"] == ["libfuse", "file_cache", "attr_cache", "azstorage"]
    cache = conf["file_cache"]["path"]
    assert cache.startswith(str(tmp_path / "shared")), "file cache on the temp disk"
    assert conf["libfuse"]["attribute-expiration-sec"] == 240
    assert conf["attr_cache"]["timeout-sec"] == 240
    target = tmp_path / "fsmounts" / "assets"
    assert plan.mount[0].argv == [
        "blobfuse2",
        "mount",
        str(target),
        f"--config-file={conf_file.path}",
    ]
    _no_secret_in_argv(plan)


def test_missing_secret_variable_names_it(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    m = Blobfuse2Mount.model_validate(
        {
            "name": "a",
            "driver": "blobfuse2",
            "account_url": URL,
            "container": "scenes",
            "auth": {"mode": "key", "env": "NOPE"},
        }
    )
    with pytest.raises(
        MountError, match="mount 'a': auth.env: environment variable NOPE is not set"
    ):
        _plan(ctx, m)


def test_rclone_config_modes(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    base = {"name": "r", "driver": "rclone", "account_url": URL, "container": "scenes"}
    key = _plan(
        ctx, RcloneMount.model_validate({**base, "auth": {"mode": "key", "env": "MOUNT_KEY"}})
    )
    assert f"key = {KEY}" in key.files[-1].text and "account = renderassets" in key.files[-1].text
    sas = _plan(
        ctx, RcloneMount.model_validate({**base, "auth": {"mode": "sas", "env": "MOUNT_SAS"}})
    )
    assert f"sas_url = {URL}/scenes?{SAS}" in sas.files[-1].text
    msi = _plan(
        ctx, RcloneMount.model_validate({**base, "auth": {"mode": "msi", "client_id": "c1"}})
    )
    assert "use_msi = true" in msi.files[-1].text and "msi_client_id = c1" in msi.files[-1].text
    spn = _plan(
        ctx,
        RcloneMount.model_validate(
            {
                **base,
                "auth": {"mode": "spn", "env": "SPN_SECRET", "client_id": "a", "tenant_id": "t"},
            }
        ),
    )
    assert json.loads(spn.files[0].text) == {"appId": "a", "password": SPN_SECRET, "tenant": "t"}
    for plan in (key, sas, msi, spn):
        assert all(f.mode == 0o600 for f in plan.files)
        assert "--read-only" in plan.mount[0].argv and "--daemon" in plan.mount[0].argv
        _no_secret_in_argv(plan)


def test_azure_files_linux_cifs_command_and_credentials(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    plan = _plan(ctx, files_mount())
    [creds] = plan.files
    assert creds.mode == 0o600
    assert creds.text == f"username=renderfiles\npassword={KEY}\n"
    target = tmp_path / "fsmounts" / "projects"
    assert plan.mount[0].argv == [
        "mount",
        "-t",
        "cifs",
        "//renderfiles.file.core.windows.net/projects",
        str(target),
        "-o",
        f"vers=3.0,dir_mode=0777,file_mode=0777,serverino,credentials={creds.path},ro",
    ]
    assert plan.mount[0].env == {} and plan.mount[0].stdin is None
    _no_secret_in_argv(plan)


def test_azure_files_windows_cmdkey_and_net_use(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, windows=True)
    plan = _plan(ctx, files_mount(drive="p:"))
    assert plan.files == [] and not plan.makes_dir
    cmdkey, net_use = plan.mount
    assert cmdkey.argv[0] == "powershell.exe" and cmdkey.argv[-2:] == ["-Command", "-"]
    assert cmdkey.env == {azurefiles.KEY_VAR: KEY}
    assert cmdkey.stdin is not None and KEY not in cmdkey.stdin
    assert (
        'cmdkey /add:"renderfiles.file.core.windows.net" /user:"AZURE\\renderfiles"' in cmdkey.stdin
    )
    assert f'/pass:"$env:{azurefiles.KEY_VAR}"' in cmdkey.stdin
    assert net_use.argv == [
        "net",
        "use",
        "P:",
        "\\\\renderfiles.file.core.windows.net\\projects",
        "/persistent:no",
    ]
    assert KEY not in cmdkey.display() and KEY not in net_use.display()
    _no_secret_in_argv(plan)
    # A logged command line would still be redacted if it ever carried /pass:.
    assert ctx.redactor(f"cmdkey /pass:{KEY}") == "cmdkey /pass:***"


def test_fuse_drivers_are_linux_only(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, windows=True)
    m = RcloneMount.model_validate({**RCLONE_MSI, "name": "r"})
    with pytest.raises(MountError, match="Linux-only"):
        _plan(ctx, m)


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        ({"path": "../escape"}, "must stay inside the mounts folder"),
        ({"path": "/abs"}, "must stay inside the mounts folder"),
        ({"container": "Bad_Name"}, "not a valid container name"),
        ({"auth": {"mode": "key"}}, "needs 'env'"),
        ({"auth": {"mode": "spn", "env": "X"}}, "needs 'client_id' and 'tenant_id'"),
        ({"driver": "nfs"}, "does not match any of the expected tags"),
    ],
)
def test_mount_documents_are_validated(mount: dict[str, object], message: str) -> None:
    doc = {**RCLONE_MSI, **mount}
    with pytest.raises(ValidationError, match=message):
        NodeConfig.model_validate({"mounts": [doc]})


def test_duplicate_mount_names_refused() -> None:
    m = RCLONE_MSI
    with pytest.raises(ValidationError, match="mount names must be unique"):
        NodeConfig.model_validate({"mounts": [m, {**m, "path": "other"}]})


def test_windows_tasks_map_drives_from_the_kept_pool_config(tmp_path: Path) -> None:
    from node_agent.mounts.manager import map_task_drives, task_drive_commands

    ctx = _ctx(tmp_path)
    assert task_drive_commands(ctx.node) == []
    config = NodeConfig.model_validate({"mounts": [files_mount(drive="T:").model_dump()]})
    state = ctx.node.state_dir
    state.mkdir(parents=True, exist_ok=True)
    (state / "pool-config.json").write_text(config.model_dump_json())
    [cmd] = task_drive_commands(ctx.node)
    assert cmd.argv == [
        "net",
        "use",
        "T:",
        "\\\\renderfiles.file.core.windows.net\\projects",
        "/persistent:no",
    ]
    assert map_task_drives(ctx) == [], "no drive mapping on Linux"


def test_job_spec_carries_job_scoped_mounts(tmp_path: Path) -> None:
    from helpers import make_spec_doc

    from node_agent.spec import spec_from_data

    doc = make_spec_doc("http://127.0.0.1:10000/devstoreaccount1")
    doc["mounts"] = [
        {
            "name": "refs",
            "driver": "rclone",
            "account_url": URL,
            "container": "refs",
            "auth": {"mode": "sas", "env": "MOUNT_SAS"},
        }
    ]
    spec = spec_from_data(doc)
    assert isinstance(spec.mounts[0], RcloneMount)
    assert spec_from_data(json.loads(spec.model_dump_json())) == spec
    ctx = _ctx(tmp_path)
    from node_agent.mounts.manager import paths_for

    assert (
        paths_for(ctx, spec.mounts[0], "job-a").target
        == tmp_path / "fsmounts" / "jobs" / "job-a" / "refs"
    )


def test_mount_table_unescapes_and_resolves_symlinks(tmp_path: Path) -> None:
    from node_agent.mounts.platform import LinuxPlatform

    real = tmp_path / "real dir"
    (real / "m").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real)
    escaped = str(real / "m").replace(" ", "\\040")
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        f"99 22 0:50 / {escaped} rw,nosuid,nodev,relatime shared:9 - fuse.rclone blob:c rw,user_id=0\n"
    )
    plat = LinuxPlatform(mountinfo=info)
    assert plat.fstype(link / "m") == "fuse.rclone"
    assert plat.is_mounted(real / "m") and not plat.is_mounted(real)
    assert plat.unmount_command(real / "m", "fuse.rclone").argv == [
        "fusermount3",
        "-uz",
        str(real / "m"),
    ]
    assert plat.unmount_command(real / "m", "cifs").argv == ["umount", "-l", str(real / "m")]


def test_an_unreadable_mount_table_is_an_error_not_an_empty_table(tmp_path: Path) -> None:
    """Job release removes a job's folder only when nothing is mounted in it: a mount table
    that cannot be read must not read as 'nothing mounted'."""
    from node_agent.errors import MountError
    from node_agent.mounts.platform import LinuxPlatform

    plat = LinuxPlatform(mountinfo=tmp_path / "no-mountinfo")
    with pytest.raises(MountError, match="cannot read the mount table"):
        plat.mount_table()
