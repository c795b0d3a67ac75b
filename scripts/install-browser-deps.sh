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

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]} == 0)); then
    log "Debian packages already installed"
    exit 0
fi
log "apt-get install ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when apt has none (a fresh container).
if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial || true)" ]; then
    apt-get update -qq
fi
# Stale lists name package versions the mirror no longer has: refresh and retry once.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update -qq && \
         apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
log "installed: $(chromium --version 2>/dev/null || echo chromium?), $(chromedriver --version 2>/dev/null | head -c 60 || echo chromedriver?)"
