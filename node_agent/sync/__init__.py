"""Incremental asset sync: content-addressed node cache, per-job views, lean downloads."""
