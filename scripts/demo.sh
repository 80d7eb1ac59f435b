#!/usr/bin/env bash
# Deploy a certificate to a throw-away nginx with certfleet.deploy.nginx_certificate
# and prove, with a handshake of our own, that nginx serves it.
#
# Everything lives in one temporary directory: the demo CA, the nginx config,
# its pid file, logs and temp paths. nginx listens on a free high port on
# 127.0.0.1 only. On exit the demo stops that nginx (by the pid in its pid
# file) and removes the directory. The machine's own nginx is never touched.
#
# Exit status: 0 when the served certificate is the deployed one.
#
# Usage: scripts/demo.sh [--collections-path DIR]
#
# By default the collection comes from this checkout (through the
# .build/collections link). With --collections-path, it comes from DIR
# instead, where `ansible-galaxy collection install -p DIR` put it: the
# playbook and every module run from DIR/ansible_collections/certfleet/deploy,
# and the checkout only lends its .venv and the demo CA script
# (scripts/package.sh uses this to prove the built artifact works).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PYTHON="$ROOT/.venv/bin/python"
SERVER_NAME="${DEMO_SERVER_NAME:-demo.example.com}"
DEMO_DIR=""
COLLECTIONS_PATH="$ROOT/.build/collections"
INSTALLED=""

