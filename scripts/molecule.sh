#!/usr/bin/env bash
# Run the Molecule scenarios of the roles (extensions/molecule/*) against
# this machine: `molecule test` for each, from the collection root, with
# the default driver and no instances to create (managed: false, a
# localhost inventory with ansible_connection: local).
#
# Each scenario starts a throw-away nginx of its own on a free high port of
# 127.0.0.1 under its ephemeral directory (nothing under /etc), and stops it
# by its PID in cleanup, also when a step fails (--destroy=always).
#
# Molecule would name the ephemeral directory after the checkout's directory
# name alone, so two runs from one checkout (or from two checkouts with the
# same name) would share it. Each run gets its own instead, under
# .build/molecule/run.XXXXXX, removed at the end.
#
# The collection comes from this checkout through .build/collections
# (ANSIBLE_COLLECTIONS_PATH; the scenarios set prerun: false, so molecule
# installs no copy of its own). Modules run with .venv's Python.
#
# Arguments name scenarios to run (default: all), e.g.
# `scripts/molecule.sh cert_deploy`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
# shellcheck source=scripts/toolenv.sh
source "$ROOT/scripts/toolenv.sh"

log() { printf 'molecule: %s\n' "$*" >&2; }

tools_venv
cd "$ROOT"
export PATH="$TOOLS_BIN:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$ROOT/.build/collections"
export CERTFLEET_VENV_PYTHON="$ROOT/.venv/bin/python"
export ANSIBLE_FORCE_COLOR=0 NO_COLOR=1

if [ "$#" -gt 0 ]; then
    scenarios=("$@")
else
    mapfile -t scenarios < <(find extensions/molecule -mindepth 2 -maxdepth 2 \
        -name molecule.yml -printf '%h\n' | xargs -rn1 basename | sort)
fi

mkdir -p "$ROOT/.build/molecule"
RUN_DIR="$(mktemp -d "$ROOT/.build/molecule/run.XXXXXX")"
trap 'rm -rf "$RUN_DIR"' EXIT

rc=0
for scenario in "${scenarios[@]}"; do
    started=$SECONDS
    log "molecule test -s $scenario (in $RUN_DIR/$scenario)"
    if MOLECULE_EPHEMERAL_DIRECTORY="$RUN_DIR/$scenario" \
            molecule test -s "$scenario" --destroy=always; then
        log "$scenario passed in $((SECONDS - started)) s"
    else
        log "$scenario FAILED after $((SECONDS - started)) s"
        rc=1
    fi
done
exit "$rc"
