# Shared set-up steps for scripts/quickstart, scripts/test and .ci/run. Sourced, not executed.
# Everything lands in the project directory (.venv, .quickstart); system packages come from apt.

set -euo pipefail

PROJECT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$PROJECT_DIR/.venv"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ensure_apt_packages PACKAGE...: install the Debian packages that are missing.
ensure_apt_packages() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get: install them by hand"
    if [ "$(id -u)" -ne 0 ]; then
        die "missing Debian packages: ${missing[*]}. Run as root, or first: sudo apt-get install -y ${missing[*]}"
    fi
    say "installing Debian packages: ${missing[*]}"
    # The influxdb and victoria-metrics packages would start system-wide daemons where systemd
    # runs; the recorder's scripts and tests run their own instances on free loopback ports.
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed (no network?)"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
}

# ensure_python_env: a virtual environment in .venv with the recorder and its test tools.
ensure_python_env() {
    command -v python3 >/dev/null || die "python3 not found: Python 3.11 or newer is required"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "Python 3.11 or newer is required, found $(python3 --version 2>&1)"
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating the virtual environment in .venv"
        if ! python3 -m venv "$VENV" 2>/dev/null; then
            rm -rf "$VENV"
            ensure_apt_packages python3-venv
            python3 -m venv "$VENV" || die "could not create a virtual environment"
        fi
    fi
    local stamp="$VENV/.installed-from"
    local wanted
    wanted="$(sha256sum "$PROJECT_DIR/pyproject.toml" | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
        say "installing the recorder and its test tools into .venv"
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null || die "pip upgrade failed (no network?)"
        "$VENV/bin/python" -m pip install -q -e "$PROJECT_DIR[test]" || die "pip install failed"
        echo "$wanted" > "$stamp"
    fi
}
