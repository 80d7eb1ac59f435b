# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn the certificate facts of many hosts into one fleet report.

``fleet_report`` is a pure function from the hosts' ``certfleet`` facts to a
report (a dict, written as JSON); ``fleet_report_html`` renders that report as
one self-contained HTML page: inline CSS, no scripts, no external assets, and
every value escaped. Both sort so that what expires first comes first.
"""

from __future__ import annotations

import datetime
import html

DEFAULT_TITLE = "Certificate fleet report"
DEFAULT_WARN_DAYS = 30
_SOONEST_KEYS = ("path", "subject", "not_after", "days_left", "sha256")


def _status(cert: dict, warn_days: int) -> str:
    """``error``, ``expired``, ``expiring`` (within warn_days) or ``ok``."""
    if cert.get("error") or cert.get("days_left") is None:
        return "error"
    if cert["days_left"] < 0:
        return "expired"
    return "expiring" if cert["days_left"] <= warn_days else "ok"


def _cert_key(cert: dict) -> tuple:
    return (cert.get("not_after") is None, cert.get("not_after") or "",
            cert.get("path") or "")


def _host_entry(name: str, facts: dict, warn_days: int) -> dict:
    certs = sorted((dict(c, status=_status(c, warn_days))
                    for c in facts.get("certificates") or []), key=_cert_key)
    dated = [c for c in certs if c.get("not_after")]
    problems = [p for s in facts.get("servers") or [] for p in s.get("problems") or []]
    problems += [c["error"] for c in certs if c.get("error")]
    os_info = facts.get("os") or {}
    return {
        "host": name,
        "facts_missing": False,
        "hostname": facts.get("hostname"),
        "fqdn": facts.get("fqdn"),
        "os": os_info.get("pretty_name") or os_info.get("name"),
        "architecture": facts.get("architecture"),
        "ip": facts.get("primary_ip"),
        "collection_version": (facts.get("collection") or {}).get("version"),
        "servers": [{"name": s.get("name"), "version": s.get("version")}
                    for s in facts.get("servers") or [] if s.get("installed")],
        "soonest_expiry": (
            {k: dated[0].get(k) for k in _SOONEST_KEYS} if dated else None),
        "certificates": certs,
        "problems": problems,
        "collected_at": facts.get("collected_at"),
    }


def _missing_entry(name: str) -> dict:
    return {
        "host": name, "facts_missing": True, "hostname": None, "fqdn": None,
        "os": None, "architecture": None, "ip": None, "collection_version": None,
        "servers": [], "soonest_expiry": None, "certificates": [],
        "problems": [f"No certificate facts from {name}: the host failed or was "
                     "unreachable."],
        "collected_at": None,
    }


def _host_key(entry: dict) -> tuple:
    soonest = (entry.get("soonest_expiry") or {}).get("not_after")
    return (entry["facts_missing"], soonest is None, soonest or "", entry["host"])


def fleet_report(hosts, failed=None, warn_days=DEFAULT_WARN_DAYS, now=None) -> dict:
    """Build the fleet report from ``{inventory_hostname: certfleet facts}``.

    ``hosts`` may also be a list of ``{"host": name, "facts": facts}``.
    ``failed`` names hosts that produced no facts; they are listed last.
    Hosts are sorted by their soonest expiry, and so is the fleet-wide list of
    certificates; ``status`` marks each certificate ``expired``, ``expiring``
    (at most ``warn_days`` left), ``ok`` or ``error``.
    """
    if isinstance(hosts, dict):
        pairs = list(hosts.items())
    else:
        pairs = [(h.get("host"), h.get("facts")) for h in hosts or []]
    warn_days = int(warn_days)
    entries = [_host_entry(str(n), f, warn_days) if isinstance(f, dict)
               else _missing_entry(str(n)) for n, f in pairs]
    known = {e["host"] for e in entries}
    entries += [_missing_entry(str(n)) for n in failed or [] if str(n) not in known]
    entries.sort(key=_host_key)
    certs = sorted(
        (dict(c, host=e["host"]) for e in entries for c in e["certificates"]),
        key=_cert_key)
    generated = now or datetime.datetime.now(datetime.timezone.utc).isoformat()
    return {
        "generated_at": generated,
        "warn_days": warn_days,
        "summary": {
            "hosts": len(entries),
            "hosts_without_facts": sum(e["facts_missing"] for e in entries),
            "certificates": len(certs),
            "expired": sum(c["status"] == "expired" for c in certs),
            "expiring": sum(c["status"] == "expiring" for c in certs),
            "problems": sum(len(e["problems"]) for e in entries),
        },
        "hosts": entries,
        "certificates": certs,
    }


# -- HTML -------------------------------------------------------------------

_CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #f4f6f8; color: #1d2430;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue",
    Arial, sans-serif; }
header { background: #12263a; color: #fff; padding: 22px 32px; }
header h1 { margin: 0 0 4px; font-size: 24px; font-weight: 650; }
header p { margin: 0; color: #c4d2e0; font-size: 13px; }
main { padding: 24px 32px 40px; max-width: 1500px; }
.stats { display: flex; flex-wrap: wrap; gap: 12px; margin: 0 0 24px; padding: 0;
  list-style: none; }
.stats li { background: #fff; border: 1px solid #d5dbe1; border-radius: 8px;
  padding: 10px 16px; min-width: 120px; }
.stats b { display: block; font-size: 22px; }
.stats span { color: #5a6675; font-size: 12px; text-transform: uppercase;
  letter-spacing: .04em; }
.card { background: #fff; border: 1px solid #d5dbe1; border-radius: 8px;
  padding: 16px 20px; margin: 0 0 24px; overflow-x: auto; }
h2 { margin: 0 0 12px; font-size: 19px; }
h2 small { color: #5a6675; font-weight: 400; font-size: 14px; }
.meta { margin: -4px 0 12px; color: #3d4856; font-size: 14px; }
.meta span { margin-right: 18px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 8px 10px; border-bottom: 1px solid #e6eaee;
  vertical-align: top; }
th { font-size: 12px; color: #5a6675; text-transform: uppercase;
  letter-spacing: .04em; white-space: nowrap; }
tr:last-child td { border-bottom: 0; }
a { color: #0b5cad; text-decoration: none; }
a:hover { text-decoration: underline; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12px; word-break: break-all; }
.sub { color: #5a6675; font-size: 13px; }
.pill { display: inline-block; padding: 1px 9px; border-radius: 999px;
  font-weight: 600; font-size: 12px; white-space: nowrap; }
.expired { background: #ffe3e0; color: #9f1020; }
.expiring { background: #fff1c2; color: #7a4a00; }
.ok { background: #dcf5e3; color: #14612c; }
.error, .none { background: #e8ebef; color: #4a5563; }
.problems { margin: 12px 0 0; padding: 10px 14px 10px 30px; background: #fff6f5;
  border: 1px solid #f3c6c1; border-radius: 6px; color: #7c1d14; font-size: 14px; }
.nowrap { white-space: nowrap; }
"""


