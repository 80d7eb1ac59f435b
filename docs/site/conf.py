"""Sphinx settings for the certfleet.deploy documentation site.

scripts/docs.sh writes the plugin and role pages with antsibull-docs from the
modules' own DOCUMENTATION into .build/docs-site/rst and builds them with
these settings into .build/docs-site/html.

The build is offline. The generated pages point at a few labels of the
Ansible documentation (action plugins, common return values, ...); instead
of downloading that site's inventory, this file writes a small one of its
own, from ANSIBLE_LABELS below, and hands it to intersphinx. A page that
points at a label missing here fails the build: add the label.
"""

import os
import tempfile
import zlib

project = "certfleet.deploy"
copyright = "certfleet.deploy maintainers"  # pylint: disable=redefined-builtin
title = "certfleet.deploy"
html_short_title = "certfleet.deploy"
html_title = "certfleet.deploy documentation"

# antsibull-docs' Sphinx extension renders the option and return tables.
extensions = ["sphinx.ext.intersphinx", "sphinx_antsibull_ext"]

pygments_style = "ansible"
highlight_language = "YAML+Jinja"
default_role = "any"
# Every reference must resolve: a broken one fails the build (-W).
nitpicky = True

html_theme = "sphinx_ansible_theme"
html_show_sphinx = False
html_use_modindex = False
html_use_index = False
html_copy_source = False

ANSIBLE_DOCS = "https://docs.ansible.com/projects/ansible/devel/"

# label: (page under ANSIBLE_DOCS with its anchor, title)
ANSIBLE_LABELS = {
    "action_plugins": ("plugins/action.html#action-plugins", "Action plugins"),
    "ansible_configuration_settings": (
        "reference_appendices/config.html#ansible-configuration-settings",
        "Ansible Configuration Settings",
    ),
    "callback_plugins": ("plugins/callback.html#callback-plugins", "Callback plugins"),
    "collections_keyword": (
        "collections_guide/collections_using_playbooks.html#collections-keyword",
        "Simplifying module names with the collections keyword",
    ),
    "common_return_values": (
        "reference_appendices/common_return_values.html#common-return-values",
        "Return Values",
    ),
    "list_of_collections": ("collections/index.html#list-of-collections", "Collection Index"),
    "list_of_callback_plugins": (
        "collections/index_callback.html#list-of-callback-plugins",
        "Index of all Callback Plugins",
    ),
}


def _write_inventory() -> str:
    """Write ANSIBLE_LABELS as a Sphinx inventory (version 2) and return its path."""
    lines = "".join(
        f"{label} std:label -1 {uri} {name}\n"
        for label, (uri, name) in sorted(ANSIBLE_LABELS.items())
    )
    header = (
        "# Sphinx inventory version 2\n"
        "# Project: Ansible\n"
        "# Version: devel\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    directory = os.environ.get("CERTFLEET_DOCS_BUILD") or tempfile.gettempdir()
    path = os.path.join(directory, "ansible-labels.inv")
    with open(path, "wb") as handle:
        handle.write(header.encode("utf-8") + zlib.compress(lines.encode("utf-8")))
    return path


intersphinx_mapping = {"ansible_devel": (ANSIBLE_DOCS, _write_inventory())}
intersphinx_timeout = 5
