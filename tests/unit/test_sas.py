"""A container SAS signed by node-agent's own code matches the SDK's."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from node_agent.azurite import AZURITE_ACCOUNT, AZURITE_KEY


def test_signed_container_sas_matches_the_sdk() -> None:
    from urllib.parse import parse_qs

    from azure.storage.blob import generate_container_sas

    from node_agent.sync.access import sign_container_sas

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    expiry = start + timedelta(hours=6)
    sdk = parse_qs(
        generate_container_sas(
            AZURITE_ACCOUNT,
            "some-container",
            account_key=AZURITE_KEY,
            permission="rl",
            start=start,
            expiry=expiry,
        )
    )
    ours = parse_qs(
        sign_container_sas(
            AZURITE_ACCOUNT,
            AZURITE_KEY,
            "some-container",
            start=start,
            expiry=expiry,
            version=sdk["sv"][0],
        )
    )
    assert ours == sdk
