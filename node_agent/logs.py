"""Logging for every phase: readable lines (or JSON lines) on stderr and in a file."""

from __future__ import annotations

import io
import json
import logging
import sys
import time
from pathlib import Path

from node_agent.redact import RedactingFilter, Redactor

LOGGER_NAME = "node_agent"


class _TextFormatter(logging.Formatter):
    def __init__(self, context: dict[str, str]) -> None:
        super().__init__()
        self.context = " ".join(f"{k}={v}" for k, v in context.items() if v)

    def format(self, record: logging.LogRecord) -> str:
        """Time, level and context on every line, also on each line of a multi-line message
        (a traceback merged in by the redacting filter), so grep and log shippers keep them."""
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ctx = f" [{self.context}]" if self.context else ""
        head = f"{ts}Z {record.levelname:<7}{ctx} "
        return "\n".join(head + line for line in record.getMessage().split("\n"))


class _JsonFormatter(logging.Formatter):
    def __init__(self, context: dict[str, str]) -> None:
        super().__init__()
        self.context = {k: v for k, v in context.items() if v}

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        doc = {"ts": ts + "Z", "level": record.levelname, "msg": record.getMessage()}
        doc.update(self.context)
        return json.dumps(doc)


def setup_logging(
    redactor: Redactor,
    *,
    phase: str,
    job: str | None = None,
    task: str | None = None,
    log_file: Path | None = None,
    fmt: str = "text",
    verbose: bool = False,
) -> logging.Logger:
    """Configure the node_agent logger for one phase; returns it."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    context = {"phase": phase, "job": job or "", "task": task or ""}
    formatter: logging.Formatter = (
        _JsonFormatter(context) if fmt == "json" else _TextFormatter(context)
    )
    stream = logging.StreamHandler(sys.stderr)
    stream.setLevel(logging.DEBUG if verbose else logging.INFO)
    handlers: list[logging.Handler] = [stream]
    if log_file is not None:
        from node_agent.safepath import ensure_dirs

        # the logs folder is node-wide and its names predictable: a link planted there (by an
        # earlier task's renderer) is replaced, never followed, folder and file alike
        ensure_dirs(log_file.parent.parent, [log_file.parent.name], replace_links=True)
        fh = _NoFollowFileHandler(log_file)
        fh.setLevel(logging.DEBUG)
        handlers.append(fh)
    for h in handlers:
        h.setFormatter(formatter)
        h.addFilter(RedactingFilter(redactor))
        logger.addHandler(h)
    _last_error.message = None
    logger.addHandler(_last_error)
    return logger


class _NoFollowFileHandler(logging.FileHandler):
    """A FileHandler that appends without following a link at the file's name
    (safepath.open_for_write: a link there is removed and logged, its target untouched)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)
        self.stream = self._open()

    def _open(self) -> io.TextIOWrapper:
        from node_agent.safepath import open_for_write

        raw = open_for_write(self.baseFilename, append=True)
        return io.TextIOWrapper(raw, encoding="utf-8", write_through=True)


class _LastError(logging.Handler):
    """Remembers the last ERROR line a phase logged: the cause of a phase that returned a
    failing exit code without raising (recorded in the node's phase history)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.message = record.getMessage()
        except Exception:  # a bad format string: nothing to remember
            pass


_last_error = _LastError()


def last_error_line() -> str | None:
    """The first line of the last ERROR the phase logged, if any."""
    lines = (_last_error.message or "").strip().splitlines()
    return lines[0] if lines else None


def log_to_files(logger: logging.Logger, level: int, message: str) -> None:
    """One line into the phase log file(s) only (the same line already went to stderr)."""
    record = logger.makeRecord(logger.name, level, __file__, 0, message, (), None)
    for h in logger.handlers:
        if isinstance(h, logging.FileHandler) and level >= h.level:
            h.handle(record)


def get_logger(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)
