#!/usr/bin/env bash
# Builds the web console (console/) into console/dist, the three files the server embeds
# and serves at /console/. dist is committed, so building the server needs no Node.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/console.sh build | check | --help

  build   Installs the console's exact npm packages (npm ci, from console/package-lock.json),
          generates the Connect client from proto/ (buf generate with protoc-gen-es into
          console/src/gen, not committed), type-checks (tsc) and bundles (esbuild) into
          console/dist: index.html, console.js, console.css. Commit console/dist afterwards.
  check   Builds from a clean temporary copy of console/ and proto/ and fails, naming the
          files, if the console/dist in this tree differs from that fresh build (CI runs this).

Needs Node.js >= 20 and npm; the npm registry (or npm's cache) must be reachable.
The build is deterministic: the same sources and lock file give byte-identical files.
USAGE
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() {
  echo "console.sh: $*" >&2
  exit 1
}

need_node() {
  command -v node >/dev/null || die "node (>= 20) is required"
  command -v npm >/dev/null || die "npm is required"
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  ((major >= 20)) || die "node >= 20 is required (found $(node --version))"
}

# Builds the console in $1 (a directory holding console/ and proto/).
build_in() {
  local root=$1
  cd "$root/console"
  # Install scripts are not needed: esbuild and buf find their platform binaries.
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  echo "console.sh: generating the Connect client from proto/" >&2
  node_modules/.bin/buf generate
  echo "console.sh: type-checking" >&2
  node_modules/.bin/tsc --noEmit -p .
  echo "console.sh: bundling into console/dist" >&2
  node build.mjs
}

build() {
  need_node
  (build_in "$repo")
  ls -l "$repo/console/dist" >&2
}

# One line per file of dist that differs between a fresh build ($1) and this tree ($2).
dist_differences() {
  local fresh=$1 tree=$2 name
  for name in $( (ls -A "$fresh"; ls -A "$tree" 2>/dev/null) | sort -u); do
    if [[ ! -e $tree/$name ]]; then
      echo "  console/dist/$name: missing (the build makes it)"
    elif [[ ! -e $fresh/$name ]]; then
      echo "  console/dist/$name: not made by the build (remove it)"
    elif ! cmp -s "$fresh/$name" "$tree/$name"; then
      echo "  console/dist/$name: differs"
    fi
  done
}

check() {
  need_node
  tmp=$(mktemp -d) # global: the EXIT trap runs after this function returned
  trap 'rm -rf "$tmp"' EXIT
  mkdir "$tmp/console"
  # Sources only: no node_modules, generated code or previous output.
  tar -C "$repo/console" --exclude=./node_modules --exclude=./dist --exclude=./src/gen -cf - . |
    tar -C "$tmp/console" -xf -
  cp -R "$repo/proto" "$tmp/proto"
  (build_in "$tmp") || die "the fresh build failed"
  local differing
  differing=$(dist_differences "$tmp/console/dist" "$repo/console/dist")
  if [[ -n $differing ]]; then
    echo "console.sh: console/dist is not what a fresh build of console/ and proto/ makes:" >&2
    echo "$differing" >&2
    die "run scripts/console.sh build and commit console/dist"
  fi
  echo "console.sh: console/dist matches a fresh build" >&2
}

case "${1:-}" in
  build) build ;;
  check) check ;;
  -h | --help | help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
esac
