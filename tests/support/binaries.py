"""Skip a test whose server binary is missing, or fail it under CI.

In CI the Makefile installs every server the suite runs, so a missing binary
there is a broken setup: the test fails instead of silently skipping.
"""

from __future__ import annotations

import os

import pytest


def require_binary(path: str, package: str) -> None:
    """Skip (or, with CI set, fail) the current test unless ``path`` runs."""
    if os.access(path, os.X_OK):
        return
    message = (
        f"{path} is missing: these tests need Debian's {package} "
        "(scripts/bootstrap.sh installs it)"
    )
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)
