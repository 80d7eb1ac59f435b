# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which certificate files a server's configuration names, and for which site.

One reader per server, each returning ``Findings``: the certificate files the
configuration uses (``CertUse``: path, server, site, directive, where it was
found) and the problems met on the way (a missing include, a variable in a
path). Readers never open certificate files; ``discovery`` does that.

The readers follow what each server documents, not every corner of it:

- nginx: the output of ``nginx -T`` (every file nginx read, already expanded
  by nginx itself); ``include`` is resolved against that dump.
- Apache: the configuration tree from the main file, following ``Include``
  and ``IncludeOptional``; conditional sections count as active.
- HAProxy: ``crt``, ``crt-list`` and ``default-crt`` on ``bind`` lines; a
  ``crt`` directory stands for every file in it, as HAProxy loads them.
- Postfix: ``postconf -nx`` (main.cf) and ``postconf -Px`` (master.cf).
- Dovecot: ``doveconf -n``, with the block (``local_name``, ``protocol``)
  that sets each certificate.
- Traefik: ``tls.certificates`` and store default certificates in dynamic
  configuration files (YAML, TOML or JSON).
- Envoy: certificate chains in the static configuration, in static secrets
  and in SDS files that the configuration points to.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import re
import shlex
from dataclasses import dataclass, field

try:
    import yaml
except ImportError:  # configurations in JSON (or TOML) still work without it
    yaml = None

try:
    import tomllib
except ImportError:  # Python before 3.11 reads TOML through the fallback
    tomllib = None


@dataclass
class CertUse:
    """One place where a server's configuration names a certificate file."""

    server: str
    path: str
    site: str
    directive: str
    source: str = ""
    optional: bool = False

    def as_dict(self) -> dict:
        return {"server": self.server, "site": self.site,
                "directive": self.directive, "source": self.source}


@dataclass
class Findings:
    """What one reader found: certificate uses, and problems on the way."""

    uses: list[CertUse] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def extend(self, other: Findings) -> None:
        self.uses.extend(other.uses)
        self.problems.extend(other.problems)


def _resolve(path: str, base: str) -> str:
    """An absolute path: relative ones are taken from ``base``."""
    path = os.path.expanduser(path)
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(base, path))


# -- nginx ------------------------------------------------------------------

_NGINX_FILE = re.compile(r"^# configuration file (.+):$", re.M)
_NGINX_CERT_DIRECTIVES = ("ssl_certificate",)
_NGINX_SERVER_CONTEXTS = ("http", "stream", "mail")


@dataclass
class Statement:
    """An nginx directive: name, arguments, where it is, and its block."""

    name: str
    args: list[str]
    source: str
    block: list[Statement] | None = None


def split_nginx_dump(text: str) -> dict[str, str]:
    """The files of an ``nginx -T`` dump, in order, by path (main file first)."""
    files, marks = {}, list(_NGINX_FILE.finditer(text))
    for mark, following in zip(marks, marks[1:] + [None]):
        end = following.start() if following else len(text)
        files[mark.group(1)] = text[mark.end() + 1:end]
    return files


def _nginx_tokens(text: str):
    """Yield (token, line, quoted) for one nginx configuration file."""
    i, line, size = 0, 1, len(text)
    while i < size:
        char = text[i]
        if char == "\n":
            line += 1
        if char.isspace():
            i += 1
        elif char == "#":
            i = text.find("\n", i)
            i = size if i < 0 else i
        elif char in "{};":
            yield char, line, False
            i += 1
        elif char in "\"'":
            end, word = i + 1, []
            while end < size and text[end] != char:
                if text[end] == "\\" and end + 1 < size:
                    end += 1
                word.append(text[end])
                end += 1
            yield "".join(word), line, True
            line += text.count("\n", i, end)
            i = end + 1
        else:
            end = i
            while end < size and not text[end].isspace() and text[end] not in ";{}":
                if text.startswith("${", end):
                    end = text.find("}", end) + 1 or size
                else:
                    end += 1
            yield text[i:end], line, False
            i = end


