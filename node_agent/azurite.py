"""The Azurite storage emulator: its public development account, and a server we can start.

The account key below is Azurite's documented, public development key (the same for
every Azurite install); it is kept in this one constant.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import urlparse

from node_agent.errors import StorageError
from node_agent.safepath import open_for_write

AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
REPO_ROOT = Path(__file__).resolve().parents[1]


def emulator_connection_string(account_url: str) -> str:
    parts = ["DefaultEndpointsProtocol=http", f"AccountName={AZURITE_ACCOUNT}"]
    parts.append("AccountKey=" + AZURITE_KEY)
    parts.append(f"BlobEndpoint={account_url.rstrip('/')};")
    return ";".join(parts)


def is_local_url(account_url: str) -> bool:
    host = urlparse(account_url).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def azurite_binary() -> str:
    local = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    found = shutil.which("azurite-blob")
    if found:
        return found
    raise StorageError(
        "azurite-blob not found: run `npm install` in the repository (make does it for you)"
    )


class AzuriteServer:
    """A blob-only Azurite on 127.0.0.1:<port> with its data in a temporary folder."""

    def __init__(self, port: int | None = None, location: Path | None = None) -> None:
        self.port = port or free_port()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if location is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="azurite-")
            location = Path(self._tmp.name)
        self.location = location
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return emulator_connection_string(self.account_url)

    def start(self, timeout: float = 30.0) -> AzuriteServer:
        self.location.mkdir(parents=True, exist_ok=True)
        # owned by the process; a link planted at the log's name is replaced, not followed
        log = open_for_write(self.location / "azurite.log", append=True)
        self.proc = subprocess.Popen(
            [
                azurite_binary(),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.port),
                "--location",
                str(self.location),
                "--skipApiVersionCheck",
                "--loose",
                "--disableProductStyleUrl",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StorageError(
                    f"Azurite exited with code {self.proc.returncode}; see {self.location}/azurite.log"
                )
            if port_open("127.0.0.1", self.port):
                return self
            time.sleep(0.1)
        self.stop()
        raise StorageError(f"Azurite did not listen on port {self.port} within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                # Azurite shuts down (and saves its metadata) on SIGINT; it ignores SIGTERM
                os.killpg(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> AzuriteServer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()


# --- `node-agent azurite start|stop|status`: one Azurite that outlives the command --------
STATE_FILE = "node-agent-azurite.json"
DEFAULT_PORT = 10000  # Azurite's own default blob port


def default_location() -> Path:
    """Where `node-agent azurite` keeps Azurite's data when --location is not given."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "node-agent" / "azurite"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recorded(location: Path) -> dict[str, object] | None:
    """The Azurite `azurite start` left running in `location` (None when none runs there:
    no record, a damaged one, or its process is gone). The record's pid is trusted only
    while that process has the start time recorded with it: a pid reused by another
    process after a reboot or a crash is never signalled."""
    import json

    try:
        doc = json.loads((location / STATE_FILE).read_text(encoding="utf-8"))
        pid, port = int(doc["pid"]), int(doc["port"])
        started = doc.get("create_time")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not _is_our_azurite(pid, started) or not port_open("127.0.0.1", port):
        return None
    account_url = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    return {
        **doc,
        "pid": pid,
        "port": port,
        "account_url": account_url,
        "location": str(location),
        "log": str(location / "azurite.log"),
    }


def _process_identity(pid: int) -> tuple[float, str] | None:
    """(start time, command line) of process `pid`, None when there is none."""
    import psutil

    try:
        p = psutil.Process(pid)
        return p.create_time(), " ".join(p.cmdline())
    except (psutil.Error, OSError):
        return None


def _is_our_azurite(pid: int, started: object) -> bool:
    """Whether `pid` is still the process `azurite start` recorded: same start time (a pid
    reused by another process has another), and an Azurite command line."""
    found = _process_identity(pid)
    if found is None:
        return False
    create_time, cmdline = found
    if isinstance(started, int | float) and not isinstance(started, bool):
        return abs(create_time - float(started)) < 0.05
    return "azurite" in cmdline.lower()  # a record from before create_time was kept


def start_detached(location: Path, port: int | None = None) -> tuple[dict[str, object], bool]:
    """Start Azurite (as the tests do: --skipApiVersionCheck, --loose, blob only) in its own
    session so it outlives this command; (its record, True), or (the record of the one
    already running in `location`, False). `port`: given and taken is an error; not given,
    10000 when free, else any free port."""
    import json

    running = recorded(location)
    if running is not None:
        return running, False
    if port is None:
        port = DEFAULT_PORT if not port_open("127.0.0.1", DEFAULT_PORT) else free_port()
    elif port_open("127.0.0.1", port):
        raise StorageError(
            f"port {port} is already in use on 127.0.0.1 (another Azurite?); "
            "choose another with --port, or leave --port out for a free one"
        )
    server = AzuriteServer(port=port, location=location).start()
    assert server.proc is not None
    identity = _process_identity(server.proc.pid)
    doc: dict[str, object] = {
        "pid": server.proc.pid,
        "create_time": identity[0] if identity else None,
        "port": port,
        "account_url": server.account_url,
        "location": str(location),
        "log": str(location / "azurite.log"),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    from node_agent.runtime import write_atomic

    # atomic and never through a link planted at the record's name
    write_atomic(location / STATE_FILE, json.dumps(doc, indent=2).encode("utf-8"))
    server.proc = None  # detached: this process no longer owns it (stop() would end it)
    return doc, True


def stop_recorded(location: Path, timeout: float = 15.0) -> dict[str, object] | None:
    """Stop the Azurite recorded in `location` (SIGINT to its session: it saves its data;
    SIGKILL after `timeout`); its record, or None when none was running."""
    doc = recorded(location)
    (location / STATE_FILE).unlink(missing_ok=True)
    if doc is None:
        return None
    pid = int(str(doc["pid"]))
    # its own session (start_new_session): the group is Azurite's; else only the process
    signal_it = os.killpg if _pgid(pid) == pid else os.kill
    try:
        signal_it(pid, signal.SIGINT)
    except ProcessLookupError:
        return doc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
        with _reaped():
            os.waitpid(pid, os.WNOHANG)
    if _alive(pid) and _is_our_azurite(pid, doc.get("create_time")):
        with _reaped():
            signal_it(pid, signal.SIGKILL)
    return doc


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


class _reaped:
    """Ignore 'no such child/process' (the process is not ours to wait for, or is gone)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, t: object, e: object, tb: object) -> bool:
        return isinstance(e, ChildProcessError | ProcessLookupError)
