#!/usr/bin/env bash
# Sourced by scripts/demo and scripts/test: makes a fresh Debian/Ubuntu machine ready.
# - Debian packages the system needs (installed when missing and we are root, else a clear message)
# - uv (pinned) in .tools/, then the locked workspace into .venv/ (uv.lock pins every version)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    echo "RAE Edge needs Python 3.11 or newer as '$PY' (set PYTHON=/path/to/python3.11)." >&2
    exit 2
fi

# apt_need PKG:COMMAND ... -> installs the packages whose command is missing
apt_need() {
    local missing=()
    for pair in "$@"; do
        local pkg="${pair%%:*}" cmd="${pair#*:}"
        # CMD is a command name or a path glob (e.g. /usr/lib/postgresql/*/bin/postgres)
        if ! command -v "$cmd" >/dev/null 2>&1 && ! compgen -G "$cmd" >/dev/null; then
            missing+=("$pkg")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "Missing system packages: ${missing[*]}" >&2
        echo "Install them with: sudo apt-get install ${missing[*]}" >&2
        exit 2
    fi
}

UV_VERSION="0.13.9"
if [ ! -x .tools/bin/uv ] || [ "$(.tools/bin/uv --version | awk '{print $2}')" != "$UV_VERSION" ]; then
    echo "==> installing uv $UV_VERSION into .tools/"
    "$PY" -m venv .tools
    .tools/bin/pip install -q --disable-pip-version-check "uv==$UV_VERSION"
fi
export UV_PYTHON="$PY"
echo "==> syncing the locked workspace into .venv/"
.tools/bin/uv sync --frozen --all-packages -q
export PATH="$ROOT/.venv/bin:$PATH"
export HF_HUB_OFFLINE=1
