#!/usr/bin/env bash
# Run ansible-lint (settings in .ansible-lint) from its own virtual
# environment, created on first use and refreshed when
# requirements-lint.txt changes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
LINT_VENV="$ROOT/.build/venv-lint"
BASE_PYTHON="$ROOT/.venv/bin/python"

log() { printf 'lint: %s\n' "$*" >&2; }

[ -x "$BASE_PYTHON" ] || { log "run scripts/bootstrap.sh first"; exit 1; }

# The lint environment uses the interpreter the test environment was made from.
base="$("$BASE_PYTHON" -c 'import sys; print(sys._base_executable)')"
want="$({ cat "$ROOT/requirements-lint.txt"; echo "$base"; } | sha256sum | cut -d' ' -f1)"
stamp="$LINT_VENV/.certfleet-requirements"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing ansible-lint into $LINT_VENV"
    rm -rf "$LINT_VENV"
    "$base" -m venv "$LINT_VENV"
    "$LINT_VENV/bin/python" -m pip install -q -r "$ROOT/requirements-lint.txt" </dev/null
    printf '%s\n' "$want" >"$stamp"
fi

cd "$ROOT"
PATH="$LINT_VENV/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$ROOT/.build/collections" \
    "$LINT_VENV/bin/ansible-lint" --nocolor "$@"
