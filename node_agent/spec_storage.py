"""The job spec's `storage` section (Storage, StorageAuth), apart from the rest of the spec.

The sync's storage access types a `storage` section without the whole job model (spec.py
imports the renderer registry, mounts and frames: ~0.1 s); spec.py re-exports both names, so
`from node_agent.spec import Storage` keeps working. The rules are fieldrules' functions:
`node-agent sync` checks its options with them without pydantic (sync/cli_settings.py).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlparse

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from node_agent.fieldrules import auth_env_problem, no_sas_url
from node_agent.storage.credentials import AuthKind, is_local_host

# Kinds whose credential belongs to one account (a key, a SAS signed by its key, a
# connection string naming its endpoint): a replica read with one of them needs its own.
_PER_ACCOUNT = ("account_key", "sas", "connection_string")


class FrozenModel(BaseModel):
    """The spec's model base: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageAuth(FrozenModel):
    """How to authenticate. Secrets are never in the spec: `env` names the variable holding it."""

    kind: AuthKind
    env: str | None = Field(None, description="environment variable holding the secret")
    client_id: str | None = Field(None, description="user-assigned managed identity client id")
    expose_to_renderer: bool = Field(
        False,
        description=(
            "DANGEROUS: also give the renderer the variable named by 'env' (the storage "
            "secret). Off by default: node_agent removes it, every mount secret variable and "
            "the AZURE_STORAGE_* credential variables from the renderer's environment. Turn on "
            "only for a renderer that must read storage itself: the secret can then reach its "
            "logs and outputs, and every render task logs a warning."
        ),
    )

    @model_validator(mode="after")
    def _needs_env(self) -> StorageAuth:
        problem = auth_env_problem(self.kind, self.env)
        if problem:
            raise ValueError(problem)
        return self


_no_sas_url = no_sas_url  # the rule lives in fieldrules (the sync CLI checks it without pydantic)


def same_account(a: str, b: str) -> bool:
    """Two account URLs naming the same account (host and port case-insensitively, and the
    path: Azurite's account is its first path component)."""

    def key(u: str) -> tuple[str, int | None, str]:
        p = urlparse(u)
        return ((p.hostname or "").lower(), p.port, p.path.rstrip("/"))

    return key(a) == key(b)


class Replica(FrozenModel):
    """A further account holding the same assets (object replication): asset bodies may be
    read from it, verified against the primary's listing. Given as a URL string (read with
    the primary's auth: emulator and managed_identity only, a key or SAS is one account's)
    or as {account_url, auth}."""

    account_url: str
    auth: StorageAuth | None = Field(None, description="default: storage.auth")

    @field_validator("account_url")
    @classmethod
    def _url(cls, v: str) -> str:
        url = _no_sas_url(v)
        host = urlparse(url).hostname or ""
        if not url.startswith("https://") and not is_local_host(host):
            raise ValueError(
                f"'{v}' must be https:// (plain http only for a local emulator such as Azurite)"
            )
        return url


def _replica_in_context(r: Replica, info: ValidationInfo) -> Replica:
    """Checks against the primary (the replica list's own entry, so the error names it)."""
    primary = info.data.get("account_url")
    if primary and same_account(r.account_url, primary):
        raise ValueError(f"'{r.account_url}' is account_url itself: list only the other accounts")
    auth = info.data.get("auth")
    if r.auth is None and auth is not None and auth.kind in _PER_ACCOUNT:
        raise ValueError(
            f"the primary's auth kind '{auth.kind}' holds one account's credential: give "
            f"this replica its own, as {{account_url: {r.account_url}, auth: {{kind: "
            f"{auth.kind}, env: <VARIABLE>}}}}"
        )
    return r


class Storage(FrozenModel):
    account_url: str
    auth: StorageAuth
    replicas: list[Annotated[Replica, AfterValidator(_replica_in_context)]] = Field(
        [],
        description="further accounts holding the same assets (object replication); each "
        "node reads asset bodies from the one its node id picks (docs/scale.md)",
    )

    _url = field_validator("account_url")(_no_sas_url)

    @field_validator("replicas", mode="before")
    @classmethod
    def _strings(cls, v: Any) -> Any:
        """A URL string is {account_url: <it>} (the primary's auth)."""
        if isinstance(v, list):
            return [{"account_url": e} if isinstance(e, str) else e for e in v]
        return v

    @field_validator("replicas")
    @classmethod
    def _distinct(cls, v: list[Replica]) -> list[Replica]:
        for i, r in enumerate(v):
            for j in range(i):
                if same_account(v[j].account_url, r.account_url):
                    raise ValueError(f"[{j}] and [{i}] name the same account '{r.account_url}'")
        return v

    def secret_vars(self) -> list[str]:
        """Every environment variable this section reads a secret from (the primary's
        auth.env, then each replica's own): what the renderer must not see."""
        names = [self.auth.env] + [r.auth.env for r in self.replicas if r.auth is not None]
        return list(dict.fromkeys(n for n in names if n))

    def replica_storages(self) -> list[Storage]:
        """Each replica as a Storage of its own (its auth, else the primary's)."""
        return [Storage(account_url=r.account_url, auth=r.auth or self.auth) for r in self.replicas]
