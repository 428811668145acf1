"""One auth vocabulary and one resolver for storage: sync, uploads, submit and mounts.

The vocabulary is the job spec's `storage.auth.kind` (AUTH_KINDS). A resolved `Credentials`
gives what each user needs from it:
- `sdk_service(**kw)`: an azure-storage-blob BlobServiceClient (storage.blob, uploads, submit);
- `container_sas(container)`: a read/list container SAS for the lean REST path
  (storage.rest), signed here from the key (no SDK import), the spec's own SAS, or None
  when only the SDK can authenticate (managed identity);
- `mount_auth()`: the same credentials as a mount's `auth` block (mounts/model.BlobAuth,
  whose modes are named in MOUNT_MODE).
Secrets are read from the environment variable `auth.env` names and registered with the
redactor before any use. Adding an auth mode is a change here (plus the spec's Literal).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args
from urllib.parse import quote, urlparse

from node_agent.azurite import AZURITE_ACCOUNT, AZURITE_KEY, emulator_connection_string
from node_agent.errors import ExitCode, StorageError
from node_agent.redact import Redactor

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient

AuthKind = Literal["emulator", "connection_string", "sas", "account_key", "managed_identity"]
AUTH_KINDS: tuple[str, ...] = get_args(AuthKind)
# A mount's auth modes (mounts/model.BlobAuth.mode): blobfuse2's and rclone's words; spn (a
# service principal) exists for mounts only. The spec's kind -> a mount's mode (connection
# strings are not a mount mode).
MountMode = Literal["key", "sas", "msi", "spn", "emulator"]


class AuthSettings(Protocol):
    """What storage access reads of a `storage.auth`: the job spec's StorageAuth (pydantic)
    or `node-agent sync`'s options (sync/cli_settings.CliAuth, no pydantic import)."""

    @property
    def kind(self) -> str: ...

    @property
    def env(self) -> str | None: ...

    @property
    def client_id(self) -> str | None: ...


class StorageSettings(Protocol):
    """What storage access reads of a `storage` section: spec_storage.Storage or
    sync/cli_settings.CliStorage."""

    @property
    def account_url(self) -> str: ...

    @property
    def auth(self) -> AuthSettings: ...

    def replica_storages(self) -> Sequence[StorageSettings]: ...


MOUNT_MODES: tuple[str, ...] = get_args(MountMode)
MOUNT_MODE: dict[str, MountMode] = {
    "emulator": "emulator",
    "sas": "sas",
    "account_key": "key",
    "managed_identity": "msi",
}
SAS_VERSION = "2021-08-06"


def is_local_host(host: str) -> bool:
    """An emulator-style endpoint: the account name is the URL's first path component."""
    return host in ("127.0.0.1", "localhost", "::1") or host.replace(".", "").isdigit()


