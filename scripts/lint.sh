#!/usr/bin/env bash
# ansible-lint (production profile, settings in .ansible-lint) over the roles
# and playbooks, then yamllint (settings in .yamllint) over every YAML file
# git knows about. Both come from the check tools' environment,
# .build/venv-tools (scripts/toolenv.sh).
#
# Extra arguments go to ansible-lint, e.g. `scripts/lint.sh roles/cert_deploy`;
# with any, yamllint does not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
# shellcheck source=scripts/toolenv.sh
source "$ROOT/scripts/toolenv.sh"

log() { printf 'lint: %s\n' "$*" >&2; }

tools_venv
cd "$ROOT"
export PATH="$TOOLS_BIN:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$ROOT/.build/collections"

rc=0
log "ansible-lint"
"$TOOLS_BIN/ansible-lint" --nocolor "$@" || rc=1

if [ "$#" -eq 0 ]; then
    log "yamllint"
    # Tracked files and new ones that are not ignored; yamllint skips the
    # paths that .yamllint ignores.
    mapfile -d '' yaml_files < <(git ls-files -z --cached --others --exclude-standard \
        -- '*.yml' '*.yaml' '.yamllint' '.ansible-lint' | tr '\0' '\n' \
        | while IFS= read -r path; do [ -e "$path" ] && printf '%s\0' "$path"; done)
    if [ "${#yaml_files[@]}" -gt 0 ]; then
        "$TOOLS_BIN/yamllint" --strict -f parsable "${yaml_files[@]}" || rc=1
    fi
fi
exit "$rc"
