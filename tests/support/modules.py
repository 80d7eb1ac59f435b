"""Run a module of the collection as a real process, the way Ansible does.

The module reads its arguments as JSON on stdin and prints one JSON object
on stdout; ``failed`` is true when it called ``fail_json``. Running it as a
separate process tests the argument spec, ``main()`` and the error bridge
together, with nothing mocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / ".build" / "collections"
PACKAGE = "ansible_collections.certfleet.deploy.plugins.modules"
MODULE_TIMEOUT = 120


def run_module(name: str, args: dict, check_mode=False, diff=False) -> dict:
    """Run module ``name`` with ``args`` and return its parsed JSON result.

    ``check_mode`` and ``diff`` become ``_ansible_check_mode`` and
    ``_ansible_diff``, as the controller would send them. Output that is not
    one JSON object (a traceback, say) fails with stdout and stderr shown.
    """
    if not (COLLECTIONS / "ansible_collections").is_dir():
        raise RuntimeError(
            f"{COLLECTIONS} is missing: run `bash scripts/bootstrap.sh` first"
        )
    module_args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    path = [str(COLLECTIONS)]
    if os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    proc = subprocess.run(
        [sys.executable, "-m", f"{PACKAGE}.{name}"],
        input=json.dumps({"ANSIBLE_MODULE_ARGS": module_args}),
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(path)),
        timeout=MODULE_TIMEOUT,
        check=False,
    )
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(
            f"Module {name} exited {proc.returncode} without a JSON result.\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        ) from None
    if not isinstance(result, dict):
        raise AssertionError(f"Module {name} printed {result!r}, not an object")
    return result
