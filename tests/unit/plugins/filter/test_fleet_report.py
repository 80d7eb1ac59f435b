"""The fleet report filters: order, status, counts, and a page that is safe.

The input is what ``certificate_facts`` returns per host, trimmed to the keys
the report reads.
"""

from __future__ import annotations

import html.parser
import re

import pytest

from ansible_collections.certfleet.deploy.plugins.filter.fleet_report import (
    FilterModule,
    fleet_report,
    fleet_report_html,
)

NOW = "2026-12-04T12:00:00+00:00"


def cert(path, not_after, days_left, sha="0" * 64, subject="CN=x", error=None,
         used_by=None) -> dict:
    return {"path": path, "not_after": not_after, "days_left": days_left,
            "sha256": sha if not error else None, "subject": subject,
            "sans": ["x.example"], "issuer": "CN=CA", "error": error,
            "used_by": used_by or [{"server": "nginx", "site": "x.example"}]}


def facts(hostname, certs, servers=None) -> dict:
    return {
        "hostname": hostname, "fqdn": f"{hostname}.example.net",
        "os": {"pretty_name": "Debian GNU/Linux 12 (bookworm)"},
        "architecture": "x86_64", "primary_ip": "192.0.2.7",
        "collection": {"version": "0.1.0"},
        "servers": servers if servers is not None else [
            {"name": "nginx", "installed": True, "version": "1.22.1", "problems": []},
            {"name": "apache", "installed": False, "version": None, "problems": []},
        ],
        "certificates": certs, "collected_at": NOW,
    }


FLEET = {
    "late": facts("late", [cert("/l.pem", "2027-06-01T00:00:00+00:00", 178)]),
    "soon": facts("soon", [
        cert("/broken.pem", None, None, error="Certificate file /broken.pem holds "
             "no PEM data."),
        cert("/s2.pem", "2027-01-01T00:00:00+00:00", 27, sha="2" * 64),
        cert("/s1.pem", "2026-12-01T00:00:00+00:00", -3, sha="1" * 64),
    ]),
    "empty": facts("empty", [], servers=[
        {"name": "postfix", "installed": True, "version": "3.7.11",
         "problems": ["The configuration query failed for postfix: boom"]},
    ]),
}


def test_hosts_and_certificates_soonest_first() -> None:
    report = fleet_report(FLEET, failed=["gone"], warn_days=30, now=NOW)
    assert [h["host"] for h in report["hosts"]] == ["soon", "late", "empty", "gone"]
    soon = report["hosts"][0]
    assert [c["path"] for c in soon["certificates"]] == [
        "/s1.pem", "/s2.pem", "/broken.pem"]
    assert [c["status"] for c in soon["certificates"]] == [
        "expired", "expiring", "error"]
    assert soon["soonest_expiry"] == {
        "path": "/s1.pem", "subject": "CN=x", "not_after": "2026-12-01T00:00:00+00:00",
        "days_left": -3, "sha256": "1" * 64,
    }
    assert soon["servers"] == [{"name": "nginx", "version": "1.22.1"}]
    assert soon["problems"] == ["Certificate file /broken.pem holds no PEM data."]
    assert report["hosts"][2]["problems"] == [
        "The configuration query failed for postfix: boom"]
    gone = report["hosts"][3]
    assert gone["facts_missing"] is True and gone["certificates"] == []
    assert [(c["host"], c["path"]) for c in report["certificates"]] == [
        ("soon", "/s1.pem"), ("soon", "/s2.pem"), ("late", "/l.pem"),
        ("soon", "/broken.pem"),
    ]
    assert report["summary"] == {"hosts": 4, "hosts_without_facts": 1,
                                 "certificates": 4, "expired": 1, "expiring": 1,
                                 "problems": 3}
    assert report["generated_at"] == NOW and report["warn_days"] == 30


