"""Name -> mechanism class: a dict, a decorator that fills it, and an entry-point group.

Another installed package adds a mechanism with no change to this repository by declaring
an entry point in the group ``causal_query.mechanisms``::

    [project.entry-points."causal_query.mechanisms"]
    my_mechanism = "my_package.module:MyMechanism"
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from engine.errors import DagError

ENTRY_POINT_GROUP = "causal_query.mechanisms"
BUILTIN_PLUGINS = ("plugins.categorical", "plugins.discretized_normal", "plugins.vae_decoder", "plugins.learned", "plugins.pendulum", "plugins.continuous")

MECHANISMS: dict[str, type] = {}
_loaded = False


def register_mechanism(name: str):
    """Class decorator: make a mechanism available to DAG files under ``name``."""

    def decorate(cls):
        MECHANISMS[name] = cls
        return cls

    return decorate


def load_plugins() -> None:
    """Import the built-in plugins and every installed entry point (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_PLUGINS:
        importlib.import_module(module)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in MECHANISMS:
            MECHANISMS[ep.name] = ep.load()


def get_mechanism(name: str, where: str = "") -> type:
    """The mechanism class registered as ``name``; the error lists the registered names."""
    load_plugins()
    try:
        return MECHANISMS[name]
    except KeyError:
        valid = ", ".join(sorted(MECHANISMS))
        raise DagError(f"{where}: unknown mechanism '{name}'; registered mechanisms: {valid}") from None
