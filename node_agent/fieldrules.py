"""Field rules the job spec (spec.py, spec_storage.py, spec_assets.py), the pool's mount model
(mounts/model.py) and `node-agent sync`'s options (sync/cli_settings.py) share: an account
URL, a container name, an environment variable name, a storage auth, a blob prefix, a path
below the assets folder. Plain functions raising ValueError, no pydantic: the models call
them as validators (pydantic reports the message with the field), the sync CLI calls them
as they are, so it never imports pydantic (~60 ms of its start, issue 16).

Container names: 3-63 characters of lower-case letters, digits and '-', starting and ending
with a letter or digit, no '--' (Azure, "Naming and Referencing Containers, Blobs, and
Metadata": https://learn.microsoft.com/en-us/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata).
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

from node_agent.safepath import rel_problem

CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ACCOUNT_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
# an assets entry's `manifest`: a pinned manifest hash (from `assets push`) or `latest`
MANIFEST_PIN = re.compile(r"^([0-9a-f]{64}|latest)$")
# auth kinds whose secret is in the variable `env` names
_SECRET_KINDS = ("connection_string", "sas", "account_key")


def account_url(v: str) -> str:
    """`v` without its trailing '/', if it is an http(s) URL with a host and no query or
    fragment; a ValueError (for pydantic to report with the field) otherwise."""
    if not _ACCOUNT_URL.match(v):
        raise ValueError(
            f"'{v}' is not an account URL like https://<account>.blob.core.windows.net"
        )
    return v.rstrip("/")


def no_sas_url(v: str) -> str:
    """An account URL without a query: a SAS there is refused before the URL is shown in
    any message (the message then names the host only: the SAS is a secret)."""
    if "?" in v or "sig=" in v:
        host = urlparse(v).hostname or "the URL"
        raise ValueError(
            f"the URL of {host} must not carry a SAS: put the SAS in the variable named by auth.env"
        )
    return account_url(v)


def auth_env_problem(kind: str, env: str | None) -> str | None:
    """What is wrong with a storage auth's `env` for its `kind`, or None."""
    if kind in _SECRET_KINDS and not env:
        return f"auth kind '{kind}' needs 'env': the variable holding the secret"
    if env is not None and not ENV_NAME.match(env):
        return f"env '{env}' is not a valid environment variable name"
    return None


def manifest_pin(v: str | None) -> str | None:
    if v is not None and not MANIFEST_PIN.match(v):
        raise ValueError(
            f"'{v}' is not a manifest hash (64 of 0-9, a-f, as `assets push` prints) or 'latest'"
        )
    return v


def check_container(v: str | None) -> str | None:
    if v is not None and not CONTAINER.match(v):
        raise ValueError(
            f"'{v}' is not a valid container name (3-63 of a-z, 0-9, '-'; no '--'; "
            "starts and ends with a letter or digit)"
        )
    return v


def check_relpath(v: str) -> str:
    """A path below the job's assets folder (render.scene, assets[].dest, path_map targets).

    The containment rule is safepath's (no absolute path, drive, '..', NUL or look-alike of
    '.' or '/'); on top, this field takes '/' only. A '.' or empty component is allowed here
    (`./scene.blend`, `textures/`): the path is joined on disk, where they mean nothing."""
    if "\\" in v:
        raise ValueError(f"'{v}' must be a relative path with '/' separators")
    problem = rel_problem(v.rstrip("/") or v, allow_dot=True, allow_empty=True)
    if problem:
        raise ValueError(
            f"'{v}' {problem}: it must stay inside the assets folder (a relative path with "
            "'/' separators, no '..')"
        )
    return v


def check_blob_prefix(v: str) -> str:
    """A blob name prefix: the containment rule of safepath on the prefix without its
    trailing '/'; on top, '/' separators only and no '.' segment (storage resolves '.' and
    '..' in URLs, so 'a/./b' would name something else than it says). An empty segment
    ('a//b') is a real blob name and stays allowed."""
    if not v:
        return v
    if "\\" in v:
        raise ValueError(f"'{v}' must be a relative blob prefix with '/' separators")
    problem = rel_problem(v.rstrip("/") or v, allow_empty=True)
    if problem:
        raise ValueError(
            f"'{v}' {problem}: it must be a relative blob prefix with '/' separators "
            "(no '.' or '..' segments)"
        )
    return v


def folder_prefix(v: str) -> str:
    """An assets entry's prefix (checked by check_blob_prefix) as the folder it names:
    `shot01`, `shot01/` and `shot01//` are all `shot01/`, so the listing can never take a
    sibling (`shot010/`, `shot01_old/`, `shot01.bak`)."""
    v = check_blob_prefix(v)
    return v.rstrip("/") + "/" if v else v
