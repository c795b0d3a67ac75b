# Sourced by the install scripts: install the Debian packages among the arguments that are
# not installed yet. Needs root when one is missing; prints what it did through `log`,
# which the sourcing script defines.
apt_install_missing() {
    local missing=() pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        log "Debian packages already installed: $*"
        return 0
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
}
