"""The one account-name parser (storage.credentials), used by the sync, uploads, submit
and mounts alike: a table of account URLs as they appear in specs and pool configs."""

from __future__ import annotations

import pytest

from node_agent.mounts.model import Blobfuse2Mount, RcloneMount
from node_agent.storage.credentials import account_name, is_local_host


@pytest.mark.parametrize(
    ("url", "account"),
    [
        ("https://studio.blob.core.windows.net", "studio"),
        ("https://studio.blob.core.windows.net/", "studio"),
        ("https://studio.blob.core.chinacloudapi.cn", "studio"),
        ("https://studio.privatelink.blob.core.windows.net", "studio"),
        ("http://127.0.0.1:10000/devstoreaccount1", "devstoreaccount1"),
        ("http://127.0.0.1:51234/devstoreaccount1/", "devstoreaccount1"),
        ("http://localhost:10000/devstoreaccount1", "devstoreaccount1"),
        ("http://[::1]:10000/devstoreaccount1", "devstoreaccount1"),
        ("http://10.0.0.4:10000/acct2", "acct2"),
    ],
)
def test_account_name_from_every_url_shape(url: str, account: str) -> None:
    assert account_name(url) == account


def test_local_hosts_are_emulators_and_real_hosts_are_not() -> None:
    assert all(is_local_host(h) for h in ("127.0.0.1", "localhost", "::1", "10.1.2.3"))
    assert not any(is_local_host(h) for h in ("studio.blob.core.windows.net", "azurite.local"))


@pytest.mark.parametrize("model", [RcloneMount, Blobfuse2Mount])
def test_mounts_use_the_same_parser(model: type[RcloneMount] | type[Blobfuse2Mount]) -> None:
    driver = "rclone" if model is RcloneMount else "blobfuse2"
    for url in ("https://studio.blob.core.windows.net", "http://127.0.0.1:10000/devstoreaccount1"):
        doc = {"name": "refs", "driver": driver, "container": "refs", "account_url": url}
        m = model.model_validate({**doc, "auth": {"mode": "key", "env": "K"}})
        assert m.account_name == account_name(url)
        assert m.is_emulator == url.startswith("http://127.")


@pytest.mark.parametrize("kind", ["emulator", "sas", "account_key", "managed_identity"])
def test_spec_storage_auth_is_a_valid_mount_auth(kind: str) -> None:
    """One vocabulary: the spec's storage credentials, as a mount's auth block, validate as
    the mount model's BlobAuth (and a connection string is refused with one line)."""
    from node_agent.mounts.model import BlobAuth
    from node_agent.redact import Redactor
    from node_agent.spec import Storage
    from node_agent.storage.credentials import MOUNT_MODE, MOUNT_MODES, Credentials

    auth = {"kind": kind, **({"env": "SECRET_VAR"} if kind in ("sas", "account_key") else {})}
    storage = Storage.model_validate(
        {"account_url": "https://studio.blob.core.windows.net", "auth": auth}
    )
    block = Credentials(storage, Redactor(), {}).mount_auth()
    assert BlobAuth.model_validate(block).mode == MOUNT_MODE[kind]
    assert set(MOUNT_MODE.values()) <= set(MOUNT_MODES)


def test_a_connection_string_is_not_a_mount_auth() -> None:
    from node_agent.errors import StorageError
    from node_agent.redact import Redactor
    from node_agent.spec import Storage
    from node_agent.storage.credentials import Credentials

    storage = Storage.model_validate(
        {
            "account_url": "https://studio.blob.core.windows.net",
            "auth": {"kind": "connection_string", "env": "CS"},
        }
    )
    with pytest.raises(StorageError, match="cannot be used for a mount"):
        Credentials(storage, Redactor(), {}).mount_auth()
