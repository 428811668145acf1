#!/usr/bin/env bash
# Batch job prep (Linux): find node_agent's Python and run job_prep/run.py.
# Python: $NODE_AGENT_PYTHON, else <repo>/.venv/bin/python, else python3.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
home="${NODE_AGENT_HOME:-$(dirname "$here")}"
py="${NODE_AGENT_PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x "$home/.venv/bin/python" ]; then py="$home/.venv/bin/python"; else py="$(command -v python3)"; fi
fi
exec "$py" "$here/run.py" "$@"
