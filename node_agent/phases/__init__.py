"""The four Batch task kinds, one module each."""
