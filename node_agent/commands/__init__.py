"""Command modules: each defines `register(cli: click.Group)` and is found automatically."""
