#!/usr/bin/env bash
# Install the headless browser the web page's tests drive. Idempotent and fast when done.
#
#   scripts/install-browser-deps.sh
#
# Debian's chromium and its chromedriver (/usr/bin/chromedriver, the one Selenium is
# pointed at: it never downloads a driver of its own), and a font for the screenshots.
# Only the missing packages are installed; root is needed for that (`make browser-deps`
# skips the step otherwise, and the browser tests then skip with the reason).
set -euo pipefail

PACKAGES=(chromium chromium-driver fonts-dejavu-core)

log() { printf '[install-browser-deps] %s\n' "$*" >&2; }
# shellcheck source=lib/apt.sh
source "$(dirname "$0")/lib/apt.sh"

apt_install_missing "${PACKAGES[@]}"
log "installed: $(chromium --version 2>/dev/null || echo chromium?), $(chromedriver --version 2>/dev/null | head -c 60 || echo chromedriver?)"
