#!/usr/bin/env bash
# Install what the SSH lab and its real daemons need. Idempotent and fast when already done.
#
#   scripts/install-lab-deps.sh [VENV]      (default: $VENV, else .venv)
#
# - Debian packages (only those missing): openssh-server iproute2 procps zookeeper.
#   None of them starts a service here (no systemd); sshd needs /run/sshd to exist.
# - pyspark into the project venv. Its 455 MB distribution is downloaded once into
#   ${LAMBDA_CACHE_DIR:-$HOME/.cache/lambda-service}/wheels and installed from there
#   with --no-index, so repeated CI runs never download it again.
set -euo pipefail

VENV="${1:-${VENV:-.venv}}"
CACHE_DIR="${LAMBDA_CACHE_DIR:-$HOME/.cache/lambda-service}/wheels"
PYSPARK_SPEC="${PYSPARK_SPEC:-pyspark}"

log() { printf '[install-lab-deps] %s\n' "$*" >&2; }
# shellcheck source=lib/apt.sh
source "$(dirname "$0")/lib/apt.sh"

# --- Debian packages -------------------------------------------------------------------
apt_install_missing openssh-server iproute2 procps zookeeper
# sshd refuses to start without its privilege separation directory.
mkdir -p /run/sshd

# --- pyspark into the venv -------------------------------------------------------------
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
    log "no Python at $PY (create the venv first)"
    exit 1
fi
if "$PY" -c 'import pyspark' 2>/dev/null; then
    log "pyspark already installed in $VENV"
else
    mkdir -p "$CACHE_DIR"
    # pyspark ships as an sdist: building it offline needs setuptools and wheel in the
    # cache as well (pip's isolated build environment cannot reach an index then).
    if ! ls "$CACHE_DIR"/pyspark-* >/dev/null 2>&1 \
        || ! ls "$CACHE_DIR"/setuptools-* >/dev/null 2>&1; then
        log "downloading $PYSPARK_SPEC into $CACHE_DIR (once; ~455 MB)"
        "$PY" -m pip download -q --dest "$CACHE_DIR" "$PYSPARK_SPEC" setuptools wheel
    fi
    if ! ls "$CACHE_DIR"/pyspark-*.whl >/dev/null 2>&1; then
        # Build the wheel once and keep it: later installs skip the ~1 minute build.
        log "building the $PYSPARK_SPEC wheel into $CACHE_DIR"
        "$PY" -m pip wheel -q --no-index --find-links "$CACHE_DIR" --wheel-dir "$CACHE_DIR" \
            "$PYSPARK_SPEC"
        rm -f "$CACHE_DIR"/pyspark-*.tar.gz  # the wheel replaces it; save 455 MB
    fi
    log "installing $PYSPARK_SPEC from $CACHE_DIR"
    "$PY" -m pip install -q --no-index --find-links "$CACHE_DIR" "$PYSPARK_SPEC"
fi

SPARK_HOME="$("$PY" -c 'import pyspark,os;print(os.path.dirname(pyspark.__file__))')"
log "SPARK_HOME=$SPARK_HOME"
log "ZooKeeper: /usr/share/zookeeper (zkServer.sh in /usr/share/zookeeper/bin)"
echo "SPARK_HOME=$SPARK_HOME"
