# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception tree of the engine.

Helpers raise these; only a module's ``main()`` turns them into ``fail_json``.
Every error carries a sentence-case message that names the problem, the object
and the cause, plus optional structured detail for the result.
"""

from __future__ import annotations


class DeployError(Exception):
    """Base of every error the engine raises on purpose."""

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class MaterialError(DeployError):
    """The certificate, chain or key given is unusable; nothing was touched."""


class LockError(DeployError):
    """Another run holds the target's lock past the timeout."""


class TransactionError(DeployError):
    """A file operation of the swap failed (files are restored before raising)."""


class CommandError(DeployError):
    """A config-test or reload command failed, timed out or could not start."""


class ProbeError(DeployError):
    """The TLS endpoint could not be reached or did not complete a handshake."""


class VerifyError(DeployError):
    """The endpoint answered, but did not serve the expected certificate."""


class NotifyError(DeployError):
    """A notification could not be delivered: refused, timed out or rejected."""
