"""mkdocs hooks (``hooks:`` in mkdocs.yml): the docstrings' Sphinx roles, read as the
API reference shows them.

The docstrings use Sphinx's ``:class:`Name``` roles, which mkdocstrings renders as
``:class:<code>Name</code>``: keep the code and drop the role, and show
``~package.module.Name`` as ``Name``, as Sphinx does.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|meth|func|data|mod|attr|exc|obj):(?=<code>)")
_TILDE = re.compile(r"<code>~(?:[\w]+\.)*([\w]+)</code>")


def on_page_content(html: str, **kwargs: Any) -> str:
    """Drop the roles from a rendered page (only the API reference has any)."""
    return _TILDE.sub(r"<code>\1</code>", _ROLE.sub("", html))
