#!/usr/bin/env bash
# Debian's Chromium at /usr/bin/chromium, for the chat page's end-to-end test
# (test/server-page.test.ts drives it with playwright-core). Does nothing when it is there.
# playwright's own browser downloads are not used: they come from a host outside the registries.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null
echo "installed $(/usr/bin/chromium --version 2>/dev/null)"
