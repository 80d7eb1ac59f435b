"""Fixtures and markers shared by the whole test suite.

``tests`` is a package (it has ``__init__.py``), so pytest puts the repo
root on ``sys.path`` and tests import helpers as ``tests.support.pki``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import nginx as nginx_support
from tests.support.nginx import Nginx
from tests.support.pki import PKI

MISSING_NGINX = (
    f"{nginx_support.NGINX_BINARY} is missing: integration tests need Debian's "
    "nginx (scripts/bootstrap.sh installs it)"
)


INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers this suite uses."""
    config.addinivalue_line(
        "markers",
        "integration: starts real servers on loopback; skipped when the server "
        "binary is missing, except under CI=true, where that fails the test",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration as ``integration``."""
    for item in items:
        if INTEGRATION_DIR in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


def require_nginx() -> None:
    """Skip the current test when nginx is not installed.

    In CI the Makefile installs nginx, so a missing binary there is a broken
    setup: the test fails instead of silently skipping.
    """
    if os.access(nginx_support.NGINX_BINARY, os.X_OK):
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(MISSING_NGINX)
    pytest.skip(MISSING_NGINX)


@pytest.fixture(autouse=True)
def _require_servers(request: pytest.FixtureRequest) -> None:
    """Apply ``require_nginx`` to every test marked ``integration``."""
    if request.node.get_closest_marker("integration") is not None:
        require_nginx()


@pytest.fixture(scope="session")
def pki() -> PKI:
    """One PKI for the whole session; its CA keys and standard leaves are cached."""
    return PKI()


@pytest.fixture(scope="session", autouse=True)
def _stop_leftover_servers() -> Iterator[None]:
    """At the end of the session, stop any nginx a test forgot to stop."""
    yield
    nginx_support.stop_all()


@pytest.fixture
def nginx_site(tmp_path: Path, pki: PKI) -> Iterator[Nginx]:
    """A started nginx serving ``pki.rsa`` from tmp_path/live.

    The live files are ``fullchain.pem`` (0644) and ``privkey.pem`` (0600),
    the layout the nginx module deploys to.
    """
    require_nginx()
    paths = pki.rsa.write(tmp_path / "live")
    server = Nginx(tmp_path / "nginx", paths["fullchain"], paths["privkey"])
    server.start()
    try:
        yield server
    finally:
        server.stop()
