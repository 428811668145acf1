"""Render environment rules checked without running anything: entitlement variables, placeholders."""

from __future__ import annotations

import pytest
from helpers import make_spec_doc

from node_agent.errors import SpecError
from node_agent.renderers import substitute
from node_agent.spec import spec_from_data

ODD = "shots/my \"best\" shot; rm -rf $HOME `x` 'q'.blend"


@pytest.mark.parametrize(
    "name", ["AZ_BATCH_SOFTWARE_ENTITLEMENT_TOKEN", "AZ_BATCH_ACCOUNT_URL", "az_batch_account_url"]
)
def test_spec_env_cannot_override_or_blank_entitlement(name: str) -> None:
    for value in ("other", ""):
        with pytest.raises(SpecError) as e:
            spec_from_data(make_spec_doc("http://127.0.0.1:1/devstoreaccount1", env={name: value}))
        assert "render.env" in str(e.value) and "cannot be overridden" in str(e.value)
        assert len(str(e.value).splitlines()) == 1


def test_unknown_placeholder_is_refused_at_validation() -> None:
    with pytest.raises(SpecError, match=r"unknown placeholder '\{scen\}'"):
        spec_from_data(
            make_spec_doc("http://127.0.0.1:1/a", renderer="custom", command=["x", "{scen}"])
        )


def test_substitute_keeps_each_item_one_argument() -> None:
    argv = substitute(["r", "{scene}", "-o={scene}!"], {"scene": ODD})
    assert argv == ["r", ODD, f"-o={ODD}!"]
