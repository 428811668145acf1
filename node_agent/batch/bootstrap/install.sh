#!/usr/bin/env bash
# Install node_agent from this package into $NODE_AGENT_HOME, once per node (safe to re-run).
# Called by the pool's start task before start_task/run.sh. Needs no network: every wheel
# is in ../wheels. Python: $NODE_AGENT_PYTHON, else the newest python3.X >= 3.10 on PATH.
# Exit codes: 0 ok, 2 NODE_AGENT_HOME unset, 20 no usable Python / install failed.
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
home="${NODE_AGENT_HOME:-}"
if [ -z "$home" ]; then
  echo "node_agent: NODE_AGENT_HOME is not set (the pool's start task environmentSettings set it)" >&2
  exit 2
fi
version="$(cat "$src/VERSION")"
stamp="$home/.installed"
mkdir -p "$home"
exec 9>"$home/.install.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi  # a re-run start task waits, never races

installed() {
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version" ] &&
    "$home/.venv/bin/python" -c "import node_agent" >/dev/null 2>&1
}
if installed; then
  echo "node_agent $version is already installed in $home"
  exit 0
fi

find_python() {
  local c p
  for c in "${NODE_AGENT_PYTHON:-}" python3.13 python3.12 python3.11 python3.10 python3; do
    [ -n "$c" ] || continue
    p="$(command -v "$c" 2>/dev/null)" || continue
    if "$p" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}
if ! py="$(find_python)"; then
  echo "node_agent: no Python >= 3.10 on this node; use an image with python3 or set NODE_AGENT_PYTHON" >&2
  exit 20
fi

rm -f "$stamp"
rm -rf "$home/.venv"
# --without-pip: Ubuntu's python3 lacks ensurepip unless python3-venv is installed;
# pip comes from the package's own wheel instead.
"$py" -m venv --without-pip "$home/.venv"
pipwhl="$(ls "$src"/wheels/pip-*.whl | head -n 1)"
if ! "$home/.venv/bin/python" "$pipwhl/pip" install --quiet --disable-pip-version-check \
  --no-index --find-links "$src/wheels" pip node-agent; then
  echo "node_agent: installing from $src/wheels failed (no wheels for $("$py" -V 2>&1)?)" >&2
  exit 20
fi
for d in bin start_task job_prep job_release; do
  rm -rf "${home:?}/$d"
  cp -R "$src/$d" "$home/$d"
done
chmod 755 "$home"/bin/node-agent "$home"/start_task/run.sh "$home"/job_prep/run.sh "$home"/job_release/run.sh
chmod -R a+rX "$home"
echo "$version" >"$stamp"
echo "node_agent $version installed in $home ($("$home/.venv/bin/python" -V 2>&1))"
