#!/usr/bin/env bash
# Headless Chromium for the admin browser tests: Debian's chromium + chromium-driver (and CJK
# fonts so Chinese pages render in screenshots), plus Playwright for Python in the venv when the
# venv exists (it is also in the `test` extra). Never runs `playwright install`: Playwright drives
# /usr/bin/chromium through executable_path. Idempotent; quick when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if command -v fc-list >/dev/null 2>&1; then
  fc-list :lang=zh 2>/dev/null | grep -q . || need+=(fonts-noto-cjk)
else
  dpkg -s fonts-noto-cjk >/dev/null 2>&1 || need+=(fonts-noto-cjk)
fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ -x .venv/bin/python ] && ! .venv/bin/python -c "import playwright" >/dev/null 2>&1; then
  echo "installing playwright (Python driver only)"
  .venv/bin/python -m pip install --quiet "playwright>=1.40"
fi
echo "browser: $(chromium --version 2>/dev/null || echo missing)"
