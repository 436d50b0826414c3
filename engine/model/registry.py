"""Plugin registries: name -> class, filled by a decorator, built-in modules and an entry-point group.

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



class Registry:
    """Name -> class, for one kind of plugin: a dict, a decorator that fills it, and an entry-point group.

    ``load`` imports the built-in modules (whose decorators fill the dict), then every
    installed entry point of ``group`` not already registered; ``get`` names the valid choices.
    """

    def __init__(self, kind: str, group: str, builtins: tuple[str, ...]):
        self.kind, self.group, self.builtins = kind, group, builtins
        self.entries: dict[str, type] = {}
        self.loaded = False

    def register(self, name: str):
        """Class decorator: make a class available under ``name``."""

        def decorate(cls):
            self.entries[name] = cls
            return cls

        return decorate

    def load(self) -> None:
        if self.loaded:
            return
        self.loaded = True
        for module in self.builtins:
            importlib.import_module(module)
        for ep in entry_points(group=self.group):
            if ep.name not in self.entries:
                self.entries[ep.name] = ep.load()

    def get(self, name: str, where: str = "") -> type:
        """The class registered as ``name``; the error lists the registered names."""
        self.load()
        try:
            return self.entries[name]
        except KeyError:
            valid = ", ".join(sorted(self.entries))
            raise DagError(f"{where}: unknown {self.kind} '{name}'; registered {self.kind}s: {valid}") from None


MECHANISMS = Registry("mechanism", ENTRY_POINT_GROUP, BUILTIN_PLUGINS)
register_mechanism = MECHANISMS.register


def load_plugins() -> None:
    """Import the built-in plugins and every installed entry point (once)."""
    MECHANISMS.load()


def get_mechanism(name: str, where: str = "") -> type:
    """The mechanism class registered as ``name``; the error lists the registered names."""
    return MECHANISMS.get(name, where)
