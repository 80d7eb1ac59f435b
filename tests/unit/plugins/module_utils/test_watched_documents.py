"""The documents the watched-server modules write, checked by their readers.

The YAML emitter is read back with PyYAML (the reader the test suite has;
Traefik's own reader is exercised by the integration tests); the SDS resource
and Envoy bootstraps are parsed with Envoy's API definitions from xds-protos.
"""

from __future__ import annotations

import pytest
import yaml

from ansible_collections.certfleet.deploy.plugins.module_utils import envoy, traefik
from ansible_collections.certfleet.deploy.plugins.module_utils.emit import (
    json_document,
    yaml_document,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    DeployError,
)
from tests.support import envoy as real_envoy

TRICKY = ["yes", "no", "null", "~", "1e3", "0o17", "- dash", "a: b", "# hash",
          "tab\there", "quote \" and \\ slash", "ünïcödé", "{{ template }}",
          "line\nbreak", "", " padded ", "@at", "*star", "&amp", "!bang"]


@pytest.mark.parametrize("value", TRICKY)
def test_every_string_reads_back_as_the_same_string(value: str) -> None:
    data = {"tls": {"certificates": [{"certFile": value, "keyFile": value}]},
            value or "empty": [value, {"k": value}]}
    assert yaml.safe_load(yaml_document(data)) == data


def test_nesting_empty_containers_and_scalars_read_back() -> None:
    data = {"a": {"b": {"c": [1, True, False, "x"]}}, "empty": {}, "none": [],
            "lists": [[1, 2], [], [{"x": "y"}]], "@type": "t"}
    text = yaml_document(data, "first line\nsecond line").decode()
    assert text.startswith("# first line\n# second line\n")
    assert yaml.safe_load(text) == data


def test_unsupported_values_are_refused() -> None:
    with pytest.raises(DeployError, match="Cannot write float"):
        yaml_document({"x": 1.5})


def test_json_document_is_json() -> None:
    assert yaml.safe_load(json_document({"a": ["b"]})) == {"a": ["b"]}


# -- Traefik ----------------------------------------------------------------------

def test_traefik_config_lists_the_pair_and_optionally_the_default() -> None:
    plain = yaml.safe_load(traefik.config_document("/c/x.crt", "/c/x.key", False))
    assert plain == {"tls": {"certificates": [
        {"certFile": "/c/x.crt", "keyFile": "/c/x.key"}]}}
    default = yaml.safe_load(traefik.config_document("/c/x.crt", "/c/x.key", True))
    assert default["tls"]["stores"]["default"]["defaultCertificate"] == {
        "certFile": "/c/x.crt", "keyFile": "/c/x.key"}


@pytest.mark.parametrize("text, found", [
    ('certFile: "/a b/\\"c\\".crt"\nkeyFile: /k.key\n', ['/a b/"c".crt', "/k.key"]),
    ("- certFile: '/s q.crt'\n  keyFile: '/s q.key'\n", ["/s q.crt", "/s q.key"]),
    ('[[tls.certificates]]\n  certFile = "/t.crt"\n  keyFile = "/t.key"\n',
     ["/t.crt", "/t.key"]),
    ("{certFile: /f.crt, keyFile: /f.key}", ["/f.crt", "/f.key"]),
])
def test_traefik_references_are_found_in_yaml_and_toml(text, found) -> None:
    assert traefik.referenced_files(text) == found


# -- Envoy --------------------------------------------------------------------------

def sds() -> dict:
    return envoy.sds_document("site_cert", "/w/current/cert.pem",
                              "/w/current/key.pem", "/w")


def test_sds_resource_passes_envoys_api_definitions() -> None:
    assert envoy.check_against_api(sds(), "sds") == "passed (xds-protos)"
    written = yaml.safe_load(yaml_document(sds()))
    assert envoy.check_against_api(written, "sds") == "passed (xds-protos)"


@pytest.mark.parametrize("change, words", [
    (lambda r: r["tls_certificate"].update(watch_dir={"path": "/w"}),
     "does not match Envoy's API"),
    (lambda r: r.update({"@type": "type.googleapis.com/no.such.Type"}),
     "does not match Envoy's API"),
    (lambda r: r["tls_certificate"]["private_key"].update(filename=["/k"]),
     "does not match Envoy's API"),
    (lambda r: r.update(name=""), "has no name"),
])
def test_broken_sds_resources_are_refused(change, words) -> None:
    document = sds()
    change(document["resources"][0])
    with pytest.raises(DeployError, match=words):
        envoy.check_against_api(document, "sds")


def test_validation_bootstrap_passes_envoys_api_definitions() -> None:
    bootstrap = envoy.validation_bootstrap("/s/cert.stage", "/s/key.stage")
    assert envoy.check_against_api(bootstrap, "bootstrap").startswith("passed")


def test_the_test_harness_bootstrap_passes_envoys_api_definitions() -> None:
    """The config tests/support/envoy.py gives a real Envoy is valid too."""
    bootstrap = real_envoy.bootstrap("/d/sds/site.yaml", "site_cert", 8443, 9901)
    assert envoy.check_against_api(bootstrap, "bootstrap").startswith("passed")


def test_without_xds_protos_the_check_says_it_was_skipped(monkeypatch) -> None:
    monkeypatch.setattr(envoy, "XDS_ERROR", "xds-protos is not installed (x)")
    assert envoy.check_against_api({"resources": [{"bogus": 1}]}) == (
        "skipped: xds-protos is not installed (x)")
