"""The public API is exactly what ``__all__`` says, and every name is documented."""

from __future__ import annotations

import inspect

import eventcore

TYPE_ALIASES = {"Principal", "PublishMiddleware", "CallNext"}


def test_all_names_exist_and_come_from_private_modules() -> None:
    for name in eventcore.__all__:
        obj = getattr(eventcore, name)
        if name not in TYPE_ALIASES and (isinstance(obj, type) or inspect.isfunction(obj)):
            assert obj.__module__.startswith("eventcore._"), name
            assert obj.__doc__, f"{name} has no docstring"


def test_no_public_name_is_left_out_of_all() -> None:
    # submodules (eventcore.testing, eventcore.integrations) are not re-exported names
    public = {
        n for n, v in vars(eventcore).items() if not n.startswith("_") and not inspect.ismodule(v)
    }
    assert public == set(eventcore.__all__) - {"__version__"}
