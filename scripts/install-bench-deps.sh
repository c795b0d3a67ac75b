#!/usr/bin/env bash
# Install what `make bench` needs beyond the lab's packages: wrk, the load generator.
# Idempotent; does nothing when wrk is on PATH already.
set -euo pipefail

log() { printf '[install-bench-deps] %s\n' "$*" >&2; }
# shellcheck source=lib/apt.sh
source "$(dirname "$0")/lib/apt.sh"

if command -v wrk >/dev/null 2>&1; then
    log "wrk already installed: $(command -v wrk)"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    log "wrk is missing and this is not root: install it with 'apt-get install wrk'"
    exit 1
fi
apt_install_missing wrk
log "wrk installed: $(command -v wrk)"