def parse_nginx(text: str, name: str) -> list[Statement]:
    """Parse one nginx file into a tree of statements (no includes yet)."""
    root: list[Statement] = []
    stack, words, start = [root], [], 0
    for token, line, quoted in _nginx_tokens(text):
        if quoted or token not in ("{", "}", ";"):
            start = start or line
            words.append(token)
            continue
        if token == "}":
            if len(stack) > 1:
                stack.pop()
            words, start = [], 0
            continue
        if not words:
            continue
        statement = Statement(words[0], words[1:], f"{name}:{start}")
        stack[-1].append(statement)
        if token == "{":
            statement.block = []
            stack.append(statement.block)
        words, start = [], 0
    return root


class NginxConfig:
    """The configuration that ``nginx -T`` printed, with includes expanded."""

    def __init__(self, dump: str) -> None:
        self.files = split_nginx_dump(dump)
        self.main = next(iter(self.files), "")
        self.prefix = os.path.dirname(self.main)
        self.findings = Findings()

    def statements(self) -> list[Statement]:
        return self._expand(parse_nginx(self.files.get(self.main, ""), self.main), 0)

    def _expand(self, statements: list[Statement], depth: int) -> list[Statement]:
        result = []
        for statement in statements:
            if statement.name == "include" and statement.args and depth < 16:
                result.extend(self._include(statement, depth))
                continue
            if statement.block is not None:
                statement.block = self._expand(statement.block, depth)
            result.append(statement)
        return result

    def _include(self, statement: Statement, depth: int) -> list[Statement]:
        pattern = _resolve(statement.args[0], self.prefix)
        matched = sorted(p for p in self.files if fnmatch.fnmatchcase(p, pattern))
        found = []
        for path in matched:
            found.extend(self._expand(parse_nginx(self.files[path], path), depth + 1))
        return found

    def uses(self) -> Findings:
        """Every certificate of every TLS server block, with its site."""
        for context in self.statements():
            if context.name in _NGINX_SERVER_CONTEXTS and context.block is not None:
                self._context_uses(context)
        return self.findings

    def _context_uses(self, context: Statement) -> None:
        inherited = [s for s in context.block if s.name in _NGINX_CERT_DIRECTIVES]
        inherited_used = False
        for server in context.block:
            if server.name != "server" or server.block is None:
                continue
            own = [s for s in server.block if s.name in _NGINX_CERT_DIRECTIVES]
            if not own and not _nginx_tls(server):
                continue
            inherited_used = inherited_used or not own
            for statement in own or inherited:
                self._add(statement, _nginx_site(context.name, server))
        if inherited and not inherited_used:
            for statement in inherited:
                self._add(statement, f"{context.name} block")

    def _add(self, statement: Statement, site: str) -> None:
        if not statement.args:
            return
        path = statement.args[0]
        if "$" in path or path.startswith(("data:", "engine:", "store:")):
            self.findings.problems.append(
                f"nginx {statement.name} {path!r} at {statement.source} is not a "
                "plain file (it holds a variable or a key store reference); "
                "it is not read."
            )
            return
        self.findings.uses.append(CertUse(
            "nginx", _resolve(path, self.prefix), site, statement.name,
            statement.source,
        ))


def _nginx_tls(server: Statement) -> bool:
    """A server block that accepts TLS: ``listen ... ssl`` or ``ssl on``."""
    for statement in server.block or []:
        if statement.name == "listen" and "ssl" in statement.args[1:]:
            return True
        if statement.name == "ssl" and statement.args[:1] == ["on"]:
            return True
    return False


def _nginx_site(context: str, server: Statement) -> str:
    """A server block's name: its server_name values, else its listen address."""
    names, listens = [], []
    for statement in server.block or []:
        if statement.name == "server_name":
            names.extend(a for a in statement.args if a not in ("_", '""', ""))
        elif statement.name == "listen" and statement.args:
            listens.append(statement.args[0])
    if names:
        return " ".join(names)
    where = ", ".join(listens) or "default"
    return f"{context} server on {where}" if context != "http" else f"listen {where}"


def nginx_uses(dump: str) -> Findings:
    """Certificates in the configuration that ``nginx -T`` printed."""
    config = NginxConfig(dump)
    if not config.files:
        return Findings(problems=[
            "The nginx configuration dump holds no '# configuration file' "
            "sections; is the command `nginx -T`?"
        ])
    return config.uses()


# -- Apache httpd -----------------------------------------------------------

