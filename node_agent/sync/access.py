"""How the sync reaches storage: a container SAS for the lean HTTP path, the SDK only when needed.

With a key (emulator, account key, a connection string with a key) a short-lived
read/list container SAS is signed here (HMAC-SHA256, the service SAS format of
`sv` below; the SDK's own `generate_container_sas` gives the same signature, see
tests/test_sync_cli.py) so a sync never pays the SDK import (~0.6 s) or its per-request
CPU. With `auth.kind: sas` the given SAS is used. Managed identity has no key: the
SDK (BlobStore) lists and downloads.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING
from urllib.parse import quote, urlparse

from node_agent.azurite import AZURITE_ACCOUNT, AZURITE_KEY
from node_agent.errors import StorageError
from node_agent.redact import Redactor
from node_agent.spec import Storage

if TYPE_CHECKING:
    from node_agent.storage import BlobStore

SAS_VERSION = "2021-08-06"


def sign_container_sas(
    account: str,
    key: str,
    container: str,
    *,
    start: datetime,
    expiry: datetime,
    permission: str = "rl",
    version: str = SAS_VERSION,
) -> str:
    """A service SAS for one container (no stored policy, no IP/protocol limits)."""
    st, se = (t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in (start, expiry))
    string_to_sign = "\n".join(
        [
            permission,
            st,
            se,
            f"/blob/{account}/{container}",
            "",
            "",
            "",
            version,
            "c",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        ]
    )
    digest = hmac.new(
        base64.b64decode(key), string_to_sign.encode("utf-8"), hashlib.sha256
    ).digest()
    sig = base64.b64encode(digest).decode()
    parts = {"st": st, "se": se, "sp": permission, "sv": version, "sr": "c", "sig": sig}
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in parts.items())


def _account_name(url: str) -> str:
    parsed = urlparse(url)
    host = parsed.hostname or ""
    if host in ("127.0.0.1", "localhost") or host.replace(".", "").isdigit():
        return parsed.path.strip("/").split("/")[0]
    return host.split(".")[0]


class Access:
    def __init__(
        self, storage: Storage, redactor: Redactor, env: Mapping[str, str] | None = None
    ) -> None:
        self.storage = storage
        self.account_url = storage.account_url
        self.redactor = redactor
        self.env = os.environ if env is None else env
        self._store: BlobStore | None = None

    @property
    def store(self) -> BlobStore:
        """The SDK client, made on first use."""
        if self._store is None:
            from node_agent.storage import BlobStore

            self._store = BlobStore(self.storage, self.redactor, self.env)
        return self._store

    def _secret(self) -> str:
        var = self.storage.auth.env or ""
        secret = self.env.get(var, "")
        if not secret:
            raise StorageError(f"storage.auth.env: environment variable {var} is not set")
        self.redactor.add(secret)
        return secret

    def container_sas(self, container: str, hours: float = 6.0) -> str | None:
        """A read/list SAS for `container`, or None when only the SDK can authenticate."""
        kind = self.storage.auth.kind
        if kind == "managed_identity":
            return None
        if kind == "sas":
            sas = self._secret().lstrip("?")
            self.redactor.add(sas)
            return sas
        if kind == "emulator":
            account, key = AZURITE_ACCOUNT, AZURITE_KEY
        elif kind == "account_key":
            account, key = _account_name(self.account_url), self._secret()
        else:
            fields = dict(p.split("=", 1) for p in self._secret().split(";") if "=" in p)
            if fields.get("SharedAccessSignature"):
                self.redactor.add(fields["SharedAccessSignature"])
                return fields["SharedAccessSignature"].lstrip("?")
            account, key = fields.get("AccountName", ""), fields.get("AccountKey", "")
            if not account or not key:
                return None
        now = datetime.now(timezone.utc)
        sas = sign_container_sas(
            account,
            key,
            container,
            start=now - timedelta(minutes=5),
            expiry=now + timedelta(hours=hours),
        )
        self.redactor.add(sas)
        return sas
