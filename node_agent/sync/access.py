"""How the sync reaches storage: a container SAS for the lean REST path, the SDK only when needed.

The credentials are resolved by storage.credentials (one vocabulary for sync, uploads,
submit and mounts): with a key (emulator, account key, a connection string with a key) a
short-lived read/list container SAS is signed there without the SDK (so a sync never pays
its import, ~0.6 s, or its per-request CPU); with `auth.kind: sas` the given SAS is used.
Managed identity has no key: the SDK (storage.blob.BlobStore) lists and downloads.

With `storage.replicas`, `replicas` holds an Access per account (this one first) and the
node's pick among them (sync/replicas.py); each replica's credentials are resolved as
the primary's are (its own `auth`, or the primary's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from node_agent.redact import Redactor
from node_agent.storage.credentials import (
    SAS_VERSION,
    Credentials,
    StorageSettings,
    sign_container_sas,
)

if TYPE_CHECKING:
    from node_agent.storage import BlobStore
    from node_agent.sync.replicas import ReplicaSet

__all__ = ["SAS_VERSION", "Access", "sign_container_sas"]


class Access:
    def __init__(
        self, storage: StorageSettings, redactor: Redactor, env: Mapping[str, str] | None = None
    ) -> None:
        self.storage = storage
        self.account_url = storage.account_url
        self.redactor = redactor
        self.credentials = Credentials(storage, redactor, env)
        self.env = self.credentials.env
        self._store: BlobStore | None = None
        self.replicas: ReplicaSet | None = None
        others = storage.replica_storages() if getattr(storage, "replicas", None) else []
        if others:
            from node_agent.sync.replicas import ReplicaSet

            accounts = [self] + [Access(s, redactor, self.env) for s in others]
            self.replicas = ReplicaSet(accounts, self.env)

    @property
    def store(self) -> BlobStore:
        """The SDK client, made on first use."""
        if self._store is None:
            from node_agent.storage import BlobStore

            self._store = BlobStore(self.storage, self.redactor, self.env)
        return self._store

    def container_sas(self, container: str, hours: float = 6.0) -> str | None:
        """A read/list SAS for `container`, or None when only the SDK can authenticate."""
        return self.credentials.container_sas(container, hours)
