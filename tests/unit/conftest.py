"""Let child Python processes of the unit tests import the collection.

Some tests run the engine in a child process (to kill it mid-transaction).
Under `make pytest` the child finds ``ansible_collections.certfleet.deploy``
through PYTHONPATH, which the Makefile sets to .build/collections. Under
``ansible-test units`` the tests run in a copy at
``<base>/ansible_collections/certfleet/deploy`` and find the collection
through ansible-test's own pytest plugin, which child processes do not get;
there, ``<base>`` is added to PYTHONPATH for them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

COLLECTION_ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:  # pylint: disable=unused-argument
    """Put the directory holding ansible_collections/ on PYTHONPATH, if needed."""
    if COLLECTION_ROOT.parent.parent.name != "ansible_collections":
        return
    base = str(COLLECTION_ROOT.parents[2])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if base not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([base, *paths])
