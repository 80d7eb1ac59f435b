# shellcheck shell=bash
# Sourced by the scripts that run ansible-test (sanity.sh, units.sh).
#
# copy_collection PARENT copies the files git knows about (tracked, plus
# untracked ones that are not ignored) into
# PARENT/run.XXXXXX/ansible_collections/certfleet/deploy, a new directory for
# each run so that runs started at the same time never share one, and prints
# that directory; remove_copy COPY removes the run's directory again.
# ansible-test insists on running from a real directory with that name, so it
# cannot use the .build/collections link.
#
# seed_pip_bootstrap puts scripts/get_pip_standin.py where ansible-test
# looks for the pip bootstrap script it would otherwise download from a host
# outside the package index (~/.ansible/test/cache/get_pip_<version>.py); a
# real script already there is left alone.

ANSIBLE_TEST_LIB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
ANSIBLE_TEST_CACHE="$HOME/.ansible/test/cache"
STANDIN_MARK='Offline stand-in for the pip bootstrap script'

seed_pip_bootstrap() {
    # The pip version ansible-test bootstraps, read from its own source.
    local version cached
    version="$("$ANSIBLE_TEST_LIB_ROOT/.venv/bin/python" - <<'EOF'
import pathlib, re, ansible_test
source = pathlib.Path(ansible_test.__file__).parent / '_internal' / 'python_requirements.py'
match = re.search(r"default_packages = dict\(\s*pip='([^']+)'", source.read_text())
print(match.group(1) if match else '')
EOF
)"
    if [ -z "$version" ]; then
        printf 'ansible-test: cannot tell which pip version it bootstraps\n' >&2
        return 1
    fi
    cached="$ANSIBLE_TEST_CACHE/get_pip_${version//./_}.py"
    mkdir -p "$ANSIBLE_TEST_CACHE"
    if [ -f "$cached" ] && ! grep -q "$STANDIN_MARK" "$cached"; then
        printf 'ansible-test: keeping the pip bootstrap script at %s\n' "$cached" >&2
        return 0
    fi
    install -m 0644 "$ANSIBLE_TEST_LIB_ROOT/scripts/get_pip_standin.py" "$cached"
}

copy_collection() {
    local parent="$1" root="$ANSIBLE_TEST_LIB_ROOT" base copy
    git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1 || {
        printf 'ansible-test: %s is not a git checkout; the file list comes from git\n' "$root" >&2
        return 1
    }
    mkdir -p "$parent"
    base="$(mktemp -d "$parent/run.XXXXXX")"
    copy="$base/ansible_collections/certfleet/deploy"
    mkdir -p "$copy"
    # Files deleted from the work tree but still in the index are skipped.
    git -C "$root" ls-files -z --cached --others --exclude-standard \
        | (cd "$root" && while IFS= read -r -d '' path; do
               if [ -e "$path" ] || [ -L "$path" ]; then printf '%s\0' "$path"; fi
           done) \
        | tar -C "$root" --null --no-recursion -T - -cf - \
        | tar -C "$copy" -xf -
    # A repository of its own, so ansible-test lists these files and does
    # not walk up to the checkout that holds .build.
    git -C "$copy" init -q
    printf '%s\n' "$copy"
}

remove_copy() {
    local copy="$1"
    case "$copy" in
        */run.*/ansible_collections/certfleet/deploy) rm -rf "${copy%/ansible_collections/certfleet/deploy}" ;;
        *) ;;
    esac
}
