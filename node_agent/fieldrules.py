"""Field rules the job spec (spec.py) and the pool's mount model (mounts/model.py) share:
an account URL, a container name, an environment variable name.

Container names: 3-63 characters of lower-case letters, digits and '-', starting and ending
with a letter or digit, no '--' (Azure, "Naming and Referencing Containers, Blobs, and
Metadata": https://learn.microsoft.com/en-us/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata).
"""

from __future__ import annotations

import re

CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ACCOUNT_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")


def account_url(v: str) -> str:
    """`v` without its trailing '/', if it is an http(s) URL with a host and no query or
    fragment; a ValueError (for pydantic to report with the field) otherwise."""
    if not _ACCOUNT_URL.match(v):
        raise ValueError(
            f"'{v}' is not an account URL like https://<account>.blob.core.windows.net"
        )
    return v.rstrip("/")
