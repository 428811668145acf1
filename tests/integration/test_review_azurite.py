"""`node-agent azurite status|stop` trust their record in the data folder only for the
process they started: a pid reused by another process (or a record copied, edited, or left
from a reboot) never gets a signal."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

from helpers import run_agent

from node_agent.azurite import STATE_FILE


def test_stop_never_signals_a_process_that_only_has_the_recorded_pid(tmp_path: Path) -> None:
    where = tmp_path / "azurite-data"
    where.mkdir()
    # an unrelated process leading its own session (as the recorded Azurite did), and
    # something listening on the recorded port
    other = subprocess.Popen(["sleep", "300"], start_new_session=True)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        record = {
            "pid": other.pid,
            "port": port,
            "account_url": f"http://127.0.0.1:{port}/devstoreaccount1",
            "location": str(where),
        }
        (where / STATE_FILE).write_text(json.dumps(record))
        status = run_agent(["azurite", "status", "--location", str(where)])
        assert status.returncode == 4, status.stdout + status.stderr
        stop = run_agent(["azurite", "stop", "--location", str(where)])
        assert stop.returncode == 0, stop.stderr
        assert "no Azurite running" in stop.stdout
        assert other.poll() is None, "the unrelated process was signalled"
    finally:
        other.kill()
        other.wait()
        listener.close()


def test_start_status_stop_of_a_real_azurite(tmp_path: Path) -> None:
    """The record of a real start is still trusted (and names the process's start time)."""
    where = tmp_path / "real"
    start = run_agent(["azurite", "start", "--location", str(where), "--json"])
    assert start.returncode == 0, start.stderr
    doc = json.loads(start.stdout)
    try:
        assert "create_time" in json.loads((where / STATE_FILE).read_text())
        assert run_agent(["azurite", "status", "--location", str(where)]).returncode == 0
    finally:
        stop = run_agent(["azurite", "stop", "--location", str(where)])
    assert stop.returncode == 0 and "Azurite stopped" in stop.stdout, stop.stdout + stop.stderr
    assert subprocess.run(["kill", "-0", str(doc["pid"])], capture_output=True).returncode != 0


def test_a_link_at_the_log_name_is_replaced_not_followed(tmp_path: Path) -> None:
    """Azurite's log in its data folder is opened without following a link planted there
    (node-agent runs as root on a node; the folder may be a workdir others can write)."""
    from node_agent.azurite import AzuriteServer

    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    location = tmp_path / "data"
    location.mkdir()
    (location / "azurite.log").symlink_to(victim)
    with AzuriteServer(location=location):
        pass
    assert victim.read_bytes() == b"precious"
    assert not (location / "azurite.log").is_symlink()


def test_a_link_at_the_record_name_is_replaced_not_followed(tmp_path: Path) -> None:
    """`azurite start` writes its record beside the data; a link planted at that name (a
    shared workdir, or a root shell) is replaced, its target untouched."""
    where = tmp_path / "linked-record"
    where.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (where / STATE_FILE).symlink_to(victim)
    start = run_agent(["azurite", "start", "--location", str(where), "--json"])
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        assert victim.read_text() == "precious\n", "the record was written through the link"
        assert not (where / STATE_FILE).is_symlink()
        assert (
            json.loads((where / STATE_FILE).read_text())["pid"] == json.loads(start.stdout)["pid"]
        )
    finally:
        stop = run_agent(["azurite", "stop", "--location", str(where)])
    assert stop.returncode == 0, stop.stdout + stop.stderr
