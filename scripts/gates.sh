#!/usr/bin/env bash
# Run the named gates (Makefile targets) one after another, every one even
# when an earlier one failed, and end with how long each took and whether it
# passed. Exit status 0 only when all passed.
#
#   scripts/gates.sh pytest units sanity lint ...
#
# The summary is also written to .build/gates.txt.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SUMMARY="$ROOT/.build/gates.txt"

format_time() { printf '%d:%02d' "$(($1 / 60))" "$(($1 % 60))"; }

main() {
    local gate started took rc passed=0 failed=0 total_started=$SECONDS
    local -a lines=()
    for gate in "$@"; do
        printf '\n===== gate %s =====\n' "$gate"
        started=$SECONDS
        make --no-print-directory -C "$ROOT" "$gate"
        rc=$?
        took=$((SECONDS - started))
        if [ "$rc" -eq 0 ]; then
            passed=$((passed + 1))
            lines+=("$(printf '%-10s %-6s %6s' "$gate" passed "$(format_time "$took")")")
        else
            failed=$((failed + 1))
            lines+=("$(printf '%-10s %-6s %6s  (exit %d)' "$gate" FAILED "$(format_time "$took")" "$rc")")
        fi
        printf '===== gate %s: %s after %s =====\n' "$gate" \
            "$([ "$rc" -eq 0 ] && echo passed || echo FAILED)" "$(format_time "$took")"
    done
    mkdir -p "$ROOT/.build"
    {
        printf '\n%-10s %-6s %6s\n' gate result time
        printf '%s\n' "${lines[@]}"
        printf '%-10s %-6s %6s\n' total '' "$(format_time $((SECONDS - total_started)))"
        printf '\ngates: %d passed, %d failed\n' "$passed" "$failed"
    } | tee "$SUMMARY"
    [ "$failed" -eq 0 ]
}

main "$@"
