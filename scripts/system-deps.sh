#!/usr/bin/env bash
# Installs the system tools node_agent's demo and tests use, when missing:
# blender (the real renderer), rclone (FUSE mount tests and the sync benchmark's peer),
# fuse3 (fusermount3), chromium (headless: the job report's screenshot test). Uses apt-get;
# runs it through sudo when not root.
set -euo pipefail
need=()
command -v blender >/dev/null 2>&1 || need+=(blender)
command -v rclone >/dev/null 2>&1 || need+=(rclone)
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing with apt-get: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
