#!/usr/bin/env bash
# Check the collection's documentation and build its docs site.
#
#   0. ansible-doc: every module's documentation, with its doc fragments,
#      parses (the quickest check, with ansible-doc's own error messages).
#   1. antsibull-docs lint-collection-docs --plugin-docs: every plugin's and
#      role's documentation validates against the schema the Ansible docs
#      site uses, semantic markup (M(), O(), V(), RV()) points at things
#      that exist, and the collection's docs/docsite files are well formed.
#   2. antsibull-docs collection: one RST page per module, filter and role,
#      from their own DOCUMENTATION and meta/argument_specs.yml, into
#      .build/docs-site/rst (--fail-on-error: a page that cannot be made
#      fails the run instead of becoming an error page).
#   3. sphinx-build -W with docs/site/conf.py: the HTML site in
#      .build/docs-site/html. Warnings fail the build.
#
# Offline: the site links to the Ansible documentation through a small
# inventory that docs/site/conf.py writes itself (nothing is downloaded).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
# shellcheck source=scripts/toolenv.sh
source "$ROOT/scripts/toolenv.sh"
SITE="$ROOT/.build/docs-site"
COLLECTION="$ROOT/.build/collections/ansible_collections/certfleet/deploy"

log() { printf 'docs: %s\n' "$*" >&2; }

tools_venv
export PATH="$TOOLS_BIN:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$ROOT/.build/collections"
[ -d "$COLLECTION" ] || { log "missing $COLLECTION; run scripts/bootstrap.sh"; exit 1; }

rc=0
log "ansible-doc on every module"
for module in "$ROOT"/plugins/modules/*.py; do
    name="$(basename "$module" .py)"
    if ! err="$(ansible-doc -t module "certfleet.deploy.$name" 2>&1 >/dev/null)"; then
        rc=1
        printf '%s:\n%s\n\n' "${module#"$ROOT"/}" "$err"
    fi
done

log "antsibull-docs lint-collection-docs --plugin-docs"
(cd "$COLLECTION" && antsibull-docs lint-collection-docs --plugin-docs .) || rc=1

# Built in a directory of this run's own and moved into place at the end,
# so two runs at the same time never write into one tree.
mkdir -p "$ROOT/.build"
BUILD="$(mktemp -d "$ROOT/.build/docs-site.XXXXXX")"
trap 'rm -rf "$BUILD"' EXIT
chmod 0755 "$BUILD"
mkdir -p "$BUILD/rst"
log "writing the plugin and role pages"
antsibull-docs collection --use-current --squash-hierarchy --fail-on-error \
    --no-add-antsibull-docs-version --dest-dir "$BUILD/rst" certfleet.deploy || rc=1

if [ -f "$BUILD/rst/index.rst" ]; then
    log "building the HTML site"
    CERTFLEET_DOCS_BUILD="$BUILD" sphinx-build -W --keep-going -q -b html \
        -c "$ROOT/docs/site" "$BUILD/rst" "$BUILD/html" || rc=1
fi
rm -rf "$SITE"
mv "$BUILD" "$SITE"

if [ "$rc" -eq 0 ]; then
    log "documentation is clean; the site is $SITE/html/index.html"
else
    log "documentation checks failed (see above)"
fi
exit "$rc"
