# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apache httpd: what its certificate files hold.

Apache 2.4.8 and later send everything ``SSLCertificateFile`` holds, leaf
first, so one file with the leaf and its intermediates is the default. Older
setups name the intermediates in ``SSLCertificateChainFile`` as well; Apache
then sends both files, so with ``chain_path`` the certificate file holds the
leaf alone and no certificate is ever sent twice.

A graceful restart that exits 0 can still stop Apache for good (F06: a key
that does not match its certificate is only noticed when the new
configuration is loaded). The engine's verification notices the dead server
and rolls back; ``apachectl graceful`` starts an Apache that is not running,
which brings it back on the restored files.
"""

from __future__ import annotations

import dataclasses

from ansible_collections.certfleet.deploy.plugins.module_utils.errors import (
    DeployError,
)
from ansible_collections.certfleet.deploy.plugins.module_utils.target import (
    Deploy,
)


class ApacheDeploy(Deploy):
    """The deploy flow, with the certificate file's layout chosen by chain_path."""

    def roles(self) -> tuple:
        """Leaf alone in ``cert_path`` when a chain file is given.

        Asking for the full chain in ``cert_path`` and a chain file too would
        send every intermediate twice, so it is refused before anything is
        touched.
        """
        roles = self.server.files
        if not self.params.get("chain_path"):
            return roles
        if self.params.get("cert_layout") == "fullchain":
            raise DeployError(
                "cert_layout=fullchain with chain_path would make Apache send "
                f"every intermediate twice: {self.params['cert_path']} would "
                f"hold them and so would {self.params['chain_path']}. Leave "
                "out chain_path (Apache 2.4.8 and later read the chain from "
                "SSLCertificateFile) or cert_layout."
            )
        return tuple(
            dataclasses.replace(role, layout="cert")
            if role.option == "cert_path" else role
            for role in roles
        )

    def serves_chain(self) -> bool:
        """Apache sends the chain file too (``SSLCertificateChainFile``)."""
        return super().serves_chain() or bool(self.params.get("chain_path"))
