"""`node-agent sync`'s storage options and source argument as small frozen dataclasses,
checked by the same rules the job spec's pydantic models call (node_agent.fieldrules).

A no-op sync's start is mostly imports: the pydantic models (spec_storage, spec_assets) cost
~60 ms of it (`python -X importtime`; issue 16), so the CLI never imports pydantic. The
dataclasses fit storage.credentials.StorageSettings and sync.items.Source, what storage
access and the engine read. Errors are one SpecError line, worded as the models' would be
(`options: <field>: <reason>`, `source '<arg>': <reason>`).
"""

from __future__ import annotations

from dataclasses import dataclass

from node_agent.errors import SpecError
from node_agent.fieldrules import (
    auth_env_problem,
    check_container,
    folder_prefix,
    manifest_pin,
    no_sas_url,
)
from node_agent.safepath import shown


@dataclass(frozen=True)
class CliAuth:
    kind: str
    env: str | None = None
    client_id: str | None = None


@dataclass(frozen=True)
class CliStorage:
    account_url: str
    auth: CliAuth

    def replica_storages(self) -> list[CliStorage]:
        """The CLI names one account (`storage.replicas` is the job spec's)."""
        return []


@dataclass(frozen=True)
class CliSource:
    name: str
    container: str
    prefix: str = ""
    dest: str = ""
    manifest: str | None = None


def cli_storage(account_url: str, auth_kind: str, auth_env: str | None) -> CliStorage:
    """--account-url, --auth (a click.Choice of AUTH_KINDS), --auth-env; SpecError naming
    each field that is wrong, one line each."""
    problems = []
    url = account_url
    try:
        url = no_sas_url(account_url)
    except ValueError as e:
        problems.append(f"options: account_url: {e}")
    problem = auth_env_problem(auth_kind, auth_env)
    if problem:
        problems.append(f"options: auth: {problem}")
    if problems:
        raise SpecError("\n".join(shown(p) for p in problems))
    return CliStorage(url, CliAuth(auth_kind, auth_env))


def cli_source(source: str, manifest: str | None) -> CliSource:
    """<container>[/<prefix>] and --manifest; SpecError `source '<source>': <reason>`."""
    container, _, prefix = source.partition("/")
    try:
        check_container(container)
        return CliSource(
            name="cli",
            container=container,
            prefix=folder_prefix(prefix),
            manifest=manifest_pin(manifest),
        )
    except ValueError as e:
        raise SpecError(shown(f"source '{source}': {e}")) from None
