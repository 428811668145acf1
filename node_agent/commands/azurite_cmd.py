"""`node-agent azurite start|stop|status`: the bundled Azurite (node_modules) for a local
project, started the way the tests start it and left running between commands."""

from __future__ import annotations

import json
from pathlib import Path

import click

from node_agent.errors import ExitCode
from node_agent.redact import Redactor
from node_agent.runtime import run_command

_location = click.option(
    "--location",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Azurite's data folder (default: $XDG_STATE_HOME/node-agent/azurite, else "
    "~/.local/state/node-agent/azurite). One Azurite per folder.",
)
_json = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _details(doc: dict[str, object]) -> str:
    url = doc["account_url"]
    return "\n".join(
        [
            f"account url: {url}",
            f"data:        {doc['location']}",
            f"log:         {doc['log']}",
            f"pid:         {doc['pid']}",
            "",
            "in a job spec:",
            "  storage:",
            f"    account_url: {url}",
            "    auth: {kind: emulator}   # Azurite's public development account and key",
            "on the command line: --account-url " + str(url) + "  (--auth emulator is the default)",
        ]
    )


@click.group("azurite")
def azurite_group() -> None:
    """Run the bundled Azurite blob emulator for a local project (docs/local-project.md).

    `local run` also starts one by itself when the spec's storage is an emulator on a
    port nothing listens on, but that one has no data: push your assets to an Azurite
    started here first."""


@azurite_group.command("start")
@_location
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Blob port (default: 10000 when free, else a free port).",
)
@_json
def start_cmd(location: Path | None, port: int | None, as_json: bool) -> None:
    """Start Azurite (blob service only, --skipApiVersionCheck so the current SDK's API
    version is accepted) and leave it running; print its account URL."""
    from node_agent.azurite import default_location, start_detached

    def go(r: Redactor) -> int:
        where = (location or default_location()).absolute()
        doc, started = start_detached(where, port)
        if as_json:
            click.echo(json.dumps({**doc, "started": started}, indent=2))
        else:
            click.echo("Azurite started" if started else "Azurite already running here")
            click.echo(_details(doc))
        return 0

    run_command(go)


@azurite_group.command("status")
@_location
@click.option("--url", "url_only", is_flag=True, help="Print only the account URL.")
@_json
def status_cmd(location: Path | None, url_only: bool, as_json: bool) -> None:
    """Whether an Azurite started by `azurite start` runs (exit 0) or not (exit 4)."""
    from node_agent.azurite import default_location, recorded

    def go(r: Redactor) -> int:
        where = (location or default_location()).absolute()
        doc = recorded(where)
        if as_json:
            click.echo(json.dumps({"running": doc is not None, **(doc or {})}, indent=2))
        elif doc is None:
            click.echo(f"no Azurite running for {where} (node-agent azurite start)", err=True)
        elif url_only:
            click.echo(str(doc["account_url"]))
        else:
            click.echo("Azurite running")
            click.echo(_details(doc))
        return 0 if doc is not None else int(ExitCode.STORAGE)

    run_command(go)


@azurite_group.command("stop")
@_location
def stop_cmd(location: Path | None) -> None:
    """Stop the Azurite `azurite start` started for this data folder (its data is kept)."""
    from node_agent.azurite import default_location, stop_recorded

    def go(r: Redactor) -> int:
        where = (location or default_location()).absolute()
        doc = stop_recorded(where)
        if doc is None:
            click.echo(f"no Azurite running for {where}")
        else:
            click.echo(
                f"Azurite stopped (pid {doc['pid']}, port {doc['port']}; data kept in {where})"
            )
        return 0

    run_command(go)
