"""The job spec's `storage` section (Storage, StorageAuth), apart from the rest of the spec.

`node-agent sync` and the sync's storage access validate or type a `storage` section without
the whole job model (spec.py imports the renderer registry, mounts and frames: ~0.1 s);
spec.py re-exports both names, so `from node_agent.spec import Storage` keeps working.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from node_agent.fieldrules import ENV_NAME, account_url
from node_agent.storage.credentials import AuthKind


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
        if self.kind in ("connection_string", "sas", "account_key") and not self.env:
            raise ValueError(
                f"auth kind '{self.kind}' needs 'env': the variable holding the secret"
            )
        if self.env is not None and not ENV_NAME.match(self.env):
            raise ValueError(f"env '{self.env}' is not a valid environment variable name")
        return self


class Storage(FrozenModel):
    account_url: str
    auth: StorageAuth

    @field_validator("account_url")
    @classmethod
    def _url(cls, v: str) -> str:
        url = account_url(v)
        if "?" in v or "sig=" in v:
            raise ValueError("must not carry a SAS: put the SAS in the variable named by auth.env")
        return url