_APACHE_CERT_DIRECTIVES = ("sslcertificatefile", "sslcertificatechainfile")
_APACHE_VARIABLE = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


@dataclass
class _VirtualHost:
    address: str
    names: list[str] = field(default_factory=list)
    certs: list[tuple] = field(default_factory=list)
    tls: bool = False


class ApacheConfig:
    """An Apache httpd configuration tree read from its main file."""

    def __init__(self, main: str, server_root: str | None = None,
                 environ: dict | None = None) -> None:
        self.main = main
        self.server_root = server_root or os.path.dirname(os.path.abspath(main))
        self.root_given = server_root is not None
        self.variables = dict(os.environ if environ is None else environ)
        self.findings = Findings()
        self.main_certs: list[tuple] = []
        self.hosts: list[_VirtualHost] = []
        self._current: _VirtualHost | None = None

    def _substitute(self, text: str) -> str:
        return _APACHE_VARIABLE.sub(
            lambda m: self.variables.get(m.group(1), m.group(0)), text
        )

    def _lines(self, path: str):
        """Yield (directive, args, source) with continuation lines joined."""
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        logical, start = "", 0
        for number, raw in enumerate(text.splitlines(), start=1):
            start = start or number
            if raw.rstrip().endswith("\\"):
                logical += raw.rstrip()[:-1] + " "
                continue
            line, logical = (logical + raw).strip(), ""
            source, start = f"{path}:{start}", 0
            if not line or line.startswith("#"):
                continue
            try:
                words = shlex.split(self._substitute(line), posix=True)
            except ValueError:
                words = self._substitute(line).split()
            if words:
                yield words[0], words[1:], source

    def read(self, path: str, depth: int = 0) -> None:
        for directive, args, source in self._lines(path):
            self._directive(directive, args, source, depth)

    def _directive(self, directive: str, args: list, source: str, depth: int) -> None:
        name = directive.lower()
        if name == "serverroot" and args and not self.root_given:
            self.server_root = args[0]
        elif name == "define" and args:
            self.variables[args[0]] = args[1] if len(args) > 1 else ""
        elif name in ("include", "includeoptional") and args and depth < 16:
            self._include(name, args[0], source, depth)
        elif name.startswith("<virtualhost"):
            self._current = _VirtualHost(" ".join(args).rstrip(">"))
        elif name == "</virtualhost>" and self._current is not None:
            self.hosts.append(self._current)
            self._current = None
        elif name in ("servername", "serveralias") and self._current and args:
            self._current.names.extend(args)
        elif name == "sslengine" and self._current and args:
            self._current.tls = args[0].lower() == "on"
        elif name in _APACHE_CERT_DIRECTIVES and args:
            target = self._current.certs if self._current else self.main_certs
            target.append((directive, args[0], source))

    def _include(self, name: str, pattern: str, source: str, depth: int) -> None:
        pattern = _resolve(pattern, self.server_root)
        paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if len(paths) == 1 and os.path.isdir(paths[0]):
            # Include of a directory reads every file in it, in order.
            paths = sorted(p for p in glob.glob(os.path.join(paths[0], "*"))
                           if not os.path.isdir(p))
        for path in paths:
            try:
                self.read(path, depth + 1)
            except OSError as exc:
                if name == "include":
                    self.findings.problems.append(
                        f"Apache Include {pattern} at {source} cannot be read: "
                        f"{exc.strerror}."
                    )

    def uses(self) -> Findings:
        """Every certificate of every virtual host, and of the main server."""
        self.read(self.main)
        main_used = False
        for host in self.hosts:
            certs = host.certs or (self.main_certs if host.tls else [])
            main_used = main_used or (host.tls and not host.certs)
            site = " ".join(host.names) or host.address
            if host.names:
                site = f"{site} ({host.address})"
            for directive, path, source in certs:
                self._add(directive, path, source, site)
        if self.main_certs and not main_used:
            for directive, path, source in self.main_certs:
                self._add(directive, path, source, "main server")
        return self.findings

    def _add(self, directive: str, path: str, source: str, site: str) -> None:
        self.findings.uses.append(CertUse(
            "apache", _resolve(path, self.server_root), site, directive, source,
        ))