def account_name(url: str) -> str:
    """The storage account of an account URL: `https://<account>.blob...` or, on an
    emulator (`http://127.0.0.1:10000/<account>`), the first path component."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    if is_local_host(host):
        return parsed.path.strip("/").split("/")[0]
    return host.split(".")[0]


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
    """A service SAS for one container (no stored policy, no IP/protocol limits); the SDK's
    own `generate_container_sas` gives the same signature (tests/unit/test_sas.py)."""
    st, se = (t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in (start, expiry))
    fields = [permission, st, se, f"/blob/{account}/{container}", "", "", "", version, "c"]
    string_to_sign = "\n".join(fields + [""] * 7)
    digest = hmac.new(
        base64.b64decode(key), string_to_sign.encode("utf-8"), hashlib.sha256
    ).digest()
    sig = base64.b64encode(digest).decode()
    parts = {"st": st, "se": se, "sp": permission, "sv": version, "sr": "c", "sig": sig}
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in parts.items())


class CredentialMissing(StorageError):
    """The variable `storage.auth.env` names is not set: the job's set-up (or this shell),
    not storage, is wrong, and no request was made: a usage error (exit 2)."""

    exit_code = ExitCode.USAGE


_SECRET_WORDS = {
    "account_key": "account key",
    "sas": "SAS token",
    "connection_string": "connection string",
}


def describe_credential(storage: StorageSettings) -> str:
    """Which credential a request used, naming its variable and never its value."""
    auth = storage.auth
    if auth.kind == "emulator":
        return "Azurite's public development key (storage.auth.kind: emulator)"
    if auth.kind == "managed_identity":
        who = f" (client id {auth.client_id})" if auth.client_id else ""
        return f"the node's managed identity{who} (storage.auth.kind: managed_identity)"
    word = _SECRET_WORDS.get(auth.kind, "secret")
    return f"the {word} in ${auth.env} (storage.auth.env; storage.auth.kind: {auth.kind})"


def denied(what: str, status: int | str, code: str, storage: StorageSettings) -> str:
    """One line for a 401/403 from storage: what was refused and with which credential."""
    fix = (
        f"check that ${storage.auth.env} holds a valid {_SECRET_WORDS.get(storage.auth.kind, 'secret')} "
        f"for {storage.account_url}"
        if storage.auth.env
        else "check the role assignments on the account"
        if storage.auth.kind == "managed_identity"
        else "check storage.account_url and storage.auth"
    )
    said = f"{status} {code}".strip()
    return f"{what}: access denied ({said}) with {describe_credential(storage)}: {fix}"


class Credentials:
    """The spec's `storage` resolved against an environment."""

    def __init__(
        self, storage: StorageSettings, redactor: Redactor, env: Mapping[str, str] | None = None
    ) -> None:
        self.storage = storage
        self.kind: str = storage.auth.kind
        self.account_url = storage.account_url
        self.redactor = redactor
        self.env = os.environ if env is None else env

    def secret(self) -> str:
        """The secret in the variable `auth.env` names (registered with the redactor)."""
        var = self.storage.auth.env or ""
        value = self.env.get(var, "") if var else ""
        if not value:
            raise CredentialMissing(
                f"storage.auth.env: environment variable {var} is not set (it holds the "
                f"storage {_SECRET_WORDS.get(self.kind, 'secret')}; set it in the job's "
                "environment, or export it in this shell)"
            )
        self.redactor.add(value)
        return value

    def sas(self) -> str:
        sas = self.secret().lstrip("?")
        self.redactor.add(sas)
        return sas

    def sdk_service(self, **kw: Any) -> BlobServiceClient:
        """A BlobServiceClient for these credentials (`kw`: the client's options)."""
        from azure.storage.blob import BlobServiceClient

        if self.storage.auth.env:
            self.secret()  # a named variable must be set, whatever the kind
        if self.kind == "emulator":
            conn = emulator_connection_string(self.account_url)
            return BlobServiceClient.from_connection_string(conn, **kw)
        if self.kind == "connection_string":
            return BlobServiceClient.from_connection_string(self.secret(), **kw)
        if self.kind == "sas":
            return BlobServiceClient(self.account_url, credential=self.sas(), **kw)
        if self.kind == "account_key":
            key = {"account_name": account_name(self.account_url), "account_key": self.secret()}
            return BlobServiceClient(self.account_url, credential=key, **kw)
        from azure.identity import ManagedIdentityCredential

        cid = self.storage.auth.client_id
        mi = ManagedIdentityCredential(client_id=cid) if cid else ManagedIdentityCredential()
        return BlobServiceClient(self.account_url, credential=mi, **kw)

    def container_sas(self, container: str, hours: float = 6.0) -> str | None:
        """A read/list SAS for `container`, or None when only the SDK can authenticate."""
        if self.kind == "managed_identity":
            return None
        if self.kind == "sas":
            return self.sas()
        if self.kind == "emulator":
            account, key = AZURITE_ACCOUNT, AZURITE_KEY
        elif self.kind == "account_key":
            account, key = account_name(self.account_url), self.secret()
        else:
            fields = dict(p.split("=", 1) for p in self.secret().split(";") if "=" in p)
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

    def mount_auth(self) -> dict[str, str]:  # a dict: the mount model validates it
        """These credentials as a mount's `auth` block (mounts/model.BlobAuth fields)."""
        mode = MOUNT_MODE.get(self.kind)
        if mode is None:
            raise StorageError(f"storage.auth.kind '{self.kind}' cannot be used for a mount")
        auth: dict[str, str] = {"mode": mode}
        if self.storage.auth.env:
            auth["env"] = self.storage.auth.env
        if self.storage.auth.client_id:
            auth["client_id"] = self.storage.auth.client_id
        return auth
