#!/usr/bin/env bash
# Prepare this checkout for tests and the demo, on a fresh Debian machine or
# on one that already has everything. Safe to run again: each step checks
# first and does nothing when its work is already done.
#
#   1. Debian packages the tests and the demo use (nginx, openssl, ...).
#   2. .venv with Python 3.11 and requirements-test.txt.
#   3. .build/collections/ansible_collections/certfleet/deploy -> this checkout,
#      so Python and Ansible can find the collection by its full name.
#
# Environment: CERTFLEET_PYTHON=/path/to/python3.11 picks the interpreter.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
VENV="$ROOT/.venv"
COLLECTIONS="$ROOT/.build/collections"

# nginx for the demo and the integration tests; openssl and rsync for the
# tests' helpers; git and make for the build itself; and the linter that
# ansible-test runs on shell scripts (package shellcheck).
DEB_PACKAGES=(nginx openssl rsync ca-certificates git make shellcheck
    postfix dovecot-imapd dovecot-pop3d chromium apache2 haproxy)

log() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }

missing_debs() {
    local pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            printf '%s\n' "$pkg"
        fi
    done
}

install_debs() {
    local missing
    mapfile -t missing < <(missing_debs "$@")
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        die "missing Debian packages (${missing[*]}); run this script as root"
    fi
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Postfix asks how mail is handled: the tests run instances of their own.
    printf '%s\n' 'postfix postfix/main_mailer_type select No configuration' \
        | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
}

find_python() {
    local candidate
    if [ -n "${CERTFLEET_PYTHON:-}" ]; then
        printf '%s\n' "$CERTFLEET_PYTHON"
        return 0
    fi
    # pyenv's shims cannot be trusted here: take the real interpreter.
    for candidate in /root/.pyenv/versions/3.11*/bin/python3.11 "$HOME"/.pyenv/versions/3.11*/bin/python3.11; do
        if [ -x "$candidate" ]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    for candidate in /usr/bin/python3.11 /usr/local/bin/python3.11 /usr/bin/python3; do
        if [ -x "$candidate" ]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    command -v python3 || die "no Python 3 interpreter found"
}

python_version() {
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'
}

make_venv() {
    local python="$1"
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import pip' 2>/dev/null \
        && [ "$(python_version "$VENV/bin/python")" = "$(python_version "$python")" ]; then
        return 0
    fi
    if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
        # Debian's own python3 splits venv support into a separate package.
        install_debs "python$(python_version "$python")-venv"
    fi
    log "creating $VENV with $python ($(python_version "$python"))"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
}

requirements_stamp() {
    # Keyed on the requirement files and the interpreter that runs them.
    {
        cat "$ROOT/requirements-test.txt" "$ROOT/requirements.txt"
        "$VENV/bin/python" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
}

install_requirements() {
    local stamp_file="$VENV/.certfleet-requirements" want
    want="$(requirements_stamp)"
    if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want" ]; then
        return 0
    fi
    log "installing Python requirements into $VENV"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install -q \
        -r "$ROOT/requirements-test.txt" </dev/null
    printf '%s\n' "$want" >"$stamp_file"
}

link_collection() {
    local parent="$COLLECTIONS/ansible_collections/certfleet"
    local link="$parent/deploy"
    mkdir -p "$parent"
    if [ "$(readlink "$link" 2>/dev/null || true)" != "$ROOT" ]; then
        log "linking $link -> $ROOT"
        ln -sfn "$ROOT" "$link"
    fi
}

main() {
    local started python
    started=$SECONDS
    install_debs "${DEB_PACKAGES[@]}"
    python="$(find_python)"
    make_venv "$python"
    install_requirements
    link_collection
    log "ready in $((SECONDS - started)) s (python: $VENV/bin/python)"
}

main "$@"
