# Sourced by scripts/demo and scripts/test: make .venv (Python 3.11+) and install into it.
# Usage: venv_install PIP_ARGS...

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="${NOTIFYCORE_VENV:-$ROOT/.venv}"

find_python() {
    for candidate in python3.11 python3.12 python3.13 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "notifycore needs Python 3.11 or newer on PATH" >&2
    return 1
}

# ensure_command COMMAND DEBIAN_PACKAGE: apt-get install the package when the command is missing.
ensure_command() {
    if command -v "$1" >/dev/null 2>&1; then
        return 0
    fi
    echo "==> installing $2 (for $1)"
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$2" >/dev/null
    command -v "$1" >/dev/null 2>&1 || { echo "could not install $2" >&2; return 1; }
}

venv_install() {
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        echo "==> creating virtualenv $VENV"
        "$(find_python)" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
    fi
    echo "==> installing: $*"
    local log
    log=$(mktemp)
    # pip's build warnings go to a log, shown only when the install fails.
    if ! (cd "$ROOT" && "$VENV/bin/python" -m pip install --quiet "$@") >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
}
