"""The Batch account a pool belongs to, as the pool settings name it (`batch_account:`), and
the ids the REST bodies need from it.

The Batch REST API 2025-06-01 says a pool's package reference must be the application's full
resource id: Azure/azure-rest-api-specs,
specification/batch/data-plane/Azure.Batch/stable/2025-06-01/BatchService.json,
definitions.BatchApplicationPackageReference.applicationId: "When creating a pool, the
package's application ID must be fully qualified (/subscriptions/{subscriptionId}/
resourceGroups/{resourceGroupName}/providers/Microsoft.Batch/batchAccounts/{accountName}/
applications/{applicationName})" (the same text is in azure-batch 15's
models.BatchApplicationPackageReference). On the node, Batch names the package's folder
variable after the application's name (AZ_BATCH_APP_PACKAGE_<name>_<version>).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

APP_NAME = r"[A-Za-z0-9_-]{1,64}"
# /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Batch/batchAccounts/{acct}/applications/{name}
APP_RESOURCE_ID = re.compile(
    r"^/subscriptions/[^/\s]+/resourceGroups/[^/\s]+/providers/Microsoft\.Batch/"
    rf"batchAccounts/[^/\s]+/applications/(?P<name>{APP_NAME})$",
    re.IGNORECASE,
)
APP_ID_PATTERN = rf"^(?:{APP_NAME}|{APP_RESOURCE_ID.pattern[1:-1]})$"
ACCOUNT_NAME = r"^[a-z0-9]{3,24}$"


class BatchAccount(BaseModel):
    """Which Batch account the pool is in; `auto_storage_account` is its linked storage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subscription_id: str = Field(pattern=r"^[A-Za-z0-9-]{1,64}$")
    resource_group: str = Field(pattern=r"^[-\w._()]{1,90}$")
    name: str = Field(pattern=ACCOUNT_NAME, description="the Batch account's name")
    auto_storage_account: str | None = Field(
        default=None,
        pattern=ACCOUNT_NAME,
        description="the storage account linked to the Batch account (auto-storage)",
    )

    def application_id(self, name: str) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Batch/batchAccounts/{self.name}/applications/{name}"
        )


def application_name(application_id: str) -> str:
    """The application's name, from a name or a full resource id."""
    m = APP_RESOURCE_ID.match(application_id)
    return m.group("name") if m else application_id


def full_application_id(application_id: str, account: BatchAccount | None) -> str | None:
    """The full resource id a pool's package reference needs, or None when it cannot be known
    (a bare name and no `batch_account` in the settings)."""
    if APP_RESOURCE_ID.match(application_id):
        return application_id
    return account.application_id(application_id) if account is not None else None