log() { printf 'demo: %s\n' "$*" >&2; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

nginx_flags() { printf '%s\n' -p "$DEMO_DIR" -e "$DEMO_DIR/error.log" -c "$DEMO_DIR/nginx.conf"; }

stop_nginx() {
    local pid_file="$DEMO_DIR/nginx.pid" pid waited
    [ -s "$pid_file" ] || return 0
    pid="$(cat "$pid_file")"
    kill -0 "$pid" 2>/dev/null || return 0
    log "stopping the demo nginx (pid $pid)"
    kill -QUIT "$pid" 2>/dev/null || true
    for waited in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "nginx $pid did not quit after ${waited}00 ms; sending TERM"
    kill -TERM "$pid" 2>/dev/null || true
}

cleanup() {
    [ -n "$DEMO_DIR" ] && [ -d "$DEMO_DIR" ] || return 0
    stop_nginx
    rm -rf "$DEMO_DIR"
}

free_port() {
    # A port on 127.0.0.1 that nothing listens on right now.
    "$PYTHON" - <<'EOF'
import random, socket
for port in random.sample(range(20000, 60000), 200):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(('127.0.0.1', port))
        except OSError:
            continue
        print(port)
        break
else:
    raise SystemExit('no free port found on 127.0.0.1')
EOF
}

write_nginx_conf() {
    local port="$1" d="$DEMO_DIR"
    cat >"$d/nginx.conf" <<EOF
# Throw-away nginx for the certfleet.deploy demo.
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log notice;

events {
    worker_connections 64;
}

http {
    access_log $d/access.log;
    client_body_temp_path $d/tmp/client_body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;

    server {
        listen 127.0.0.1:$port ssl;
        server_name $SERVER_NAME;
        ssl_certificate $d/tls/fullchain.pem;
        ssl_certificate_key $d/tls/privkey.pem;

        location / {
            return 200 "certfleet.deploy demo\n";
        }
    }
}
EOF
}

start_nginx() {
    # Retries with another port if one was taken between the check and bind.
    local attempt port
    local -a flags
    mapfile -t flags < <(nginx_flags)
    for attempt in 1 2 3 4 5; do
        port="$(free_port)"
        write_nginx_conf "$port"
        if nginx "${flags[@]}" 2>>"$DEMO_DIR/start.log"; then
            for _ in $(seq 1 50); do
                [ -s "$DEMO_DIR/nginx.pid" ] && { printf '%s\n' "$port"; return 0; }
                sleep 0.1
            done
            die "nginx started but wrote no pid file"
        fi
        log "nginx could not start on port $port (attempt $attempt)"
    done
    cat "$DEMO_DIR/start.log" >&2
    die "nginx did not start"
}

served_sha256() {
    # The SHA-256 of the leaf that 127.0.0.1:PORT sends for SERVER_NAME,
    # lowercase hex without colons, from a handshake of our own.
    local port="$1" fingerprint
    fingerprint="$(timeout 10 openssl s_client -connect "127.0.0.1:$port" \
            -servername "$SERVER_NAME" </dev/null 2>/dev/null \
        | openssl x509 -noout -fingerprint -sha256)" || return 1
    file_sha256_normalise "$fingerprint"
}

file_sha256() {
    file_sha256_normalise "$(openssl x509 -in "$1" -noout -fingerprint -sha256)"
}

file_sha256_normalise() {
    local value="${1#*=}"
    value="${value//:/}"
    printf '%s\n' "${value,,}"
}

run_playbook() {
    local port="$1"
    local -a flags
    mapfile -t flags < <(nginx_flags)
    "$PYTHON" - "$DEMO_DIR/vars.json" "$DEMO_DIR" "$port" "$SERVER_NAME" "$PYTHON" "${flags[@]}" <<'EOF'
import json, sys
out, demo_dir, port, name, python, *flags = sys.argv[1:]
pki = f'{demo_dir}/pki'
variables = {
    'ansible_python_interpreter': python,
    'demo_dir': demo_dir,
    'demo_cert_src': f'{pki}/new.crt',
    'demo_chain_src': f'{pki}/intermediate.crt',
    'demo_key_src': f'{pki}/new.key',
    'demo_cert_path': f'{demo_dir}/tls/fullchain.pem',
    'demo_key_path': f'{demo_dir}/tls/privkey.pem',
    'demo_nginx_command': ['nginx', *flags],
    'demo_endpoint': f'127.0.0.1:{port}',
    'demo_server_name': name,
    'demo_result_file': f'{demo_dir}/result.json',
}
with open(out, 'w', encoding='utf-8') as handle:
    json.dump(variables, handle, indent=2)
EOF
    local playbook="$COLLECTIONS_PATH/ansible_collections/certfleet/deploy/playbooks/demo.yml"
    log "running $playbook"
    ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS_PATH" \
    ANSIBLE_PYTHON_INTERPRETER="$PYTHON" \
        "$ROOT/.venv/bin/ansible-playbook" -i localhost, -c local \
        "$playbook" -e "@$DEMO_DIR/vars.json"
}

use_installed_collection() {
    # Run everything from an installed copy in $1: nothing may reach the
    # checkout's collection, neither through PYTHONPATH nor through sys.path.
    local dir="$1" module
    [ -n "$dir" ] || die "--collections-path needs a directory"
    COLLECTIONS_PATH="$(cd "$dir" && pwd -P)" || die "no directory $dir"
    INSTALLED="$COLLECTIONS_PATH/ansible_collections/certfleet/deploy"
    [ -f "$INSTALLED/MANIFEST.json" ] \
        || die "$INSTALLED/MANIFEST.json is missing: install the collection there first"
    unset PYTHONPATH
    export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
    module="$(ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS_PATH" "$ROOT/.venv/bin/ansible-doc" \
        --json -t module certfleet.deploy.nginx_certificate \
        | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["certfleet.deploy.nginx_certificate"]["doc"]["filename"])')"
    case "$module" in
        "$INSTALLED"/*) log "using the collection installed in $INSTALLED" ;;
        *) die "certfleet.deploy.nginx_certificate resolves to $module, not to $INSTALLED" ;;
    esac
}

main() {
    local port before after deployed expected
    while [ "$#" -gt 0 ]; do
        case "$1" in
            --collections-path) INSTALLED="${2:-}"; shift 2 || die "--collections-path needs a directory" ;;
            --collections-path=*) INSTALLED="${1#*=}"; shift ;;
            -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; return 0 ;;
            *) die "unknown argument $1 (see --help)" ;;
        esac
    done
    bash "$ROOT/scripts/bootstrap.sh"
    command -v nginx >/dev/null || die "nginx is not installed"
    if [ -n "$INSTALLED" ]; then
        use_installed_collection "$INSTALLED"
    fi
    [ -f "$COLLECTIONS_PATH/ansible_collections/certfleet/deploy/plugins/modules/nginx_certificate.py" ] \
        || die "certfleet.deploy.nginx_certificate is missing from $COLLECTIONS_PATH"

    DEMO_DIR="$(mktemp -d /tmp/certfleet-demo.XXXXXX)"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    mkdir -p "$DEMO_DIR"/{tmp,tls,backups}
    log "working in $DEMO_DIR"

    "$PYTHON" "$ROOT/scripts/demo_pki.py" "$DEMO_DIR/pki" "$SERVER_NAME"
    install -m 0644 "$DEMO_DIR/pki/initial-fullchain.crt" "$DEMO_DIR/tls/fullchain.pem"
    install -m 0600 "$DEMO_DIR/pki/initial.key" "$DEMO_DIR/tls/privkey.pem"

    port="$(start_nginx)"
    before="$(served_sha256 "$port")" || die "no TLS handshake with 127.0.0.1:$port"
    log "nginx $(nginx -v 2>&1 | sed 's/.*\///') listens on 127.0.0.1:$port, serving $before"

    run_playbook "$port"

    after="$(served_sha256 "$port")" || die "no TLS handshake with 127.0.0.1:$port after the deploy"
    deployed="$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["certificate"]["sha256"])' \
        "$DEMO_DIR/result.json")"
    expected="$(file_sha256 "$DEMO_DIR/pki/new.crt")"
    cleanup

    echo
    echo "before sha256:   $before"
    echo "deployed sha256: $deployed"
    echo "served sha256:   $after"
    if [ "$deployed" != "$expected" ]; then
        die "the module reports $deployed, but the new certificate is $expected"
    fi
    if [ "$after" != "$deployed" ]; then
        die "nginx serves $after, not the deployed $deployed"
    fi
    if [ "$after" = "$before" ]; then
        die "nginx still serves the initial certificate"
    fi
    echo "demo: nginx serves the deployed certificate"
}

main "$@"
