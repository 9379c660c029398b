#!/usr/bin/env bash
# Debian's Chromium for the browser tests (Playwright drives it through executable_path; `playwright
# install` is never run, since nothing but the package registries is reachable). Idempotent.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  exit 0
fi
echo "installing chromium for the browser tests"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
