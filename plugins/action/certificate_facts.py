# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run certificate_facts and add the collection version known to the controller.

The module runs on the managed host from a zip that holds none of the
collection's metadata, so it cannot tell which release it came from. This
action plugin runs on the controller, inside the installed collection: it
finds MANIFEST.json (or galaxy.yml in a source tree) by walking up from its
own file and puts that version into the fact.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.certfleet.deploy.plugins.module_utils.hostinfo import (
    collection_version,
)

MODULE = "certfleet.deploy.certificate_facts"


class ActionModule(ActionBase):
    """certificate_facts with the controller's view of the collection version."""

    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        result.update(self._execute_module(
            module_name=MODULE, module_args=self._task.args, task_vars=task_vars,
        ))
        facts = result.get("ansible_facts", {}).get("certfleet")
        if isinstance(facts, dict):
            found = collection_version(__file__)
            if found["version"] is not None:
                facts["collection"] = found
        return result
