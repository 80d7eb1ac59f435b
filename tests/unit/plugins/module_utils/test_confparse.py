"""Reading each server's configuration for the certificate files it names.

The inputs are what the servers' own tools print (``nginx -T``,
``postconf``, ``doveconf -n``) or configuration trees written to tmp_path,
shaped like the ones the packages install.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from ansible_collections.certfleet.deploy.plugins.module_utils import confparse


def _sites(findings) -> list[tuple]:
    return [(u.server, u.path, u.site, u.directive) for u in findings.uses]


# -- nginx ------------------------------------------------------------------

NGINX_DUMP = textwrap.dedent("""\
    # configuration file /etc/nginx/nginx.conf:
    user www-data;
    http {
        ssl_certificate /etc/ssl/default.pem;   # for servers without their own
        include /etc/nginx/sites-enabled/*;
        server {
            listen 80;
            server_name plain.example.com;
        }
    }
    stream {
        server {
            listen 127.0.0.1:8443 ssl;
            ssl_certificate "tls/stream cert.pem";
        }
    }

    # configuration file /etc/nginx/sites-enabled/a.conf:
    server {
        listen 443 ssl http2;
        server_name a.example.com www.a.example.com;
        ssl_certificate     /etc/ssl/a-rsa.pem;
        ssl_certificate     /etc/ssl/a-ecdsa.pem;
        location / { return 200 "{};#"; }
    }

    # configuration file /etc/nginx/sites-enabled/b.conf:
    server {
        listen [::]:443 ssl;
        server_name _;
        # no certificate of its own: it uses the http-level one
    }
    server {
        listen 8443;
        ssl on;
        server_name ${host}.example.com;
        ssl_certificate /etc/ssl/$ssl_server_name.pem;
    }
    """)


def test_nginx_dump_is_split_into_files() -> None:
    files = confparse.split_nginx_dump(NGINX_DUMP)
    assert list(files) == ["/etc/nginx/nginx.conf", "/etc/nginx/sites-enabled/a.conf",
                           "/etc/nginx/sites-enabled/b.conf"]
    assert files["/etc/nginx/sites-enabled/a.conf"].startswith("server {")


def test_nginx_sites_and_inherited_certificates() -> None:
    findings = confparse.nginx_uses(NGINX_DUMP)
    assert _sites(findings) == [
        ("nginx", "/etc/ssl/a-rsa.pem", "a.example.com www.a.example.com",
         "ssl_certificate"),
        ("nginx", "/etc/ssl/a-ecdsa.pem", "a.example.com www.a.example.com",
         "ssl_certificate"),
        ("nginx", "/etc/ssl/default.pem", "listen [::]:443", "ssl_certificate"),
        ("nginx", "/etc/nginx/tls/stream cert.pem",
         "stream server on 127.0.0.1:8443", "ssl_certificate"),
    ]
    assert findings.uses[0].source == "/etc/nginx/sites-enabled/a.conf:4"
    assert findings.uses[3].source == "/etc/nginx/nginx.conf:13"
    (problem,) = findings.problems
    assert "'/etc/ssl/$ssl_server_name.pem'" in problem
    assert "/etc/nginx/sites-enabled/b.conf:10" in problem


def test_nginx_http_certificate_no_server_inherits_is_still_listed() -> None:
    dump = ("# configuration file /n/nginx.conf:\n"
            "http { ssl_certificate c.pem; server { listen 80; } }\n"
            "events { }\n")
    assert _sites(confparse.nginx_uses(dump)) == [
        ("nginx", "/n/c.pem", "http block", "ssl_certificate"),
    ]


def test_nginx_quotes_escapes_and_stray_braces() -> None:
    dump = ("# configuration file /n/nginx.conf:\n"
            "http { server { listen 1 ssl; server_name 'it\\'s.example';\n"
            "ssl_certificate /c.pem; } } }\n")
    assert _sites(confparse.nginx_uses(dump)) == [
        ("nginx", "/c.pem", "it's.example", "ssl_certificate"),
    ]


def test_nginx_output_that_is_not_a_dump() -> None:
    findings = confparse.nginx_uses("nginx: [emerg] unknown directive\n")
    assert findings.uses == []
    assert "nginx -T" in findings.problems[0]


# -- Apache -----------------------------------------------------------------

def _apache_tree(root) -> str:
    (root / "sites-enabled").mkdir(parents=True)
    (root / "conf.d").mkdir()
    (root / "apache2.conf").write_text(textwrap.dedent(f"""\
        # The main file, Debian style.
        ServerRoot "{root}"
        Define TLSDIR /etc/ssl/apache
        SSLCertificateFile main.pem
        Include ports.conf
        IncludeOptional conf.d
        IncludeOptional sites-enabled/*.conf
        IncludeOptional nothing-here/*.conf
        """))
    (root / "ports.conf").write_text("Listen 443\n")
    (root / "conf.d" / "z.conf").write_text("# nothing\n")
    (root / "sites-enabled" / "a.conf").write_text(textwrap.dedent("""\
        <IfModule mod_ssl.c>
        <VirtualHost *:443>
            SSLEngine on
            SSLCertificateFile ${TLSDIR}/a.pem
            SSLCertificateChainFile \\
                ${TLSDIR}/a-chain.pem
            ServerName a.example.com
            ServerAlias www.a.example.com
        </VirtualHost>
        </IfModule>
        """))
    (root / "sites-enabled" / "b.conf").write_text(textwrap.dedent("""\
        <VirtualHost 192.0.2.1:443>
            SSLEngine on
        </VirtualHost>
        <VirtualHost *:80>
            ServerName plain.example.com
        </VirtualHost>
        """))
    return str(root / "apache2.conf")


def test_apache_virtual_hosts_includes_and_defines(tmp_path) -> None:
    root = tmp_path / "apache2"
    findings = confparse.apache_uses(_apache_tree(root), environ={})
    assert _sites(findings) == [
        ("apache", "/etc/ssl/apache/a.pem",
         "a.example.com www.a.example.com (*:443)", "SSLCertificateFile"),
        ("apache", "/etc/ssl/apache/a-chain.pem",
         "a.example.com www.a.example.com (*:443)", "SSLCertificateChainFile"),
        ("apache", f"{root}/main.pem", "192.0.2.1:443", "SSLCertificateFile"),
    ]
    assert findings.uses[1].source == f"{root}/sites-enabled/a.conf:5"
    assert findings.problems == []


def test_apache_main_server_certificate_and_missing_include(tmp_path) -> None:
    main = tmp_path / "httpd.conf"
    main.write_text('SSLCertificateFile "${CERTS}/main.pem"\nInclude missing.conf\n'
                    "ServerName 'broken quote\n")
    findings = confparse.apache_uses(str(main), server_root=str(tmp_path),
                                     environ={"CERTS": "/srv/certs"})
    assert _sites(findings) == [
        ("apache", "/srv/certs/main.pem", "main server", "SSLCertificateFile"),
    ]
    assert findings.problems == [
        f"Apache Include {tmp_path}/missing.conf at {main}:2 cannot be read: "
        "No such file or directory."
    ]


def test_apache_main_file_missing(tmp_path) -> None:
    findings = confparse.apache_uses(str(tmp_path / "none.conf"))
    assert findings.uses == []
    assert "cannot be read: No such file or directory" in findings.problems[0]


# -- HAProxy ----------------------------------------------------------------

def test_haproxy_crt_file_directory_and_list(tmp_path) -> None:
    certs = tmp_path / "certs"
    (certs / "dir" / "sub").mkdir(parents=True)
    for name in ("a.pem", "a.pem.key", "a.pem.ocsp", "b.pem", "c.issuer"):
        (certs / "dir" / name).write_text("x")
    (certs / "list.txt").write_text(
        "# comment\n\nlisted.pem [alpn h2 ssl-min-ver TLSv1.2] www.example.com !old\n"
        "/abs/other.pem\n"
    )
    config = tmp_path / "haproxy.cfg"
    config.write_text(textwrap.dedent(f"""\
        global
            crt-base {certs}
        defaults
            mode http
        frontend fe_https
            bind :443 ssl crt site.pem crt {certs}/dir alpn h2  # two crt options
            bind :8443 ssl crt-list list.txt
            default_backend be
        backend be
            server s1 127.0.0.1:8080 ssl crt ignored-client.pem
        listen stats
            bind 127.0.0.1:9443 ssl default-crt "{certs}/quoted name.pem"
        frontend broken
            bind :1 ssl crt-list missing.txt
        """))
    findings = confparse.haproxy_uses([str(config)])
    assert _sites(findings) == [
        ("haproxy", f"{certs}/site.pem", "frontend fe_https (bind :443)", "crt"),
        ("haproxy", f"{certs}/dir/a.pem", "frontend fe_https (bind :443)",
         f"crt {certs}/dir/"),
        ("haproxy", f"{certs}/dir/b.pem", "frontend fe_https (bind :443)",
         f"crt {certs}/dir/"),
        ("haproxy", f"{certs}/listed.pem",
         "frontend fe_https (bind :8443) sni www.example.com !old", "crt-list"),
        ("haproxy", "/abs/other.pem", "frontend fe_https (bind :8443)", "crt-list"),
        ("haproxy", f"{certs}/quoted name.pem", "listen stats (bind 127.0.0.1:9443)",
         "default-crt"),
    ]
    assert findings.uses[0].source == f"{config}:6"
    assert findings.uses[3].source == f"{certs}/list.txt:3"
    assert findings.problems == [
        f"HAProxy crt-list {certs}/missing.txt at {config}:14 cannot be read: "
        "No such file or directory."
    ]


def test_haproxy_config_directory_and_relative_paths(tmp_path) -> None:
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "10-fe.cfg").write_text("frontend a\n bind :443 ssl crt a.pem\n")
    (conf_d / "20-fe.cfg").write_text("listen b\n bind :1 ssl crt 'b.pem\n")
    (conf_d / "notes.txt").write_text("frontend c\n bind :2 ssl crt c.pem\n")
    findings = confparse.haproxy_uses([str(tmp_path / "conf.d"),
                                       str(tmp_path / "missing.cfg")])
    assert [u.path for u in findings.uses] == [
        f"{tmp_path}/conf.d/a.pem", f"{tmp_path}/conf.d/'b.pem",
    ]
    assert findings.problems == [
        f"The HAProxy configuration {tmp_path}/missing.cfg cannot be read: "
        "No such file or directory."
    ]


# -- Postfix ----------------------------------------------------------------

def test_postfix_main_and_master_parameters() -> None:
    main = ("config_directory = /etc/postfix\n"
            "smtpd_tls_cert_file = /etc/postfix/tls/cert.pem\n"
            "smtpd_tls_chain_files = /etc/postfix/tls/key.pem, "
            "/etc/postfix/tls/full.pem\n"
            "smtp_tls_cert_file = /etc/postfix/tls/client.pem\n"
            "smtpd_tls_eccert_file =\n")
    master = "submission/inet/smtpd_tls_cert_file = /etc/postfix/tls/sub.pem\n"
    findings = confparse.postfix_uses(main, master, "/etc/postfix")
    assert _sites(findings) == [
        ("postfix", "/etc/postfix/tls/cert.pem", "smtpd", "smtpd_tls_cert_file"),
        ("postfix", "/etc/postfix/tls/key.pem", "smtpd", "smtpd_tls_chain_files"),
        ("postfix", "/etc/postfix/tls/full.pem", "smtpd", "smtpd_tls_chain_files"),
        ("postfix", "/etc/postfix/tls/client.pem", "smtp client",
         "smtp_tls_cert_file"),
        ("postfix", "/etc/postfix/tls/sub.pem", "service submission/inet",
         "smtpd_tls_cert_file"),
    ]
    assert [u.optional for u in findings.uses] == [False, True, True, False, False]
    assert findings.uses[0].source == "/etc/postfix/main.cf"
    assert findings.uses[4].source == "/etc/postfix/master.cf"


# -- Dovecot ----------------------------------------------------------------

DOVECONF = """\
# 2.3.19.1 (9b53102964): /etc/dovecot/dovecot.conf
ssl = required
ssl_cert = </etc/dovecot/tls/main.pem
ssl_key = # hidden, use -P to show it
ssl_alt_cert = </etc/dovecot/tls/alt.pem
protocol imap {
  ssl_cert = </etc/dovecot/tls/imap.pem
}
local_name mail.example.com {
  ssl_cert = </etc/dovecot/tls/mail.pem
  ssl_key = # hidden, use -P to show it
}

ssl_server_cert_file = /etc/dovecot/tls/v24.pem
"""


def test_dovecot_settings_with_their_blocks() -> None:
    findings = confparse.dovecot_uses(DOVECONF, "/etc/dovecot/dovecot.conf")
    assert _sites(findings) == [
        ("dovecot", "/etc/dovecot/tls/main.pem", "global", "ssl_cert"),
        ("dovecot", "/etc/dovecot/tls/alt.pem", "global", "ssl_alt_cert"),
        ("dovecot", "/etc/dovecot/tls/imap.pem", "protocol imap", "ssl_cert"),
        ("dovecot", "/etc/dovecot/tls/mail.pem", "local_name mail.example.com",
         "ssl_cert"),
        ("dovecot", "/etc/dovecot/tls/v24.pem", "global", "ssl_server_cert_file"),
    ]


# -- Traefik ----------------------------------------------------------------

def _traefik_tree(root) -> None:
    (root / "dynamic" / "more").mkdir(parents=True)
    (root / "traefik.yml").write_text(
        "entryPoints:\n  websecure:\n    address: ':443'\n"
        "providers:\n  file:\n    directory: dynamic\n    watch: true\n")
    (root / "dynamic" / "tls.yml").write_text(textwrap.dedent("""\
        tls:
          certificates:
            - certFile: /etc/traefik/certs/a.pem
              keyFile: /etc/traefik/certs/a.key
            - certFile: /etc/traefik/certs/b.pem
              keyFile: /etc/traefik/certs/b.key
              stores: [default, internal]
          stores:
            default:
              defaultCertificate:
                certFile: /etc/traefik/certs/default.pem
                keyFile: /etc/traefik/certs/default.key
        """))
    (root / "dynamic" / "more" / "c.toml").write_text(
        '[[tls.certificates]]\n  certFile = "/etc/traefik/certs/c.pem"\n'
        '  keyFile = "/etc/traefik/certs/c.key"\n')
    (root / "dynamic" / "more" / "d.json").write_text(json.dumps(
        {"tls": {"certificates": [{"certFile": "/etc/traefik/certs/d.pem"}]}}))
    (root / "dynamic" / "more" / "broken.yml").write_text("tls: [unclosed\n")
    (root / "dynamic" / "notes.txt").write_text("certFile: /not/read.pem\n")


def test_traefik_follows_the_file_provider(tmp_path) -> None:
    _traefik_tree(tmp_path)
    findings = confparse.traefik_uses([str(tmp_path / "traefik.yml")])
    assert _sites(findings) == [
        ("traefik", "/etc/traefik/certs/a.pem", "tls.certificates",
         "tls.certificates[0].certFile"),
        ("traefik", "/etc/traefik/certs/b.pem",
         "tls.certificates (stores: default, internal)",
         "tls.certificates[1].certFile"),
        ("traefik", "/etc/traefik/certs/default.pem",
         "store default (default certificate)",
         "tls.stores.default.defaultCertificate.certFile"),
        ("traefik", "/etc/traefik/certs/c.pem", "tls.certificates",
         "tls.certificates[0].certFile"),
        ("traefik", "/etc/traefik/certs/d.pem", "tls.certificates",
         "tls.certificates[0].certFile"),
    ]
    assert findings.uses[0].source == f"{tmp_path}/dynamic/tls.yml"
    (problem,) = findings.problems
    assert problem.startswith(f"The Traefik configuration {tmp_path}/dynamic/more/"
                              "broken.yml cannot be read: ")


def test_traefik_without_parsers_picks_cert_files_from_the_text(
        tmp_path, monkeypatch) -> None:
    _traefik_tree(tmp_path)
    monkeypatch.setattr(confparse, "yaml", None)
    monkeypatch.setattr(confparse, "tomllib", None)
    findings = confparse.traefik_uses([str(tmp_path / "dynamic")])
    assert sorted(u.path for u in findings.uses) == [
        "/etc/traefik/certs/a.pem", "/etc/traefik/certs/b.pem",
        "/etc/traefik/certs/c.pem", "/etc/traefik/certs/d.pem",
        "/etc/traefik/certs/default.pem",
    ]
    assert findings.problems == []


# -- Envoy ------------------------------------------------------------------

ENVOY = textwrap.dedent("""\
    static_resources:
      listeners:
        - name: https
          address:
            socket_address: {address: 0.0.0.0, port_value: 443}
          filter_chains:
            - filter_chain_match:
                server_names: [a.example.com, www.a.example.com]
              transport_socket:
                name: envoy.transport_sockets.tls
                typed_config:
                  common_tls_context:
                    tls_certificates:
                      - certificate_chain: {filename: /etc/envoy/a.pem}
                        private_key: {filename: /etc/envoy/a.key}
            - transport_socket:
                typed_config:
                  common_tls_context:
                    tls_certificate_sds_secret_configs:
                      - name: rotated
                        sds_config:
                          path_config_source: {path: sds/rotated.yaml}
                      - name: inline-only
                        sds_config: {ads: {}}
      secrets:
        - name: upstream_client
          tls_certificate:
            certificate_chain: {filename: /etc/envoy/client.pem}
            private_key: {filename: /etc/envoy/client.key}
    """)
SDS = {"resources": [{
    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
    "name": "rotated",
    "tls_certificate": {"certificate_chain": {"filename": "rotated.pem"},
                        "private_key": {"filename": "rotated.key"}},
}]}


def test_envoy_listeners_static_secrets_and_sds_files(tmp_path) -> None:
    (tmp_path / "sds").mkdir()
    (tmp_path / "sds" / "rotated.yaml").write_text(json.dumps(SDS))
    (tmp_path / "envoy.yaml").write_text(ENVOY)
    findings = confparse.envoy_uses([str(tmp_path / "envoy.yaml")])
    assert _sites(findings) == [
        ("envoy", "/etc/envoy/a.pem",
         "listener https (a.example.com, www.a.example.com)",
         "tls_certificates.certificate_chain"),
        ("envoy", f"{tmp_path}/sds/rotated.pem",
         "listener https via SDS secret rotated",
         "tls_certificate.certificate_chain"),
        ("envoy", "/etc/envoy/client.pem", "secret upstream_client",
         "tls_certificate.certificate_chain"),
    ]
    assert findings.uses[1].source == f"{tmp_path}/sds/rotated.yaml"
    assert findings.problems == []


def test_envoy_problems_are_reported(tmp_path, monkeypatch) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "envoy.yaml").write_text(ENVOY)
    findings = confparse.envoy_uses([str(tmp_path / "bad.json"),
                                     str(tmp_path / "missing.yaml")])
    assert findings.uses == []
    assert findings.problems[0].startswith(
        f"The Envoy configuration {tmp_path}/bad.json cannot be read: ")
    assert findings.problems[1] == (
        f"The Envoy configuration {tmp_path}/missing.yaml cannot be read: "
        "No such file or directory."
    )
    monkeypatch.setattr(confparse, "yaml", None)
    findings = confparse.envoy_uses([str(tmp_path / "envoy.yaml")])
    assert "PyYAML is not installed" in findings.problems[0]


@pytest.mark.parametrize("text", ["[]", "tls: 5", "tls: {certificates: {a: 1}}",
                                  "tls: {stores: [x]}", "providers: {file: 3}"])
def test_traefik_odd_shapes_are_ignored(tmp_path, text) -> None:
    (tmp_path / "odd.yml").write_text(text)
    assert confparse.traefik_uses([str(tmp_path / "odd.yml")]) == confparse.Findings()