def apache_uses(main: str, server_root: str | None = None,
                environ: dict | None = None) -> Findings:
    """Certificates in the Apache configuration tree that starts at ``main``."""
    config = ApacheConfig(main, server_root, environ)
    try:
        return config.uses()
    except OSError as exc:
        config.findings.problems.append(
            f"The Apache configuration {main} cannot be read: {exc.strerror}."
        )
        return config.findings


# -- HAProxy ----------------------------------------------------------------

_HAPROXY_SECTIONS = (
    "global", "defaults", "frontend", "backend", "listen", "peers", "resolvers",
    "userlist", "program", "http-errors", "ring", "cache", "mailers",
)
_HAPROXY_CERT_KEYWORDS = ("crt", "default-crt")
# Files HAProxy itself skips when it loads a crt directory.
_HAPROXY_SIDE_FILES = (".key", ".ocsp", ".issuer", ".sctl")


class HaproxyConfig:
    """HAProxy configuration files and the certificates their binds load."""

    def __init__(self) -> None:
        self.findings = Findings()
        self.crt_base = ""
        self.section = ("", "")

    def read(self, path: str) -> None:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
        for number, line in enumerate(lines, start=1):
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                words = line.split("#", 1)[0].split()
            if words:
                self._line(words, f"{path}:{number}", os.path.dirname(path))

    def _line(self, words: list, source: str, directory: str) -> None:
        if words[0] in _HAPROXY_SECTIONS:
            self.section = (words[0], words[1] if len(words) > 1 else "")
        elif words[0] == "crt-base" and len(words) > 1:
            self.crt_base = words[1]
        elif words[0] == "bind" and self.section[0] in ("frontend", "listen"):
            address = words[1] if len(words) > 1 else ""
            site = f"{self.section[0]} {self.section[1]} (bind {address})"
            base = self.crt_base or directory
            for keyword, value in zip(words, words[1:]):
                if keyword in _HAPROXY_CERT_KEYWORDS:
                    self._crt(_resolve(value, base), site, keyword, source)
                elif keyword == "crt-list":
                    self._crt_list(_resolve(value, base), site, source, base)

    def _crt(self, path: str, site: str, keyword: str, source: str) -> None:
        if not os.path.isdir(path):
            self.findings.uses.append(CertUse("haproxy", path, site, keyword, source))
            return
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            if os.path.isdir(full) or name.endswith(_HAPROXY_SIDE_FILES):
                continue
            self.findings.uses.append(
                CertUse("haproxy", full, site, f"{keyword} {path}/", source)
            )

    def _crt_list(self, path: str, site: str, source: str, base: str) -> None:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                lines = handle.read().splitlines()
        except OSError as exc:
            self.findings.problems.append(
                f"HAProxy crt-list {path} at {source} cannot be read: {exc.strerror}."
            )
            return
        for number, line in enumerate(lines, start=1):
            # path [ssl options] [sni filters]
            words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
            if words:
                filters = words[1:]
                where = f"{site} sni {' '.join(filters)}" if filters else site
                self._crt(_resolve(words[0], base), where, "crt-list",
                          f"{path}:{number}")


def haproxy_uses(paths: list[str]) -> Findings:
    """Certificates loaded by the binds of HAProxy configuration files.

    A directory among ``paths`` stands for its ``*.cfg`` files, in order, as
    ``haproxy -f DIR`` reads them.
    """
    config = HaproxyConfig()
    for path in paths:
        files = sorted(glob.glob(os.path.join(path, "*.cfg"))) \
            if os.path.isdir(path) else [path]
        for name in files:
            try:
                config.read(name)
            except OSError as exc:
                config.findings.problems.append(
                    f"The HAProxy configuration {name} cannot be read: {exc.strerror}."
                )
    return config.findings


# -- Postfix ----------------------------------------------------------------

_POSTFIX_CERT_PARAMETERS = {
    "smtpd_tls_cert_file": "smtpd",
    "smtpd_tls_eccert_file": "smtpd",
    "smtpd_tls_dcert_file": "smtpd",
    "smtpd_tls_chain_files": "smtpd",
    "smtp_tls_cert_file": "smtp client",
    "smtp_tls_eccert_file": "smtp client",
    "smtp_tls_dcert_file": "smtp client",
    "smtp_tls_chain_files": "smtp client",
}


def _postfix_parameters(text: str):
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            yield name.strip(), value.strip()


