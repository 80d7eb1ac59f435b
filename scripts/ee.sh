#!/usr/bin/env bash
# Check execution-environment.yml with `ansible-builder create`: it validates
# the definition (version 3) and writes the build context, Containerfile
# included, into .build/ee-context. No image is built and nothing is
# pulled, so this needs no container runtime.
#
# The definition copies the collection artifact from .build/dist; when there
# is none, this builds it first (ansible-galaxy collection build).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
# shellcheck source=scripts/toolenv.sh
source "$ROOT/scripts/toolenv.sh"
CONTEXT="$ROOT/.build/ee-context"

log() { printf 'ee: %s\n' "$*" >&2; }
die() { printf 'ee: error: %s\n' "$*" >&2; exit 1; }

tools_venv
cd "$ROOT"
shopt -s nullglob
artifacts=(.build/dist/certfleet-deploy-*.tar.gz)
if [ "${#artifacts[@]}" -eq 0 ]; then
    log "no artifact in .build/dist yet; building it"
    mkdir -p .build/dist
    "$ROOT/.venv/bin/ansible-galaxy" collection build --force --output-path .build/dist .
    artifacts=(.build/dist/certfleet-deploy-*.tar.gz)
fi
[ "${#artifacts[@]}" -eq 1 ] \
    || die "more than one artifact in .build/dist (${artifacts[*]}); keep only the current one"

log "ansible-builder create"
# Written into a directory of this run's own, then moved into place.
BUILD="$(mktemp -d "$ROOT/.build/ee-context.XXXXXX")"
trap 'rm -rf "$BUILD"' EXIT
"$TOOLS_BIN/ansible-builder" create -f execution-environment.yml -c "$BUILD/context" \
    --output-filename Containerfile
rm -rf "$CONTEXT"
mv "$BUILD/context" "$CONTEXT"

# What the context must hold for `ansible-builder build` to make a working EE.
[ -f "$CONTEXT/_build/collections/$(basename "${artifacts[0]}")" ] \
    || die "the build context lacks the collection artifact"
grep -q 'ansible-galaxy collection install' "$CONTEXT/Containerfile" \
    || die "the Containerfile does not install the collection"
grep -q '^cryptography' "$CONTEXT/_build/requirements.txt" \
    || die "the build context lacks the Python requirements"
log "build context in $CONTEXT ($(find "$CONTEXT" -type f | wc -l) files)"
