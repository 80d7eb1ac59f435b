#!/usr/bin/env bash
# Run `ansible-test sanity` on this collection.
#
# ansible-test insists on running from a real directory named
# .../ansible_collections/certfleet/deploy, so this copies the files git
# knows about (tracked, plus untracked ones that are not ignored) into
# .build/sanity/run.XXXXXX/ansible_collections/certfleet/deploy (a new one
# for each run, removed at the end) and runs there.
#
# Sanity tests install their tools into virtual environments of their own,
# which ansible-test bootstraps with a pip script it downloads from a host
# this machine cannot reach. scripts/get_pip_standin.py is put in that
# script's cache slot instead; it uses ensurepip and the package index.
#
# Every sanity test runs on the controller's Python (3.11, .venv's). The two
# tests whose result depends on the Python version, compile and import, run
# again on every other Python that ansible-test supports for modules and that
# this machine has (3.8 to 3.13: the real interpreters under ~/.pyenv, not
# its shims, which cannot find a version by name). SANITY_PYTHONS lists the
# versions to use instead, e.g. SANITY_PYTHONS="3.11 3.8".
#
# Extra arguments go to every ansible-test run, e.g.
# `scripts/sanity.sh --test pep8`; with any, only the controller run happens.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PYTHON="$ROOT/.venv/bin/python"

log() { printf 'sanity: %s\n' "$*" >&2; }
die() { printf 'sanity: error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/ansible_test_lib.sh
source "$ROOT/scripts/ansible_test_lib.sh"

[ -x "$PYTHON" ] || die "$PYTHON is missing; run scripts/bootstrap.sh first"

check_ignore_files() {
    local file
    for file in "$ROOT"/tests/sanity/ignore-*.txt; do
        [ -e "$file" ] || continue
        if grep -qv '^[[:space:]]*\(#.*\)\?$' "$file"; then
            die "${file#"$ROOT"/} has entries; this collection keeps sanity clean without ignores"
        fi
    done
}

supported_versions() {
    # The Python versions ansible-test runs module tests on, from its source.
    "$PYTHON" -c 'from ansible_test._util.target.common.constants import (
    CONTROLLER_PYTHON_VERSIONS as C, REMOTE_ONLY_PYTHON_VERSIONS as R)
print(" ".join(R + C))'
}

find_interpreter() {
    # The real pythonX.Y for a version, or nothing.
    local version="$1" candidate
    for candidate in "$HOME"/.pyenv/versions/"$version".*/bin/python"$version" \
            /usr/local/bin/python"$version" /usr/bin/python"$version"; do
        if [ -x "$candidate" ] && "$candidate" -c 'import sys' 2>/dev/null; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 0
}

run_sanity() {
    # ansible-test sanity with a label in the log, its time, and its status.
    local label="$1" started rc=0
    shift
    started=$SECONDS
    log "ansible-test sanity $label"
    "$ROOT/.venv/bin/ansible-test" sanity --color no "$@" || rc=$?
    log "$label: exit $rc after $((SECONDS - started)) s"
    return "$rc"
}

main() {
    local started rc=0 controller version interpreter copy
    local -a versions others=()
    started=$SECONDS
    controller="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    read -r -a versions <<<"${SANITY_PYTHONS:-$(supported_versions)}"
    for version in "${versions[@]}"; do
        [ "$version" = "$controller" ] && continue
        interpreter="$(find_interpreter "$version")"
        if [ -z "$interpreter" ]; then
            log "Python $version is not on this machine; compile and import skip it"
            continue
        fi
        # ansible-test looks for pythonX.Y on PATH: put the real one first.
        PATH="$(dirname "$interpreter"):$PATH"
        others+=("$version")
    done
    export PATH

    check_ignore_files
    seed_pip_bootstrap || die "cannot seed the pip bootstrap script"
    copy="$(copy_collection "$ROOT/.build/sanity")"
    # shellcheck disable=SC2064  # the copy is known now
    trap "remove_copy '$copy'" EXIT
    log "running in $copy"
    cd "$copy"
    run_sanity "(all tests, Python $controller)" --python "$controller" "$@" || rc=1
    if [ "$#" -eq 0 ]; then
        for version in "${others[@]}"; do
            run_sanity "(compile, import, Python $version)" --python "$version" \
                --test compile --test import || rc=1
        done
    fi
    log "finished in $((SECONDS - started)) s (exit $rc)"
    return "$rc"
}

main "$@"