def _postfix_add(findings: Findings, parameter: str, value: str, site: str,
                 source: str) -> None:
    chain_files = parameter.endswith("chain_files")
    for path in re.split(r"[\s,]+", value):
        if path:
            findings.uses.append(CertUse(
                "postfix", path, site, parameter, source, optional=chain_files,
            ))


def postfix_uses(main: str, master: str, config_dir: str = "") -> Findings:
    """Certificates of ``postconf -nx`` (main.cf) and ``postconf -Px`` output.

    A ``*_chain_files`` list may name key files too; those are marked
    optional, so a file without a certificate in it is not a problem.
    """
    findings = Findings()
    main_cf = os.path.join(config_dir, "main.cf") if config_dir else "main.cf"
    master_cf = os.path.join(config_dir, "master.cf") if config_dir else "master.cf"
    for name, value in _postfix_parameters(main):
        if name in _POSTFIX_CERT_PARAMETERS:
            _postfix_add(findings, name, value, _POSTFIX_CERT_PARAMETERS[name], main_cf)
    for name, value in _postfix_parameters(master):
        service, _slash, parameter = name.rpartition("/")
        if parameter in _POSTFIX_CERT_PARAMETERS and service:
            _postfix_add(findings, parameter, value, f"service {service}", master_cf)
    return findings


# -- Dovecot ----------------------------------------------------------------

_DOVECOT_CERT_SETTINGS = (
    "ssl_cert", "ssl_alt_cert", "ssl_server_cert_file", "ssl_server_alt_cert_file",
)


def dovecot_uses(text: str, config: str = "") -> Findings:
    """Certificates in ``doveconf -n`` output, with the block that sets each.

    Dovecot 2.3 writes ``ssl_cert = </path`` (the ``<`` reads the file);
    2.4 names the file in ``ssl_server_cert_file``.
    """
    findings, blocks = Findings(), []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("{"):
            blocks.append(line[:-1].strip())
            continue
        if line == "}":
            blocks = blocks[:-1]
            continue
        name, sep, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if sep and name in _DOVECOT_CERT_SETTINGS and value and value[0] != "#":
            findings.uses.append(CertUse(
                "dovecot", value.lstrip("<").strip(), " / ".join(blocks) or "global",
                name, config,
            ))
    return findings


# -- Traefik and Envoy: structured files --------------------------------------

_STRUCTURED = (".yml", ".yaml", ".toml", ".json")
_TRAEFIK_CERT_FILE = re.compile(r"""\bcertFile\s*[:=]\s*["']?([^"'\s#,}]+)""")


def load_structured(path: str):
    """Parse a YAML, TOML or JSON file by its name; ``None`` if no parser.

    Raises ``ValueError`` (and ``OSError``) for files that cannot be read.
    """
    with open(path, "rb") as handle:
        data = handle.read()
    if path.endswith(".json"):
        return json.loads(data)
    if path.endswith(".toml"):
        return tomllib.loads(data.decode("utf-8")) if tomllib else None
    if yaml is None:
        return None
    try:
        return yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc).splitlines()[0]) from None


def _structured_files(paths: list[str]) -> list[str]:
    found = []
    for path in paths:
        if not os.path.isdir(path):
            found.append(path)
            continue
        for directory, _subdirs, names in sorted(os.walk(path)):
            found.extend(os.path.join(directory, n) for n in sorted(names)
                         if n.endswith(_STRUCTURED))
    return found


def _get(node, *keys):
    """``node[k1][k2]...`` through dictionaries, or None."""
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _traefik_document(findings: Findings, data, path: str) -> None:
    entries = _get(data, "tls", "certificates")
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        cert = _get(entry, "certFile")
        if isinstance(cert, str):
            in_stores = _get(entry, "stores") or []
            site = "tls.certificates" + (
                f" (stores: {', '.join(str(s) for s in in_stores)})"
                if isinstance(in_stores, list) and in_stores else "")
            findings.uses.append(CertUse(
                "traefik", cert, site, f"tls.certificates[{index}].certFile", path,
            ))
    stores = _get(data, "tls", "stores")
    for name, store in (stores.items() if isinstance(stores, dict) else []):
        cert = _get(store, "defaultCertificate", "certFile")
        if isinstance(cert, str):
            findings.uses.append(CertUse(
                "traefik", cert, f"store {name} (default certificate)",
                f"tls.stores.{name}.defaultCertificate.certFile", path,
            ))


