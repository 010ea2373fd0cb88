#!/usr/bin/env bash
# Installs what the console's browser test (tests/console_browser.rs) drives, if missing:
# Debian's chromium and its matching chromedriver (/usr/bin/chromium, /usr/bin/chromedriver),
# and a Hangul font (fonts-nanum), so that the test's screenshots show the coupon codes
# rather than empty boxes. Safe to run again: it does nothing when all are there.
set -euo pipefail

packages=()
[[ -x /usr/bin/chromium ]] || packages+=(chromium)
[[ -x /usr/bin/chromedriver ]] || packages+=(chromium-driver)
dpkg -s fonts-nanum >/dev/null 2>&1 || packages+=(fonts-nanum)
if ((${#packages[@]})); then
  echo "install-browser: installing ${packages[*]}" >&2
  sudo_cmd=()
  [[ $EUID -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${packages[@]}"
fi
/usr/bin/chromedriver --version >&2
