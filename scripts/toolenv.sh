# shellcheck shell=bash
# Sourced by the check scripts: makes sure .build/venv-tools holds the tools
# of requirements-tools.txt and sets TOOLS_BIN to its bin directory.
#
# The environment is made with the interpreter .venv was made from, and made
# again from scratch whenever requirements-tools.txt, requirements-lint.txt or
# that interpreter change (a stamp file keeps their hash). A lock keeps two
# checks started at once from building it twice.

TOOLS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
TOOLS_VENV="$TOOLS_ROOT/.build/venv-tools"
TOOLS_BIN="$TOOLS_VENV/bin"

tools_venv() {
    local base_python="$TOOLS_ROOT/.venv/bin/python" base want stamp
    if [ ! -x "$base_python" ]; then
        printf 'tools: %s is missing; run scripts/bootstrap.sh first\n' "$base_python" >&2
        return 1
    fi
    base="$("$base_python" -c 'import sys; print(sys._base_executable)')"
    want="$({ cat "$TOOLS_ROOT/requirements-tools.txt" "$TOOLS_ROOT/requirements-lint.txt"
              echo "$base"; } | sha256sum | cut -d' ' -f1)"
    stamp="$TOOLS_VENV/.certfleet-requirements"
    mkdir -p "$TOOLS_ROOT/.build"
    (
        flock 9
        if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
            exit 0
        fi
        printf 'tools: installing the check tools into %s\n' "$TOOLS_VENV" >&2
        rm -rf "$TOOLS_VENV"
        "$base" -m venv "$TOOLS_VENV"
        PIP_DISABLE_PIP_VERSION_CHECK=1 "$TOOLS_BIN/python" -m pip install -q \
            -r "$TOOLS_ROOT/requirements-tools.txt" </dev/null
        printf '%s\n' "$want" >"$stamp"
    ) 9>"$TOOLS_ROOT/.build/venv-tools.lock"
}
