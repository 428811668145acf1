"""Preflight scans: a spec's render section and what the scanner finds missing."""

from __future__ import annotations

from pathlib import Path

from helpers.node import make_spec_doc
from node_agent.preflight import scan
from node_agent.spec import Render, spec_from_data


def scene_render(**kw: object) -> Render:
    """The render section of a spec built from make_spec_doc with `kw` over its defaults."""
    doc = make_spec_doc("http://127.0.0.1:10000/devstoreaccount1", **kw)
    return spec_from_data(doc).render


def shot_job_doc(account_url: str, job: str, container: str, **render: object) -> dict[str, object]:
    """make_spec_doc of job `job` whose one asset source is `container`/shot/."""
    doc = make_spec_doc(account_url, **render)
    doc["job_id"] = job
    doc["assets"] = [{"name": "scene", "container": container, "prefix": "shot/"}]
    return doc


def missing_deps(render: Render, assets: Path) -> list[str]:
    """What a full scan of `assets` finds missing (the scene read, nothing unreadable)."""
    result = scan(render, assets, outside_ok=False)
    assert result.scanned and not result.unreadable
    return sorted(m.shown for m in result.missing)
