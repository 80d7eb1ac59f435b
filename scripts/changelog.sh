#!/usr/bin/env bash
# Check the changelog fragments and show the changelog they make.
#
#   1. antsibull-changelog lint: every file in changelogs/fragments is a
#      valid fragment (known sections, lists of strings, valid RST).
#   2. On a copy of the collection under .build/changelog, CHANGELOG.rst is
#      made as a release would make it: with `antsibull-changelog release`
#      for the version in galaxy.yml (or, when changelogs/changelog.yaml
#      already holds that version, the next patch version). The result is
#      .build/changelog/CHANGELOG.rst; the checkout is not touched.
#   3. Once a release exists, CHANGELOG.rst in the checkout must be exactly
#      what `antsibull-changelog generate` makes from changelogs/changelog.yaml:
#      it is never edited by hand.
#
# CHANGELOG.rst is written by `antsibull-changelog release` when a version is
# released (see docs/checks.md); until the first release there is none.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
# shellcheck source=scripts/toolenv.sh
source "$ROOT/scripts/toolenv.sh"
# shellcheck source=scripts/ansible_test_lib.sh
source "$ROOT/scripts/ansible_test_lib.sh"
OUT="$ROOT/.build/changelog"

log() { printf 'changelog: %s\n' "$*" >&2; }

release_version() {
    # galaxy.yml's version, or the patch after it when already released.
    "$TOOLS_BIN/python" - "$1" <<'PY'
import sys, yaml
root = sys.argv[1]
with open(f"{root}/galaxy.yml", encoding="utf-8") as handle:
    version = str(yaml.safe_load(handle)["version"])
with open(f"{root}/changelogs/changelog.yaml", encoding="utf-8") as handle:
    released = (yaml.safe_load(handle) or {}).get("releases") or {}
if version in released:
    major, minor, patch = (int(part) for part in version.split(".")[:3])
    version = f"{major}.{minor}.{patch + 1}"
print(version)
PY
}

has_releases() {
    "$TOOLS_BIN/python" -c 'import sys, yaml
data = yaml.safe_load(open(sys.argv[1], encoding="utf-8")) or {}
sys.exit(0 if data.get("releases") else 1)' "$1/changelogs/changelog.yaml"
}

tools_venv
export PATH="$TOOLS_BIN:$PATH"
rc=0

log "antsibull-changelog lint"
(cd "$ROOT" && antsibull-changelog lint) || rc=1

copy="$(copy_collection "$OUT")"
# shellcheck disable=SC2064  # the copy is known now
trap "remove_copy '$copy'" EXIT
export ANSIBLE_COLLECTIONS_PATH="${copy%/ansible_collections/certfleet/deploy}"

if has_releases "$ROOT"; then
    log "CHANGELOG.rst matches changelogs/changelog.yaml"
    (cd "$copy" && antsibull-changelog generate) || rc=1
    if ! cmp -s "$copy/CHANGELOG.rst" "$ROOT/CHANGELOG.rst"; then
        log "CHANGELOG.rst differs from what antsibull-changelog generate makes;" \
            "run it instead of editing the file"
        diff -u "$ROOT/CHANGELOG.rst" "$copy/CHANGELOG.rst" || true
        rc=1
    fi
fi

version="$(release_version "$ROOT")"
log "the changelog a release of $version would have"
if (cd "$copy" && antsibull-changelog release --version "$version" \
        --date "$(date -u +%Y-%m-%d)"); then
    cp "$copy/CHANGELOG.rst" "$OUT/CHANGELOG.rst"
    log "written to $OUT/CHANGELOG.rst"
else
    rc=1
fi
exit "$rc"
