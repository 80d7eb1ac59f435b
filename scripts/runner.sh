#!/usr/bin/env bash
# Run the rollout playbook under ansible-runner (the engine behind AWX and
# Automation Platform job templates) against a local fleet of throw-away
# nginx instances on 127.0.0.1; see scripts/runner_rollout.py.
#
# ansible-runner comes from the check tools' environment (.build/venv-tools);
# the harness and the modules run with .venv's Python.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
# shellcheck source=scripts/toolenv.sh
source "$ROOT/scripts/toolenv.sh"

tools_venv
command -v nginx >/dev/null || { echo "runner: nginx is not installed" >&2; exit 1; }
# ansible-runner starts ansible-playbook from PATH: the tools' ansible-core.
PATH="$TOOLS_BIN:$PATH" exec "$ROOT/.venv/bin/python" "$ROOT/scripts/runner_rollout.py" \
    --ansible-runner "$TOOLS_BIN/ansible-runner" "$@"
