"""node_agent: the on-node toolkit that makes an Azure Batch pool a render farm."""

__version__ = "0.1.0"
