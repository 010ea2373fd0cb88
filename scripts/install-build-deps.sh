#!/usr/bin/env bash
# Installs what building the workspace needs on Debian, if missing: a C toolchain,
# make, pkg-config and zlib for the bundled librdkafka. protoc comes from a crate.
set -euo pipefail

packages=(build-essential pkg-config zlib1g-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-build-deps: installing ${missing[*]}" >&2
  sudo_cmd=()
  [[ $EUID -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "install-build-deps: cargo (Rust >= 1.94) is required: https://rustup.rs" >&2; exit 1; }
