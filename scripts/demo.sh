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
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PYTHON="$ROOT/.venv/bin/python"
SERVER_NAME="${DEMO_SERVER_NAME:-demo.example.com}"
DEMO_DIR=""

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
    log "running playbooks/demo.yml"
    ANSIBLE_COLLECTIONS_PATH="$ROOT/.build/collections" \
    ANSIBLE_PYTHON_INTERPRETER="$PYTHON" \
        "$ROOT/.venv/bin/ansible-playbook" -i localhost, -c local \
        "$ROOT/playbooks/demo.yml" -e "@$DEMO_DIR/vars.json"
}

main() {
    local port before after deployed expected
    bash "$ROOT/scripts/bootstrap.sh"
    command -v nginx >/dev/null || die "nginx is not installed"
    [ -f "$ROOT/plugins/modules/nginx_certificate.py" ] \
        || die "plugins/modules/nginx_certificate.py does not exist yet"

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