def traefik_uses(paths: list[str]) -> Findings:
    """Certificates in Traefik configuration files or directories.

    A static configuration among them leads on to the dynamic configuration
    its file provider names (``providers.file.filename`` or ``directory``).
    Without a parser for a file's format (PyYAML on the host, Python 3.11 for
    TOML) the ``certFile`` values are picked out of the text.
    """
    findings, queue, seen = Findings(), _structured_files(paths), set()
    while queue:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        try:
            data = load_structured(path)
            if data is None:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    text = handle.read()
                findings.uses.extend(
                    CertUse("traefik", cert, "tls", "certFile", path)
                    for cert in _TRAEFIK_CERT_FILE.findall(text)
                )
                continue
        except (OSError, ValueError) as exc:
            findings.problems.append(_unreadable("Traefik", path, exc))
            continue
        linked = [_get(data, "providers", "file", k) for k in ("filename", "directory")]
        queue.extend(_structured_files([
            _resolve(p, os.path.dirname(path)) for p in linked if isinstance(p, str)
        ]))
        _traefik_document(findings, data, path)
    return findings


def _unreadable(server: str, path: str, exc: Exception) -> str:
    cause = exc.strerror if isinstance(exc, OSError) else str(exc)
    return f"The {server} configuration {path} cannot be read: {cause}."


class EnvoyConfig:
    """Certificate chains named by an Envoy configuration and its SDS files."""

    def __init__(self) -> None:
        self.findings = Findings()
        self.seen: set[str] = set()

    def read(self, path: str, site: str = "", depth: int = 0) -> None:
        if path in self.seen or depth > 4:
            return
        self.seen.add(path)
        try:
            data = load_structured(path)
        except (OSError, ValueError) as exc:
            self.findings.problems.append(_unreadable("Envoy", path, exc))
            return
        if data is None:
            self.findings.problems.append(
                f"The Envoy configuration {path} is YAML, and PyYAML is not "
                "installed on this host to read it."
            )
            return
        self._walk(data, site, path, depth)

    def _walk(self, node, site: str, path: str, depth: int) -> None:
        if isinstance(node, list):
            for item in node:
                self._walk(item, site, path, depth)
            return
        if not isinstance(node, dict):
            return
        site = self._site(node, site)
        chain = _get(node, "tls_certificate", "certificate_chain", "filename")
        if isinstance(chain, str):
            self._add(chain, site, "tls_certificate", path)
        for entry in node.get("tls_certificates") or []:
            chain = _get(entry, "certificate_chain", "filename")
            if isinstance(chain, str):
                self._add(chain, site, "tls_certificates", path)
        for entry in node.get("tls_certificate_sds_secret_configs") or []:
            sds = _get(entry, "sds_config", "path_config_source", "path") or \
                _get(entry, "sds_config", "path")
            if isinstance(sds, str):
                name = _get(entry, "name") or "?"
                self.read(_resolve(sds, os.path.dirname(path)),
                          f"{site} via SDS secret {name}".strip(), depth + 1)
        for key, value in node.items():
            if key not in ("tls_certificate", "tls_certificates"):
                self._walk(value, site, path, depth)

    @staticmethod
    def _site(node: dict, site: str) -> str:
        name = node.get("name")
        if isinstance(name, str) and "filter_chains" in node:
            return f"listener {name}"
        if isinstance(name, str) and "tls_certificate" in node and not site:
            return f"secret {name}"
        names = _get(node, "filter_chain_match", "server_names")
        if isinstance(names, list) and names:
            return f"{site} ({', '.join(str(n) for n in names)})".strip()
        return site

    def _add(self, chain: str, site: str, directive: str, path: str) -> None:
        self.findings.uses.append(CertUse(
            "envoy", _resolve(chain, os.path.dirname(path)), site or "static",
            f"{directive}.certificate_chain", path,
        ))


def envoy_uses(paths: list[str]) -> Findings:
    """Certificates in Envoy configuration files (YAML or JSON) and SDS files."""
    config = EnvoyConfig()
    for path in paths:
        config.read(path)
    return config.findings
