#!/usr/bin/env bash
# Syntax-checks every Mermaid diagram of the documentation by rendering it with the Mermaid
# CLI (@mermaid-js/mermaid-cli, from npm through npx) in a headless Chromium: a diagram that
# does not parse fails the script, naming the file and the parser's error. GitHub renders
# these blocks with its own Mermaid, so a block that fails here would show as an error there.
#
#   scripts/check-mermaid.sh              # README*.md and docs/*.md
#   scripts/check-mermaid.sh FILE.md ...  # only these files
#
# Needs node/npx (npm registry access on the first run: the CLI and its node packages, about
# 500 MB in ~/.npm/_npx) and a Chromium: Debian's `chromium` package is installed with
# apt-get if no browser is found (set CHROMIUM to use another binary). Puppeteer's own
# browser download is skipped. MERMAID_CLI_VERSION picks the CLI version.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${MERMAID_CLI_VERSION:-11.17.0}

command -v npx >/dev/null || { echo "check-mermaid: npx (Node.js) is required" >&2; exit 2; }

browser=${CHROMIUM:-}
if [[ -z $browser ]]; then
  browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
fi
if [[ -z $browser ]]; then
  echo "check-mermaid: installing Debian's chromium" >&2
  sudo_cmd=()
  [[ $EUID -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends chromium
  browser=$(command -v chromium)
fi

if (($#)); then
  files=("$@")
else
  files=()
  for f in README*.md docs/*.md; do
    grep -q '^```mermaid' "$f" && files+=("$f")
  done
fi
((${#files[@]})) || { echo "check-mermaid: no Markdown file with a mermaid block" >&2; exit 0; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# --no-sandbox: Chromium refuses to run as root with its sandbox on (CI runs as root).
printf '{"executablePath":"%s","args":["--no-sandbox","--disable-gpu"]}\n' "$browser" >"$work/puppeteer.json"

failed=0
for f in "${files[@]}"; do
  out="$work/$(echo "$f" | tr '/' '_')"
  mkdir -p "$out"
  if PUPPETEER_SKIP_DOWNLOAD=1 npx -y "@mermaid-js/mermaid-cli@$version" \
      --puppeteerConfigFile "$work/puppeteer.json" --quiet \
      --input "$f" --output "$out/rendered.md" >"$out/log" 2>&1; then
    echo "check-mermaid: $f: $(ls "$out"/*.svg 2>/dev/null | wc -l) diagram(s) render"
  else
    failed=1
    echo "check-mermaid: $f: a diagram does not render:" >&2
    grep -v '^    at ' "$out/log" >&2 || true
  fi
done
exit "$failed"
