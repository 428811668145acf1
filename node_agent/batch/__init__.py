"""Azure Batch: pool and job JSON, the node package, submission."""
