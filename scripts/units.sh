#!/usr/bin/env bash
# Run the unit tests with `ansible-test units`, the way collections are
# tested for inclusion: in a virtual environment of ansible-test's own
# (--venv), with its pytest settings and plugins, on a copy of the
# collection in .build/units/run.XXXXXX/ansible_collections/certfleet/deploy
# (a new one for each run, removed at the end).
#
# The environment holds ansible-test's unit-test requirements and those of
# tests/unit/requirements.txt, installed from the package index; pip is
# bootstrapped with the offline stand-in (see scripts/ansible_test_lib.sh).
# Coverage is measured by `make pytest`, not here.
#
# UNITS_PYTHON picks the Python version (default: .venv's, 3.11); extra
# arguments go to ansible-test, e.g. `scripts/units.sh -k material`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PYTHON="$ROOT/.venv/bin/python"

log() { printf 'units: %s\n' "$*" >&2; }
die() { printf 'units: error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/ansible_test_lib.sh
source "$ROOT/scripts/ansible_test_lib.sh"

[ -x "$PYTHON" ] || die "$PYTHON is missing; run scripts/bootstrap.sh first"

main() {
    local started rc=0 version copy
    started=$SECONDS
    version="${UNITS_PYTHON:-$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')}"
    seed_pip_bootstrap || die "cannot seed the pip bootstrap script"
    copy="$(copy_collection "$ROOT/.build/units")"
    # shellcheck disable=SC2064  # the copy is known now
    trap "remove_copy '$copy'" EXIT
    log "ansible-test units --python $version in $copy"
    cd "$copy"
    "$ROOT/.venv/bin/ansible-test" units --color no --venv --requirements \
        --python "$version" "$@" || rc=$?
    log "finished in $((SECONDS - started)) s (exit $rc)"
    return "$rc"
}

main "$@"
