"""Secret masking: every form of a SAS, an account key or an unregistered secret shape."""

from __future__ import annotations

import json
import re
from urllib.parse import quote, unquote

import pytest
from helpers import sas_sig, secret_forms

from node_agent.azurite import AZURITE_KEY
from node_agent.redact import Redactor

_SAS = (
    "sv=2024-08-04&ss=b&srt=sco&sp=rwlac&se=2031-01-01T00:00:00Z"
    "&sig=Zm9vYmFyK2Jhei9xdXV4PT0rL3NpZ25hdHVyZQ%2B%2Fabc%3D"
)


@pytest.mark.parametrize(
    "text",
    [
        "https://a.blob.core.windows.net/c?" + _SAS,
        quote("https://a.blob.core.windows.net/c?" + _SAS, safe=""),
        unquote(_SAS),
        '{"url": "https://a/c?' + _SAS.replace("&", "\\u0026") + '"}',
        json.dumps(unquote(_SAS)).replace("/", "\\/"),
        "signature: " + sas_sig(_SAS),
        "signature: " + unquote(sas_sig(_SAS)),
        "signature: " + unquote(sas_sig(_SAS)).replace("/", "\\/"),
        "sig=" + sas_sig(_SAS) + " at the start of a line",
    ],
)
def test_a_registered_sas_is_masked_in_every_form(text: str) -> None:
    r = Redactor([_SAS])
    out = r(text)
    for form, value in secret_forms(_SAS).items():
        assert value not in out, (form, out)
    assert "Zm9vYmFyK2Jhei9xdXV4" not in out


@pytest.mark.parametrize(
    "text",
    [
        "see https://x.blob.core.windows.net/c/b?sv=1&sig=QUJDREVGR0hJSktMTU5PUA%3D%3D end",
        "see " + quote("https://x/c/b?sv=1&sig=QUJDREVGR0hJSktMTU5PUA%3D%3D", safe=""),
        '{"u": "https://x/c/b?sv=1\\u0026sig=QUJDREVGR0hJSktMTU5PUA%3D%3D"}',
        "sig=QUJDREVGR0hJSktMTU5PUA== alone",
        "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=QUJDREVGR0hJSktMTU5PUA==;",
        quote("AccountName=x;AccountKey=QUJDREVGR0hJSktMTU5PUA==;", safe=""),
    ],
)
def test_an_unregistered_secret_shape_is_masked_in_every_form(text: str) -> None:
    out = Redactor()(text)
    assert "QUJDREVGR0hJSktMTU5PUA" not in out, out


def test_an_account_key_is_masked_raw_url_encoded_and_json_escaped() -> None:
    key = AZURITE_KEY
    r = Redactor([f"DefaultEndpointsProtocol=http;AccountName=a;AccountKey={key};"])
    for text in (key, quote(key, safe=""), key.replace("/", "\\/"), f"k={quote(key)}!"):
        out = r(text)
        assert key[:20] not in out and quote(key, safe="")[:20] not in out, out
    assert re.fullmatch(r"\*\*\*", r(key))
