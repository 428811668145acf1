"""storage.replicas: the spec's rules and the node's pick (sync/replicas.py), in-process."""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import ValidationError

from node_agent.spec_storage import Storage
from node_agent.specfile import format_validation_error
from node_agent.sync.replicas import content_address, pick

P = "https://prim.blob.core.windows.net"


def _storage(replicas: list[object], kind: str = "managed_identity") -> Storage:
    auth: dict[str, str] = {"kind": kind}
    if kind in ("account_key", "sas", "connection_string"):
        auth["env"] = "PRIM_SECRET"
    return Storage.model_validate({"account_url": P, "auth": auth, "replicas": replicas})


def test_a_url_string_reads_with_the_primarys_auth() -> None:
    s = _storage(["https://r1.blob.core.windows.net/"])
    (r,) = s.replica_storages()
    assert r.account_url == "https://r1.blob.core.windows.net"
    assert r.auth == s.auth


@pytest.mark.parametrize("kind", ["account_key", "sas", "connection_string"])
def test_a_per_account_credential_needs_its_own_auth(kind: str) -> None:
    with pytest.raises(ValidationError, match="holds one account's credential"):
        _storage(["https://r1.blob.core.windows.net"], kind)
    s = _storage(
        [{"account_url": "https://r1.blob.core.windows.net", "auth": {"kind": kind, "env": "R1"}}],
        kind,
    )
    assert s.replica_storages()[0].auth.env == "R1"
    assert s.secret_vars() == ["PRIM_SECRET", "R1"]


def test_a_sas_in_a_replica_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as err:
        _storage(["https://r1.blob.core.windows.net/?sv=1&sig=c2VjcmV0"])
    said = format_validation_error("job.yaml", err.value)  # what the CLI prints
    assert said.startswith("job.yaml: replicas[0].account_url: the URL of r1.blob")
    assert "c2VjcmV0" not in said


def test_no_replicas_by_default() -> None:
    assert Storage.model_validate({"account_url": P, "auth": {"kind": "emulator"}}).replicas == []


def test_pick_is_stable_and_spreads_a_farm_evenly() -> None:
    assert pick("tvmps_abc", 5) == pick("tvmps_abc", 5)
    for n in (2, 3, 5):
        counts = Counter(pick(f"tvmps_{i:04}", n) for i in range(1000))
        assert set(counts) == set(range(n))
        assert max(counts.values()) - min(counts.values()) < 1000 / n * 0.25, counts


def test_content_address_of_manifest_content_only() -> None:
    h = "ab" * 32
    assert content_address(f"shot/content/{h}") == h
    assert content_address(f"content/{h}") == h
    assert content_address(f"shot/tex/{h}") is None
    assert content_address(f"shot/content/{h}.png") is None
