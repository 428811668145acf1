"""Secrets for the masking tests: an account SAS for Azurite, and every form of a SAS that
must never appear in a log."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import quote, unquote

from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

from node_agent.azurite import AZURITE_ACCOUNT, AZURITE_KEY

SAS_VAR = "RENDER_STORAGE_SAS"


def azurite_sas() -> str:
    """An account SAS for Azurite (read, write, list, create, add), valid for an hour."""
    return generate_account_sas(
        AZURITE_ACCOUNT,
        AZURITE_KEY,
        ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(read=True, write=True, list=True, create=True, add=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )


def sas_sig(sas: str) -> str:
    """The signature as it stands in the SAS (URL-encoded)."""
    return dict(p.split("=", 1) for p in sas.lstrip("?").split("&"))["sig"]


def secret_forms(sas: str) -> dict[str, str]:
    """Every form of the secret that must not appear in a log."""
    sig = sas_sig(sas)
    return {
        "sas": sas,
        "sas url-encoded": quote(sas, safe=""),
        "sas url-decoded": unquote(sas),
        "sas json-escaped": sas.replace("&", "\\u0026"),
        "sig": sig,
        "sig decoded": unquote(sig),
        "sig decoded json slashes": unquote(sig).replace("/", "\\/"),
        "sig double-encoded": quote(sig, safe=""),
        "sig decoded head": unquote(sig)[:20],
    }
