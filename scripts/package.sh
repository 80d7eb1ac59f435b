#!/usr/bin/env bash
# Build the collection artifact, install it into a fresh collections path,
# and run the demo from the installed copy, not from this checkout.
#
#   1. `ansible-galaxy collection build` into .build/dist
#      (certfleet-deploy-VERSION.tar.gz; galaxy.yml's build_ignore keeps
#      local environments, build trees and test outputs out).
#   2. The artifact must not hold what build_ignore is for (.venv, .build,
#      tests/output, caches) and must hold what the collection is.
#   3. `ansible-galaxy collection install` into a new temporary directory.
#   4. scripts/demo.sh --collections-path TMP: the demo playbook and the
#      modules run from TMP/ansible_collections/certfleet/deploy.
# The temporary directory is removed at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
VENV_BIN="$ROOT/.venv/bin"
DIST="$ROOT/.build/dist"
WORK=""

log() { printf 'package: %s\n' "$*" >&2; }
die() { printf 'package: error: %s\n' "$*" >&2; exit 1; }

cleanup() {
    if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
}

check_contents() {
    # $1: the artifact. Lists its files and checks them against what a
    # collection must and must not hold.
    local artifact="$1" listing path
    listing="$(tar -tzf "$artifact")"
    for path in MANIFEST.json FILES.json galaxy.yml meta/runtime.yml README.md \
            plugins/modules/nginx_certificate.py plugins/module_utils/target.py \
            playbooks/demo.yml; do
        [ "$path" = galaxy.yml ] && continue  # replaced by MANIFEST.json
        grep -qx "$path" <<<"$listing" || die "$artifact lacks $path"
    done
    if grep -E '^(\.venv|\.build|\.git|tests/output|\.pytest_cache|\.benchmarks)(/|$)|(^|/)__pycache__(/|$)|\.pyc$' \
            <<<"$listing"; then
        die "$artifact holds the files above, which build_ignore should keep out"
    fi
    log "$(wc -l <<<"$listing") entries in $(basename "$artifact"), $(du -h "$artifact" | cut -f1)"
}

main() {
    local version artifact
    [ -x "$VENV_BIN/ansible-galaxy" ] || die "run scripts/bootstrap.sh first"
    version="$("$VENV_BIN/python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["version"])' \
        "$ROOT/galaxy.yml")"
    artifact="$DIST/certfleet-deploy-$version.tar.gz"

    log "ansible-galaxy collection build"
    mkdir -p "$DIST"
    # One artifact at a time: execution-environment.yml copies whichever is there.
    rm -f "$DIST"/certfleet-deploy-*.tar.gz
    (cd "$ROOT" && "$VENV_BIN/ansible-galaxy" collection build --force --output-path "$DIST" .)
    [ -f "$artifact" ] || die "the build did not write $artifact"
    check_contents "$artifact"

    WORK="$(mktemp -d /tmp/certfleet-package.XXXXXX)"
    trap cleanup EXIT
    log "ansible-galaxy collection install into $WORK/collections"
    env -u PYTHONPATH ANSIBLE_COLLECTIONS_PATH="$WORK/collections" \
        "$VENV_BIN/ansible-galaxy" collection install --offline -p "$WORK/collections" "$artifact"
    ANSIBLE_COLLECTIONS_PATH="$WORK/collections" \
        "$VENV_BIN/ansible-galaxy" collection list certfleet.deploy -p "$WORK/collections"

    log "the demo, from the installed copy"
    bash "$ROOT/scripts/demo.sh" --collections-path "$WORK/collections"
}

main "$@"
