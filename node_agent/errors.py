"""The project's exception types and the exit codes they map to.

Every phase raises one of these; the edges (CLI, Batch scripts) turn them into
one line on stderr and the documented exit code. The table is in README.md.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # unexpected internal error (a bug): one line, see the log file
    USAGE = 2  # bad job spec, bad arguments, not inside a Batch task (missing AZ_BATCH_*)
    ENVIRONMENT = 2  # alias of USAGE: a missing AZ_BATCH_* variable is a usage error
    BATCH = 3  # the Batch service refused or failed a request (batch submit)
    STORAGE = 4  # storage unreachable, auth failed, container/blob missing
    ASSETS = 5  # asset sync failed or some blob names were refused
    DISK_FULL = 6  # not enough free space
    RENDER_FAILED = 10  # renderer exited non-zero for an unclassified reason
    LICENSE = 11  # renderer reported a license / entitlement failure
    MISSING_ASSET = 12  # scene or texture missing on the node
    OUT_OF_MEMORY = 13
    CRASH = 14  # renderer killed by a signal / crashed
    MISSING_FRAMES = 15  # renderer exited 0 but frames are missing
    TIMEOUT = 16  # renderer exceeded its timeout or stalled
    UPLOAD = 17  # outputs or logs could not be uploaded
    HEALTH = 20  # a required node health check failed
    MOUNT = 21  # a mount could not be made or proven
    PACKAGE = 22  # batch package could not build the package (pip failed, files missing)
    INTERRUPTED = 130  # stopped by Ctrl-C / SIGINT (128 + 2, the shells' convention)
    BROKEN_PIPE = 141  # stdout's reader went away (`| head`): 128 + SIGPIPE, quietly


class NodeAgentError(Exception):
    """Base of every error node_agent reports to its users."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class SpecError(NodeAgentError):
    exit_code = ExitCode.USAGE


class UsageError(NodeAgentError):
    """A bad command-line argument or option (a spec field has SpecError)."""

    exit_code = ExitCode.USAGE


class BatchServiceError(NodeAgentError):
    exit_code = ExitCode.BATCH


class PackageError(NodeAgentError):
    exit_code = ExitCode.PACKAGE


class EnvironmentMissing(NodeAgentError):
    exit_code = ExitCode.ENVIRONMENT


class StorageError(NodeAgentError):
    """`transient`: worth retrying for a while (unreachable, throttled, 5xx), as opposed to
    a refusal that will not change by waiting (not found, access denied, a lease)."""

    exit_code = ExitCode.STORAGE

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class AssetError(NodeAgentError):
    exit_code = ExitCode.ASSETS


class MissingAssetError(NodeAgentError):
    """The scene or one of its dependencies is not where the renderer will look."""

    exit_code = ExitCode.MISSING_ASSET


class DiskFullError(NodeAgentError):
    exit_code = ExitCode.DISK_FULL


class RenderError(NodeAgentError):
    exit_code = ExitCode.RENDER_FAILED


class UploadError(NodeAgentError):
    exit_code = ExitCode.UPLOAD


class HealthError(NodeAgentError):
    exit_code = ExitCode.HEALTH


class MountError(NodeAgentError):
    exit_code = ExitCode.MOUNT


_NETWORK_REASONS = (
    ("refused", "connection refused"),
    ("name or service not known", "host name not found"),
    ("nodename nor servname", "host name not found"),
    ("getaddrinfo failed", "host name not found"),
    ("temporary failure in name resolution", "DNS lookup failed"),
    ("timed out", "connection timed out"),
    ("certificate", "TLS certificate problem"),
    ("reset by peer", "connection reset"),
)


def network_reason(text: str) -> str:
    """A few words on why a connection failed, from the transport's long message."""
    low = text.lower()
    return next((say for key, say in _NETWORK_REASONS if key in low), "no connection")
