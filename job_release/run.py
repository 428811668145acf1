"""Batch job release entry point: parse, call node_agent, exit with its code."""

import sys

from node_agent.cli import main

if __name__ == "__main__":
    sys.exit(main(["job-release", *sys.argv[1:]]))
