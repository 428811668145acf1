"""Everything that talks to Blob storage.

- storage.credentials: the one auth vocabulary and resolver (SDK credential, container
  SAS, a mount's auth block) and the one account-name parser;
- storage.retry: the one retry policy (tenacity), built from policies.storage_retry_s;
- storage.blob: the SDK client (BlobStore), every call under the policy, SDK retries off;
- storage.rest: the lean REST path of job prep's sync (listing and GETs over urllib3).

`from node_agent.storage import BlobStore` keeps working; the SDK is imported only when
BlobStore is used, so the REST path never pays for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from node_agent.storage.blob import BlobEntry, BlobStore

__all__ = ["BlobEntry", "BlobStore"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from node_agent.storage import blob

        return getattr(blob, name)
    raise AttributeError(f"module 'node_agent.storage' has no attribute {name!r}")
