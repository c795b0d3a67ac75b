#!/usr/bin/env bash
# Install what `make bench` needs beyond the lab's packages: wrk, the load generator.
# Idempotent; does nothing when wrk is on PATH already.
set -euo pipefail

log() { printf '[install-bench-deps] %s\n' "$*" >&2; }

if command -v wrk >/dev/null 2>&1; then
    log "wrk already installed: $(command -v wrk)"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    log "wrk is missing and this is not root: install it with 'apt-get install wrk'"
    exit 1
fi
log "apt-get install wrk"
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when apt has none (a fresh container); stale lists name
# versions the mirror no longer has, so a failed install refreshes and retries once.
if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial || true)" ]; then
    apt-get update -qq
fi
apt-get install -y -qq --no-install-recommends wrk >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk >/dev/null; }
log "wrk installed: $(command -v wrk)"
