"""Mounts a node needs: blob containers (rclone, blobfuse2) and Azure Files shares.

model.py describes them, one module per driver writes its config files and command
lines, platform.py hides what differs between Linux and Windows, and manager.py makes
them idempotently (mount, prove by listing, detect stale mounts, unmount).
"""