def _e(value) -> str:
    """Escape any value for HTML text or a quoted attribute; None shows a dash."""
    return "\u2013" if value is None or value == "" else html.escape(str(value))


def _date(value) -> str:
    if not value:
        return _e(None)
    try:
        moment = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return _e(value)
    return _e(moment.strftime("%Y-%m-%d %H:%M UTC"))


def _days(cert: dict | None, status: str) -> str:
    if not cert or cert.get("days_left") is None:
        text = "no facts" if status == "none" else "unreadable"
        return f'<span class="pill {status}">{text}</span>'
    days = cert["days_left"]
    text = f"expired {-days} d ago" if days < 0 else f"{days} days left"
    return f'<span class="pill {_e(status)}">{_e(text)}</span>'


def _stats(summary: dict) -> str:
    items = [("hosts", "Hosts"), ("certificates", "Certificates"),
             ("expired", "Expired"), ("expiring", "Expiring soon"),
             ("problems", "Problems")]
    return '<ul class="stats">' + "".join(
        f"<li><b>{_e(summary.get(k, 0))}</b><span>{label}</span></li>"
        for k, label in items) + "</ul>"


def _servers(entry: dict) -> str:
    return ", ".join(f"{_e(s['name'])} {_e(s.get('version'))}"
                     for s in entry["servers"]) or _e(None)


