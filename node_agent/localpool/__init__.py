"""A local Batch pool: node folders, task kinds and environments as Batch makes them."""
