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

# grpcurl, for the test of gRPC server reflection (tests/reflection.rs) and the READMEs'
# example: built from the Go module proxy into $(go env GOPATH)/bin.
GRPCURL_VERSION=v1.9.4
if ! command -v grpcurl >/dev/null && [[ ! -x "$(go env GOPATH 2>/dev/null)/bin/grpcurl" ]]; then
  command -v go >/dev/null || { echo "install-build-deps: go is required to install grpcurl" >&2; exit 1; }
  echo "install-build-deps: installing grpcurl $GRPCURL_VERSION" >&2
  go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
fi
