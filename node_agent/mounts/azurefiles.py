"""Azure Files: Linux `mount -t cifs` with a 0600 credentials file; Windows cmdkey + net use.

Windows limitation: `cmdkey` only takes the key as `/pass:<key>`. node_agent never puts it
in its own argument lists or logs: it runs a PowerShell script fed on stdin that reads the
key from an environment variable set only for that child. The key is still on cmdkey's
own command line for the few milliseconds it runs, visible to administrators on the node.
"""

from __future__ import annotations

from node_agent.mounts.model import AzureFilesMount
from node_agent.mounts.plan import MountPaths, MountPlan, SecretFile
from node_agent.mounts.platform import Command

KEY_VAR = "NODE_AGENT_FILES_KEY"
_PS = [
    "powershell.exe",
    "-NoProfile",
    "-NonInteractive",
    "-ExecutionPolicy",
    "Bypass",
    "-Command",
    "-",
]


def credentials_text(m: AzureFilesMount, key: str) -> str:
    return f"username={m.account_name}\npassword={key}\n"


def linux_plan(m: AzureFilesMount, paths: MountPaths, key: str) -> MountPlan:
    creds = paths.config_dir / f"{m.name}.cifs.cred"
    options = [*m.options, f"credentials={creds}"] + (["ro"] if m.read_only else [])
    argv = [
        "mount",
        "-t",
        "cifs",
        f"//{m.host}/{m.share}",
        str(paths.target),
        "-o",
        ",".join(options),
    ]
    return MountPlan(
        files=[SecretFile(creds, credentials_text(m, key))], mount=[Command(argv, timeout=120)]
    )


def cmdkey_command(m: AzureFilesMount, key: str) -> Command:
    """Start task: store the share's credential for this user (Windows Credential Manager)."""
    script = (
        f'cmdkey /add:"{m.host}" /user:"AZURE\\{m.account_name}" /pass:"$env:{KEY_VAR}" | Out-Null\n'
        "exit $LASTEXITCODE\n"
    )
    return Command(list(_PS), env={KEY_VAR: key}, stdin=script, timeout=60)


def net_use_command(m: AzureFilesMount) -> Command:
    """Before each task: map the drive (the stored credential is used; no secret here)."""
    unc = f"\\\\{m.host}\\{m.share}"
    return Command(["net", "use", m.drive.upper(), unc, "/persistent:no"], timeout=60)


def windows_plan(m: AzureFilesMount, paths: MountPaths, key: str) -> MountPlan:
    return MountPlan(
        mount=[cmdkey_command(m, key), net_use_command(m)],
        needs_empty_target=False,
        makes_dir=False,
    )


def plan(m: AzureFilesMount, paths: MountPaths, key: str, windows: bool) -> MountPlan:
    return windows_plan(m, paths, key) if windows else linux_plan(m, paths, key)
