"""What the renderer's environment holds: the task's, the adapter's and the spec's variables,
the entitlement pair exactly as Batch set it, and no variable node_agent holds a secret in."""

from __future__ import annotations

from node_agent import nodestate
from node_agent.batchenv import ENTITLEMENT_TOKEN, ENTITLEMENT_VARS
from node_agent.mounts.model import AzureFilesMount, MountSpec
from node_agent.runtime import Phase
from node_agent.spec import JobSpec

_SECRET_NAMES = ("KEY", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "SAS", "CONNECTION_STRING")


# Variables the Azure tools read a storage credential from; node_agent never passes them on.
WELL_KNOWN_SECRET_VARS = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_BATCH_ACCESS_KEY",
)


def _mount_secret_var(m: MountSpec) -> str | None:
    return m.key_env if isinstance(m, AzureFilesMount) else m.auth.env


def secret_vars(phase: Phase, spec: JobSpec) -> set[str]:
    """The variables node_agent holds a secret in: the spec's storage secrets (auth.env and
    each replica's own, Storage.secret_vars), the secret variable of every mount (the job's,
    and the pool's as the start task kept its config), and the well-known Azure storage
    credential variables."""
    names = set(WELL_KNOWN_SECRET_VARS)
    names.update(spec.storage.secret_vars())
    mounts = list(spec.mounts)
    kept = nodestate.kept_pool_config(phase.node, phase.log)
    if kept is not None:
        mounts += list(kept.mounts)
    elif nodestate.state_file(phase.node, nodestate.POOL_CONFIG).exists():
        # the pool's mount secrets cannot be named: fail closed, every secret-looking name
        names.update(k for k in phase.env if any(s in k.upper() for s in _SECRET_NAMES))
        names.difference_update(ENTITLEMENT_VARS)
    names.update(v for v in map(_mount_secret_var, mounts) if v)
    if spec.storage.auth.env and spec.storage.auth.expose_to_renderer:
        names.discard(spec.storage.auth.env)  # the spec's explicit, loud opt-in
    return names


def renderer_env(
    phase: Phase, spec: JobSpec, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """Task environment + adapter + spec variables, then the entitlement pair exactly as Batch
    set it; without any variable node_agent holds a secret in (secret_vars), nor any other
    variable whose value contains one (a connection string or URL carrying the key or SAS).
    The renderer gets no storage credential."""
    env = dict(phase.env)
    env.update(extra or {})
    env.update(spec.render.env)
    secrets = secret_vars(phase, spec)  # reads (and validates) the kept pool config once
    secret_names = {n.upper() for n in secrets}
    values = {phase.env.get(n, "").strip().lstrip("?") for n in secrets}
    values = {v for v in values if len(v) >= 6}
    removed = sorted(
        k
        for k, v in env.items()
        if k.upper() not in ENTITLEMENT_VARS
        and (k.upper() in secret_names or any(s in v for s in values))
    )
    for k in removed:
        del env[k]
    if removed:
        phase.log.info("not passed to the renderer (they hold secrets): %s", ", ".join(removed))
    for var in ENTITLEMENT_VARS:
        if var in phase.env:
            env[var] = phase.env[var]
        else:
            env.pop(var, None)
    return env


def show_env(phase: Phase, name: str, value: str) -> str:
    if name == ENTITLEMENT_TOKEN or any(s in name.upper() for s in _SECRET_NAMES):
        return "***"
    return phase.redactor(value)
