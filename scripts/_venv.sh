# Sourced by scripts/demo and scripts/test: make .venv (Python 3.11+) and install into it.
# Usage: venv_install PIP_ARGS... (quiet) or venv_install_shown PIP_ARGS... (pip's progress);
# up_to_date / write_stamp keep a stamp of what was installed. NOTIFYCORE_VENV moves the venv.

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

# ensure_venv: create $VENV (with an up-to-date pip) unless it exists and runs.
ensure_venv() {
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        echo "==> creating virtualenv $VENV"
        "$(find_python)" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
    fi
}

# venv_install PIP_ARGS...: pip install into $VENV quietly; its output only when it fails.
venv_install() {
    ensure_venv
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

# venv_install_shown PIP_ARGS...: the same, showing pip's own progress (downloads, builds).
venv_install_shown() {
    ensure_venv
    echo "==> installing: $*"
    (cd "$ROOT" && "$VENV/bin/python" -m pip install --progress-bar on "$@")
}

# inputs_hash FILES...: one SHA-256 of the files' contents and of the Python in $VENV.
inputs_hash() {
    local sum=sha256sum
    command -v sha256sum >/dev/null 2>&1 || sum="shasum -a 256"
    { cat -- "$@"; "$VENV/bin/python" -VV; } | $sum | cut -d' ' -f1
}

# up_to_date STAMP FILES...: true when $VENV runs and STAMP holds the hash of FILES, that is
# when what was installed after the last write_stamp has not changed since.
up_to_date() {
    local stamp=$1
    shift
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' 2>/dev/null || return 1
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(inputs_hash "$@")" ]
}

# write_stamp STAMP FILES...: remember that FILES, as they are now, are installed.
write_stamp() {
    local stamp=$1
    shift
    inputs_hash "$@" >"$stamp"
}
