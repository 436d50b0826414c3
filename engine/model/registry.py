"""Plugin registries: name -> class, filled by a decorator, built-in modules and an entry-point group.

Another installed package adds a mechanism with no change to this repository by declaring
an entry point in the group ``causal_query.mechanisms``::

    [project.entry-points."causal_query.mechanisms"]
    my_mechanism = "my_package.module:MyMechanism"
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from importlib.metadata import entry_points

from engine.errors import DagError

ENTRY_POINT_GROUP = "causal_query.mechanisms"


def package_modules(package: str) -> tuple[str, ...]:
    """The modules and subpackages directly inside ``package``, by name: its plugins, whatever they are called."""
    spec = importlib.util.find_spec(package)
    return tuple(f"{package}.{m.name}" for m in pkgutil.iter_modules(spec.submodule_search_locations)) if spec else ()


BUILTIN_PLUGINS = package_modules("plugins")  # every module of the project's plugins/ folder



class Registry:
    """Name -> class, for one kind of plugin: a dict, a decorator that fills it, and an entry-point group.

    ``load`` imports the built-in modules (whose decorators fill the dict), then every
    installed entry point of ``group`` not already registered; ``get`` names the valid choices.
    One entry may declare itself the ``default``: the one ``get(None)`` gives.
    """

    def __init__(self, kind: str, group: str, builtins: tuple[str, ...]):
        self.kind, self.group, self.builtins = kind, group, builtins
        self.entries: dict[str, type] = {}
        self.default: str | None = None
        self.loaded = False

    def register(self, name: str, *, default: bool = False):
        """Class decorator: make a class available under ``name`` (with ``default``, also when no name is given)."""

        def decorate(cls):
            if default and self.default not in (None, name):
                raise ValueError(f"{self.kind}s '{self.default}' and '{name}' both declare themselves the default")
            self.entries[name] = cls
            self.default = name if default else self.default
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

    def get(self, name: str | None, where: str = "") -> type:
        """The class registered as ``name`` (None: the default); the error lists the registered names."""
        self.load()
        valid = ", ".join(sorted(self.entries))
        if name is None and self.default is None:
            raise DagError(f"{where}: no {self.kind} is named and none is registered as the default; registered {self.kind}s: {valid}")
        try:
            return self.entries[self.default if name is None else name]
        except KeyError:
            raise DagError(f"{where}: unknown {self.kind} '{name}'; registered {self.kind}s: {valid}") from None


MECHANISMS = Registry("mechanism", ENTRY_POINT_GROUP, BUILTIN_PLUGINS)
register_mechanism = MECHANISMS.register


def load_plugins() -> None:
    """Import the built-in plugins and every installed entry point (once)."""
    MECHANISMS.load()


def get_mechanism(name: str, where: str = "") -> type:
    """The mechanism class registered as ``name``; the error lists the registered names."""
    return MECHANISMS.get(name, where)
