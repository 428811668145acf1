"""The job client a TD lives in: watch, download, report, terminate, requeue a job, resize or
delete a pool; the same against a local pool's folder (`--local`) and a Batch account.

- `model`: a job's state (tasks, nodes, spans of time), whoever reports it.
- `local`: reads a local pool's files (`node-agent local run --workdir`).
- `batchrest`: reads a Batch account (REST through the azure-batch SDK, as `batch submit`).
- `outputs`: the job's blobs (File Conventions): frames, logs, task summaries.
- `watch`, `download`, `report`: the three views; `actions`: what changes a job or pool.
"""
