"""`node-agent sync`'s options and source (sync/cli_settings.py, no pydantic) are checked by
the same rules as the job spec's models (spec_storage.Storage, spec_assets.AssetSource): the
same inputs are refused with the same reasons, and accepted ones come out the same."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from node_agent.errors import SpecError
from node_agent.spec_assets import AssetSource
from node_agent.spec_storage import Storage
from node_agent.specfile import format_validation_error
from node_agent.sync.cli_settings import cli_source, cli_storage

AZ = "http://127.0.0.1:10000/devstoreaccount1"


@pytest.mark.parametrize(
    ("url", "kind", "env"),
    [
        (AZ + "/", "emulator", None),
        ("ftp://x", "emulator", None),
        ("https://a.blob.core.windows.net/?sv=1&sig=abc", "sas", "V"),
        (AZ, "sas", None),
        (AZ, "account_key", "BAD-NAME"),
        (AZ, "managed_identity", "1X"),
        ("ftp://x", "connection_string", None),
        ("https://a.blob.core.windows.net", "account_key", "KEY"),
    ],
)
def test_storage_options_match_the_spec_model(url: str, kind: str, env: str | None) -> None:
    try:
        model = Storage.model_validate({"account_url": url, "auth": {"kind": kind, "env": env}})
        want = None
    except ValidationError as e:
        want = format_validation_error("options", e)
    if want is None:
        got = cli_storage(url, kind, env)
        assert (got.account_url, got.auth.kind, got.auth.env) == (
            model.account_url,
            model.auth.kind,
            model.auth.env,
        )
        assert got.replica_storages() == []
    else:
        with pytest.raises(SpecError) as err:
            cli_storage(url, kind, env)
        assert str(err.value) == want


@pytest.mark.parametrize(
    ("source", "manifest"),
    [
        ("assets/shot01//", None),
        ("assets", "latest"),
        ("assets/x", "a" * 64),
        ("Bad_Cont/x", None),
        ("ab", None),
        ("assets/../x", None),
        ("assets/a\\b", None),
        ("assets/./b", None),
        ("assets/x", "zz"),
    ],
)
def test_source_matches_the_spec_model(source: str, manifest: str | None) -> None:
    container, _, prefix = source.partition("/")
    try:
        model = AssetSource(name="cli", container=container, prefix=prefix, manifest=manifest)
    except ValidationError as e:
        with pytest.raises(SpecError) as err:
            cli_source(source, manifest)
        msg = str(err.value)
        assert msg.startswith(f"source '{source}': ") and "\n" not in msg
        if e.errors()[0]["type"] == "value_error":  # the shared rule's own words
            assert msg.endswith(e.errors()[0]["msg"].removeprefix("Value error, "))
        return
    got = cli_source(source, manifest)
    assert (got.name, got.container, got.prefix, got.dest, got.manifest) == (
        model.name,
        model.container,
        model.prefix,
        model.dest,
        model.manifest,
    )