def _host_rows(report: dict) -> str:
    rows = []
    for number, entry in enumerate(report["hosts"], start=1):
        soonest = entry["soonest_expiry"]
        status = "none" if entry["facts_missing"] else (
            _status(soonest, report["warn_days"]) if soonest else "ok")
        if soonest:
            expiry = (f'{_days(soonest, status)}'
                      f'<div class="sub">{_date(soonest["not_after"])}</div>'
                      f'<div class="sub">{_e(soonest["subject"])}</div>')
        elif entry["facts_missing"]:
            expiry = _days(None, status)
        else:
            expiry = '<span class="sub">no certificates</span>'
        rows.append(
            f'<tr><td><a href="#host-{number}"><b>{_e(entry["host"])}</b></a>'
            f'<div class="sub">{_e(entry["fqdn"] or entry["hostname"])}</div></td>'
            f'<td>{_e(entry["os"])}</td><td>{_e(entry["architecture"])}</td>'
            f'<td class="mono">{_e(entry["ip"])}</td><td>{_servers(entry)}</td>'
            f"<td>{expiry}</td><td>{_e(len(entry['certificates']))}</td></tr>"
        )
    return "".join(rows)


def _used_by(cert: dict) -> str:
    return "<br>".join(f"<b>{_e(u.get('server'))}</b> {_e(u.get('site'))}"
                       for u in cert.get("used_by") or [])


def _cert_rows(entry: dict) -> str:
    rows = []
    for cert in entry["certificates"]:
        if cert.get("error"):
            rows.append(
                f'<tr><td>{_days(None, "error")}</td><td colspan="4">'
                f'{_e(cert["error"])}</td><td>{_used_by(cert)}</td></tr>'
            )
            continue
        sans = ", ".join(cert.get("sans") or [])
        rows.append(
            f'<tr><td class="nowrap">{_days(cert, cert["status"])}'
            f'<div class="sub">{_date(cert.get("not_after"))}</div></td>'
            f'<td><b>{_e(cert.get("subject"))}</b>'
            f'<div class="sub">{_e(sans)}</div></td>'
            f'<td class="mono">{_e(cert.get("path"))}</td>'
            f'<td class="sub">{_e(cert.get("issuer"))}</td>'
            f'<td class="mono">{_e(cert.get("sha256"))}</td>'
            f"<td>{_used_by(cert)}</td></tr>"
        )
    return "".join(rows)


def _host_section(number: int, entry: dict) -> str:
    names = " / ".join(
        dict.fromkeys(n for n in (entry["hostname"], entry["fqdn"]) if n))
    meta = "".join(
        f"<span>{label}: <b>{value}</b></span>" for label, value in (
            ("OS", _e(entry["os"])), ("Architecture", _e(entry["architecture"])),
            ("IP", _e(entry["ip"])), ("Servers", _servers(entry)),
            ("certfleet.deploy", _e(entry["collection_version"])),
            ("Collected", _date(entry["collected_at"])))
    )
    parts = [f'<section class="card" id="host-{number}">',
             f"<h2>{_e(entry['host'])} <small>{_e(names)}</small></h2>",
             f'<p class="meta">{meta}</p>']
    if entry["certificates"]:
        parts.append(
            "<table><thead><tr><th>Expires</th><th>Subject / SANs</th><th>File</th>"
            "<th>Issuer</th><th>SHA-256</th><th>Used by</th></tr></thead>"
            f"<tbody>{_cert_rows(entry)}</tbody></table>"
        )
    elif not entry["facts_missing"]:
        parts.append('<p class="sub">No certificates configured on this host.</p>')
    if entry["problems"]:
        parts.append('<ul class="problems">' + "".join(
            f"<li>{_e(p)}</li>" for p in entry["problems"]) + "</ul>")
    parts.append("</section>")
    return "".join(parts)


def fleet_report_html(report: dict, title: str = DEFAULT_TITLE) -> str:
    """Render a ``fleet_report`` as one self-contained HTML page."""
    sections = "".join(_host_section(n, e)
                       for n, e in enumerate(report["hosts"], start=1))
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><p>Generated {_date(report['generated_at'])}"
        f" \u00b7 expiring soon means {_e(report['warn_days'])} days or fewer left"
        "</p></header><main>"
        f"{_stats(report['summary'])}"
        '<section class="card"><h2>Hosts <small>soonest expiry first</small></h2>'
        "<table><thead><tr><th>Host</th><th>OS</th><th>Arch</th><th>IP</th>"
        "<th>Servers</th><th>Soonest expiry</th><th>Certs</th></tr></thead>"
        f"<tbody>{_host_rows(report)}</tbody></table></section>"
        f"{sections}</main></body></html>\n"
    )


class FilterModule:
    """certfleet.deploy fleet report filters."""

    def filters(self):
        return {
            "fleet_report": fleet_report,
            "fleet_report_html": fleet_report_html,
        }