def test_warn_days_decides_what_is_expiring() -> None:
    report = fleet_report(FLEET, warn_days="200", now=NOW)
    assert report["summary"]["expiring"] == 2
    assert report["hosts"][1]["certificates"][0]["status"] == "expiring"
    report = fleet_report(FLEET, warn_days=0, now=NOW)
    assert report["summary"]["expiring"] == 0


def test_list_input_and_hosts_without_facts() -> None:
    report = fleet_report([{"host": "a", "facts": FLEET["late"]},
                           {"host": "b", "facts": None}], failed=["b", "c"])
    assert [(h["host"], h["facts_missing"]) for h in report["hosts"]] == [
        ("a", False), ("b", True), ("c", True)]
    assert re.match(r"\d{4}-\d\d-\d\dT", report["generated_at"])
    assert fleet_report({})["summary"]["hosts"] == 0


def test_filters_are_registered() -> None:
    assert FilterModule().filters() == {"fleet_report": fleet_report,
                                        "fleet_report_html": fleet_report_html}


class _Checker(html.parser.HTMLParser):
    """Records tags, attributes and text; checks that elements nest."""

    VOID = {"meta", "br", "link", "img", "hr", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack, self.tags, self.attrs, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag) -> None:
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()

    def handle_data(self, data) -> None:
        if data.strip() and self.stack[-1:] != ["style"]:
            self.text.append(data.strip())


def _page(report, **kwargs) -> _Checker:
    page = fleet_report_html(report, **kwargs)
    assert page.startswith("<!DOCTYPE html>\n")
    assert "url(" not in page and "@import" not in page
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
    return checker


def test_page_is_self_contained_and_sorted() -> None:
    checker = _page(fleet_report(FLEET, failed=["gone"], now=NOW), title="Our TLS")
    assert "script" not in checker.tags and "link" not in checker.tags
    assert "img" not in checker.tags
    for name, value in checker.attrs:
        assert not (value or "").startswith(("http:", "https:", "//")), (name, value)
    text = checker.text
    assert text[:2] == ["Our TLS", "Our TLS"]
    hosts = [t for t in text if t in ("soon", "late", "empty", "gone")]
    assert hosts[:4] == ["soon", "late", "empty", "gone"]
    pills = [t for t in text if re.fullmatch(
        r"\d+ days left|expired \d+ d ago|no facts|unreadable", t)]
    assert pills == [
        # The hosts table: each host's soonest expiry.
        "expired 3 d ago", "178 days left", "no facts",
        # The host sections, certificates soonest first, unreadable ones last.
        "expired 3 d ago", "27 days left", "unreadable", "178 days left",
    ]
    assert "Certificate file /broken.pem holds no PEM data." in text
    assert "No certificates configured on this host." in text
    assert "2026-12-01 00:00 UTC" in text


def test_page_escapes_every_value() -> None:
    evil = '<script>alert("x")</script>'
    hostile = facts(evil, [cert(f"/{evil}.pem", "2027-01-01T00:00:00+00:00", 20,
                                subject=f"CN={evil},O=A&B",
                                used_by=[{"server": evil, "site": f"'{evil}'"}])],
                    servers=[{"name": evil, "installed": True, "version": evil,
                              "problems": [evil]}])
    hostile["os"] = {"pretty_name": evil}
    hostile["primary_ip"] = evil
    report = fleet_report({evil: hostile}, failed=[f"{evil}2"], now=NOW)
    page = fleet_report_html(report, title=evil)
    assert "<script" not in page
    assert page.count("&lt;script&gt;") >= 10
    checker = _page(report, title=evil)
    assert "script" not in checker.tags
    assert f"CN={evil},O=A&B" in checker.text


@pytest.mark.parametrize("value,shown",
                         [("not a date", "not a date"), (None, "\u2013")])
def test_odd_dates_are_shown_as_they_are(value, shown) -> None:
    report = fleet_report({"h": facts("h", [])}, now=NOW)
    report["generated_at"] = value
    assert f"Generated {shown}" in fleet_report_html(report)
