"""Offline stand-in for the pip bootstrap script that ansible-test downloads.

ansible-test creates each sanity-test virtual environment without pip and
then runs a cached ``get-pip`` script inside it, passing pip-install style
arguments (``--disable-pip-version-check pip==24.2 --no-setuptools
--no-wheel``). The real script comes from a host this machine cannot reach,
so ``scripts/sanity.sh`` copies this file into ansible-test's cache instead.

It installs the pip wheel bundled with the interpreter (``ensurepip``) and
then lets that pip install the requested packages from the package index,
with the environment ansible-test set up.
"""

from __future__ import annotations

import os
import subprocess
import sys

# Options that only the real bootstrap script understands.
BOOTSTRAP_ONLY = {
    '--no-setuptools': 'setuptools',
    '--no-wheel': 'wheel',
}


def split_arguments(argv: list[str]) -> tuple[list[str], list[str]]:
    """Return the arguments for ``pip install`` and the packages to leave out."""
    install_args = [arg for arg in argv if arg not in BOOTSTRAP_ONLY]
    unwanted = [BOOTSTRAP_ONLY[arg] for arg in argv if arg in BOOTSTRAP_ONLY]
    return install_args, unwanted


def installed(name: str) -> bool:
    """Tell whether a distribution is installed in this interpreter."""
    probe = f'import importlib.metadata as m; m.distribution({name!r})'
    result = subprocess.run([sys.executable, '-c', probe], capture_output=True, check=False)
    return result.returncode == 0


def main() -> int:
    """Bootstrap pip, install what was asked for, drop what was declined."""
    install_args, unwanted = split_arguments(sys.argv[1:])
    env = dict(os.environ)

    subprocess.run([sys.executable, '-m', 'ensurepip', '--upgrade'], env=env, check=True)

    if install_args:
        command = [sys.executable, '-m', 'pip', 'install', *install_args]
        subprocess.run(command, env=env, check=True)

    # ensurepip brings setuptools with some interpreters; honour --no-setuptools.
    leftovers = [name for name in unwanted if installed(name)]
    if leftovers:
        command = [sys.executable, '-m', 'pip', 'uninstall', '-y', '-q', *leftovers]
        subprocess.run(command, env=env, check=True)

    return 0


if __name__ == '__main__':
    sys.exit(main())
