"""What every phase does first (node, redactor, logging) and last (error -> exit code)."""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from node_agent.batchenv import ENTITLEMENT_TOKEN, BatchNode
from node_agent.diskfull import disk_full_error, is_disk_full
from node_agent.errors import ExitCode, NodeAgentError
from node_agent.logs import last_error_line, log_to_files, setup_logging
from node_agent.redact import Redactor
from node_agent.runhistory import Recorder


@dataclass
class Phase:
    name: str
    node: BatchNode
    redactor: Redactor
    log: logging.Logger
    env: Mapping[str, str]


def start_phase(
    name: str,
    *,
    need_job: bool = False,
    log_format: str = "text",
    verbose: bool = False,
    env: Mapping[str, str] | None = None,
    redactor: Redactor | None = None,
    stand_in: BatchNode | None = None,
) -> Phase:
    """`stand_in`: the node to assume outside Batch (`render --dry-run` on a workstation,
    BatchNode.stand_in); then nothing is written, not even the phase log file."""
    env = dict(os.environ if env is None else env)
    redactor = redactor or Redactor()
    redactor.add(env.get(ENTITLEMENT_TOKEN))
    node = stand_in or BatchNode.from_env(env, need_job=need_job)
    parts = (
        [name] + ([node.job_id] if node.job_id else []) + ([node.task_id] if node.task_id else [])
    )
    log_file = node.logs_dir / ("_".join(parts) + ".log")
    log = setup_logging(
        redactor,
        phase=name,
        job=node.job_id,
        task=node.task_id,
        log_file=None if stand_in else log_file,
        fmt=log_format,
        verbose=verbose,
    )
    global _recorder
    if stand_in is None:  # every real phase run goes into the node's history (runhistory)
        _recorder = Recorder(node.state_dir, name, node.job_id, node.task_id, log_file)
        _recorder.start()
    return Phase(name, node, redactor, log, env)


# The phase run of this process (set by start_phase), finished by run_edge with its exit.
_recorder: Recorder | None = None


def _exit_name(code: int) -> str:
    try:
        return ExitCode(code).name.lower()
    except ValueError:
        return f"exit {code}"


def _finish_run(code: int, cause: str | None, redactor: Redactor) -> None:
    """Record the end of this process's phase run (if one started) with its exit and the
    first line of its cause, and write the cause into the phase log file: a failed run's
    log holds why, not only its exit code."""
    global _recorder
    rec, _recorder = _recorder, None
    if cause:
        level = logging.ERROR if code else logging.INFO
        log_to_files(
            logging.getLogger("node_agent"), level, f"exit {code} ({_exit_name(code)}): {cause}"
        )
    if rec is not None:
        rec.finish(code, _exit_name(code), redactor(cause) if cause else None)


# `node-agent ... | head`: the reader closed stdout. Exit as a shell reports a process that
# SIGPIPE ended (128 + 13), quietly: the reader asked for no more.
BROKEN_PIPE = int(ExitCode.BROKEN_PIPE)


def stdout_closed() -> bool:
    """Whether stdout is a pipe (or socket) whose reader has gone away."""
    try:
        import select

        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no fd
        return True


def stdout_gone() -> int:
    """The reader of stdout went away: send the rest (and the interpreter's last flush) to
    the null device so no BrokenPipeError is printed, and return BROKEN_PIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return BROKEN_PIPE


def flush_stdout() -> int | None:
    """Flush stdout; BROKEN_PIPE when its reader has gone (`| head`), else None."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return stdout_gone()
    return None


def exit_with(code: int) -> NoReturn:
    """The one way a command ends: flush what it printed, exit with `code`."""
    sys.exit(flush_stdout() or code)


def run_command(fn: Callable[[Redactor], int]) -> NoReturn:
    """Run a command's body at the edge (run_edge) and exit with its code."""
    exit_with(run_edge(fn))


def run_edge(fn: Callable[[Redactor], int], redactor: Redactor | None = None) -> int:
    """Call a phase; turn its errors into one redacted line on stderr and an exit code."""
    redactor = redactor or Redactor()
    redactor.add(os.environ.get(ENTITLEMENT_TOKEN))
    cause: str | None = None
    code = int(ExitCode.FAILED)
    try:
        code = fn(redactor)
        if code:
            cause = last_error_line()
        return code
    except NodeAgentError as e:
        lines = str(e).splitlines() or [type(e).__name__]
        for line in lines:
            print(f"node-agent: error: {redactor(line)}", file=sys.stderr)
        code, cause = int(e.exit_code), lines[0]
        logging.getLogger("node_agent").debug("exit %d", code)
        return code
    except BrokenPipeError:
        if not stdout_closed():  # a pipe of our own (a child's stdin): a bug, said below
            code, cause = _internal_error(redactor)
            return code
        code = stdout_gone()
        return code
    except KeyboardInterrupt:
        print("node-agent: interrupted", file=sys.stderr)
        code, cause = int(ExitCode.INTERRUPTED), "interrupted (SIGINT)"
        return code
    except Exception:  # a bug: still one line for the operator, details in the log file
        code, cause = _internal_error(redactor)
        return code
    finally:
        _finish_run(code, cause, redactor)


def _internal_error(redactor: Redactor) -> tuple[int, str]:
    e = sys.exc_info()[1]
    logging.getLogger("node_agent").debug("internal error", exc_info=True)
    msg = redactor(f"{type(e).__name__}: {e}".splitlines()[0])
    print(f"node-agent: internal error: {msg} (details in the phase log)", file=sys.stderr)
    return int(ExitCode.FAILED), f"internal error: {msg}"


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write to a temporary name beside `path`, fsync, then rename over it. The temporary
    name is unpredictable and created exclusively, never through a link (a link planted at a
    guessable name beside a spec or in a download folder would be followed as root)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(tmp, flags, mode)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    except OSError as e:
        if not is_disk_full(e):
            raise
        raise disk_full_error(f"{path.name} ({len(data):,} bytes)", path, e) from None
