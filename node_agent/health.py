"""Node health checks for the start task: one pass/fail line each and a JSON record.

A failed required check makes the start task exit HEALTH (20) so that Batch marks the
node unusable (`waitForSuccess`); the failing reason is the first line on stderr.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

from node_agent import nodestate, renderers
from node_agent.batchenv import ENTITLEMENT_VARS, BatchNode
from node_agent.errors import HealthError
from node_agent.mounts.platform import probe
from node_agent.poolconfig import NodeConfig, RendererCheck
from node_agent.supervise import run_captured

EARLIEST_SANE = 1_704_067_200  # 2024-01-01T00:00:00Z: a clock before this is wrong


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True

    def line(self) -> str:
        verdict = "PASS" if self.ok else ("FAIL" if self.required else "WARN")
        return f"health {verdict} {self.name}: {self.detail}"


def check_disk(node: BatchNode, min_gb: float) -> Check:
    free = shutil.disk_usage(node.root_dir).free
    minimum = f"{min_gb:,.3f}".rstrip("0").rstrip(".")
    detail = (
        f"{free / 2**30:.1f} GiB free on the temp disk ({node.root_dir}), minimum {minimum} GiB"
    )
    return Check("temp-disk", free >= min_gb * 2**30, detail)


def _executables(name: str) -> renderers.Executables:
    """The registry's program names and version flags for a renderer a pool config names
    (the config accepts only registered renderers with a program of their own)."""
    descriptor = renderers.get(name)
    if descriptor is None or descriptor.executables is None:
        raise HealthError(f"renderers: '{name}' is not a registered renderer with a program")
    return descriptor.executables


def find_renderer(check: RendererCheck, env: Mapping[str, str]) -> str | None:
    executables = _executables(check.name)
    exe, prefix = executables.linux, executables.env_prefix
    if check.executable:
        path = Path(check.executable)
        return str(path) if path.is_file() else shutil.which(check.executable, path=env.get("PATH"))
    for var in sorted(env, reverse=True):  # newest version first
        if (
            var.upper().startswith(prefix)
            and var.upper().endswith("_EXEC")
            and Path(env[var]).is_file()
        ):
            return env[var]
    return shutil.which(exe, path=env.get("PATH"))


def check_renderer(check: RendererCheck, env: Mapping[str, str]) -> Check:
    name = f"renderer-{check.name}"
    exe = find_renderer(check, env)
    if not exe:
        wanted = check.executable or _executables(check.name).linux
        return Check(name, False, f"renderer '{check.name}' not found ('{wanted}' is not on PATH)")
    args = (
        check.version_args
        if check.version_args is not None
        else list(_executables(check.name).version_args)
    )
    try:
        # the one runner: own process group, the whole tree stopped on a timeout
        proc = run_captured([exe, *args], timeout_s=check.timeout_s, env=dict(env))
    except subprocess.TimeoutExpired:
        return Check(
            name, False, f"renderer '{check.name}' ({exe}) did not answer within {check.timeout_s}s"
        )
    except OSError as e:
        return Check(name, False, f"renderer '{check.name}' ({exe}) cannot run: {e.strerror}")
    first = next((ln.strip() for ln in proc.stdout.splitlines() if ln.strip()), "")
    if proc.returncode != 0:
        return Check(name, False, f"renderer '{check.name}' ({exe}) exited {proc.returncode}")
    return Check(name, True, f"{exe}: {first[:120]}")


def check_entitlement(config: NodeConfig, env: Mapping[str, str]) -> Check:
    if not config.application_licenses:
        return Check("entitlement", True, "no application licenses expected")
    missing = [v for v in ENTITLEMENT_VARS if not env.get(v)]
    licenses = ", ".join(config.application_licenses)
    if missing:
        return Check(
            "entitlement",
            False,
            f"{', '.join(missing)} not set although the pool expects licenses ({licenses})",
        )
    return Check("entitlement", True, f"entitlement variables present for {licenses}")


def check_mount(target: Path, timeout: float) -> Check:
    p = probe(target, timeout)
    ok = p.state == "ok"
    return Check(
        f"mount {target.name}",
        ok,
        f"{target}: {p.entries} entries"
        if ok
        else f"{target}: {p.state}: {p.detail}"
        + (f" (pool config probe_timeout_s: {timeout:g})" if p.state == "timeout" else ""),
    )


def check_clock(reference_url: str | None, max_skew_s: int) -> Check:
    now = time.time()
    if now < EARLIEST_SANE:
        return Check(
            "clock",
            False,
            f"system time {time.strftime('%Y-%m-%d', time.gmtime(now))} is in the past",
        )
    if not reference_url:
        return Check("clock", True, "system time is plausible (no reference server to compare)")
    import requests

    try:
        resp = requests.head(reference_url, timeout=10)
        server = parsedate_to_datetime(resp.headers["Date"]).timestamp()
    except (requests.RequestException, KeyError, TypeError, ValueError) as e:
        return Check(
            "clock",
            True,
            f"could not compare with {reference_url}: {type(e).__name__}",
            required=False,
        )
    skew = time.time() - server
    detail = f"{skew:+.0f}s from {reference_url} (maximum {max_skew_s}s)"
    return Check("clock", abs(skew) <= max_skew_s, detail)


def run_checks(
    node: BatchNode, config: NodeConfig, env: Mapping[str, str], mount_targets: list[Path]
) -> list[Check]:
    reference = next(
        (getattr(m, "account_url", None) for m in config.mounts if hasattr(m, "account_url")), None
    )
    checks = [check_disk(node, config.min_free_temp_disk_gb)]
    checks += [check_renderer(r, env) for r in config.renderers]
    checks.append(check_entitlement(config, env))
    checks += [check_mount(t, config.probe_timeout_s) for t in mount_targets]
    checks.append(check_clock(reference, config.max_clock_skew_s))
    return checks


def write_record(node: BatchNode, checks: list[Check]) -> Path:
    doc = {
        "node_id": node.node_id,
        "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "healthy": all(c.ok or not c.required for c in checks),
        "checks": [asdict(c) for c in checks],
        "pid": os.getpid(),
    }
    return nodestate.write_health(node, doc)
