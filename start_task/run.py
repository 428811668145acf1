"""Batch start task entry point: parse, call node_agent, exit with its code."""

import sys

from node_agent.cli import main

if __name__ == "__main__":
    sys.exit(main(["start-task", *sys.argv[1:]]))
