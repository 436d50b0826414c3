"""Units and values as a program names them, resolved against the DAG and its World.

``name=value`` items become encoded values (the node's Domain converts them); ``NAME[i]``,
``png(...)`` and bound names become units with every node's value (and the image); selections
(``data[shape=heart]``, ``data[:100]``) become populations of the world's units, which
numeric statements draw from. Every mistake is a QueryError at its place in the program.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.errors import DataError
from engine.lang import nodes as ast
from engine.model.dag import DagSpec
from engine.model.domains import DomainError
from engine.pictures import check_sprite, read_image
from engine.worlds.world import World


@dataclass(frozen=True)
class Unit:
    """One unit: every label node's encoded value (batch of 1), the image where the model has one, and how it was given."""

    values: dict[str, torch.Tensor]
    evidence: dict[str, Any]


@dataclass(frozen=True, eq=False)
class UnitSet:
    """Units that a numeric statement draws from: one unit, or the rows of a world that a selection keeps.

    ``key`` identifies the set (statements over the same set share draws); ``index`` holds the
    world's unit indices for a selection, ``unit`` the single unit otherwise.
    """

    key: tuple
    text: str
    unit: Unit | None = None
    index: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return 1 if self.unit is not None else len(self.index)


class Units:
    """Resolves the values and units of one program; remembers the names it binds."""

    def __init__(self, program: ast.Program, dag: DagSpec, world: World, *, images=(), oracles=None, device="cpu", bound=None):
        self.program, self.dag, self.world, self.oracles, self.device = program, dag, world, oracles, device
        self.images = list(images)  # image nodes the model has a mechanism for
        self.bound: dict[str, Unit | ast.Selection] = bound if bound is not None else {}

    # ---- values ----

    def values(self, items: tuple[ast.Assignment, ...], role: str) -> dict[str, tuple[Any, Any]]:
        """``name=value`` items -> {name: (encoded value, value shown in answers)}."""
        return {item.name: (code := self.encode(item, role), self.show(item.name, code)) for item in items}

    def encode(self, item: ast.Assignment, role: str):
        """The encoded value of ``name=value`` (the node's Domain converts it)."""
        labels = self.dag.labels
        if item.name not in self.dag.nodes:
            raise self.program.error(item, f"'{item.name}' is not a node of the DAG '{self.dag.name}'; label nodes: {', '.join(labels)}")
        domain = self.dag.nodes[item.name].domain
        if domain.is_image:
            raise self.program.error(item, f"'{item.name}' is the image: it cannot be set by {role}; use {', '.join(labels)}")
        if item.value.is_name and domain.is_numeric:
            raise self.program.error(item, f"'{item.name}' takes a number in its {domain.describe()}, not '{item.value}'")
        try:
            return domain.encode(item.value.value, item.value.unit)
        except DomainError as e:
            raise self.program.error(item, f"{item.name}={item.value}: {e}") from None

    def show(self, node: str, encoded):
        return self.dag.nodes[node].domain.decode(encoded)

    def tensors(self, values: dict[str, tuple[Any, Any]]) -> dict[str, torch.Tensor]:
        return {k: torch.tensor(v[0], dtype=self.dag.nodes[k].domain.dtype, device=self.device) for k, v in values.items()}

    # ---- units ----

    def bind(self, statement: ast.Bind) -> None:
        """``name = unit``: a selection is kept as written (a population), anything else resolved now."""
        unit = statement.unit
        if isinstance(unit, ast.Selection):
            self.selection(unit)  # checked now, drawn from later
            self.bound[statement.name] = unit
        else:
            self.bound[statement.name] = self.unit(unit)

    def unit(self, unit) -> Unit:
        """One unit, for a statement about one unit (a selection is an error here)."""
        if isinstance(unit, ast.VarRef):
            found = self._lookup(unit)
            if isinstance(found, ast.Selection):
                raise self.program.error(unit, f"'{unit.name}' is a selection, a population; a statement over one unit needs {found.world}[INDEX]")
            return found
        if isinstance(unit, ast.IndexUnit):
            return self._indexed(unit)
        if isinstance(unit, ast.Selection):
            raise self.program.error(unit, f"{unit.world}[...] selects a population; a statement over one unit needs {unit.world}[INDEX]")
        return self._png(unit)

    def population(self, unit) -> UnitSet | None:
        """The selection a statement's unit names (written out or bound to a name), else None."""
        found = self._lookup(unit) if isinstance(unit, ast.VarRef) else unit
        return self.unit_set(unit) if isinstance(found, ast.Selection) else None

    def unit_set(self, unit) -> UnitSet:
        """A unit or a selection, as numeric statements draw from it."""
        if isinstance(unit, ast.VarRef):
            found = self._lookup(unit)
            if isinstance(found, ast.Selection):
                return UnitSet(("var", unit.name), unit.name, index=self.selection(found))
            return UnitSet(("var", unit.name), unit.name, unit=found)
        if isinstance(unit, ast.Selection):
            return UnitSet(("selection", _selection_text(unit)), _selection_text(unit), index=self.selection(unit))
        key = ("index", unit.world, unit.index) if isinstance(unit, ast.IndexUnit) else ("png", unit.path, unit.labels)
        text = f"{unit.world}[{unit.index}]" if isinstance(unit, ast.IndexUnit) else f'png("{unit.path}")'
        return UnitSet(key, text, unit=self.unit(unit))

    def selection(self, unit: ast.Selection) -> np.ndarray:
        """The world's unit indices that a selection keeps: the slice first, then every condition."""
        self._check_world(unit)
        start, stop = unit.start or 0, len(self.world) if unit.stop is None else min(unit.stop, len(self.world))
        index = np.arange(start, max(start, stop), dtype=np.int64)
        if unit.conditions and len(index):
            labels = self.world.units(index).labels
            keep = np.ones(len(index), dtype=bool)
            for condition in unit.conditions:
                keep &= self._condition(condition, labels)
            index = index[keep]
        if not len(index):
            raise self.program.error(unit, f"{_selection_text(unit)} selects no unit of the {self.world.name} world ({len(self.world):,} units)")
        return index

    def fetch(self, units: UnitSet, rows: np.ndarray, nodes) -> dict[str, torch.Tensor]:
        """Values of ``nodes`` for the set's rows ``rows`` (drawn by the caller): labels encoded, images as floats."""
        if units.unit is not None:
            return {n: units.unit.values[n].expand(len(rows), *units.unit.values[n].shape[1:]) for n in nodes}
        picked = self.world.units(units.index[rows])
        out = {n: torch.as_tensor(picked.labels[n], dtype=self.dag.nodes[n].domain.dtype, device=self.device) for n in nodes if n in self.dag.labels}
        images = [n for n in nodes if n not in self.dag.labels]
        if images:
            pixels = torch.as_tensor(self.world.images(picked), dtype=torch.float32, device=self.device)
            out |= {n: pixels for n in images}
        return out

    def _condition(self, condition: ast.Event, labels: dict[str, np.ndarray]) -> np.ndarray:
        name = condition.left.node
        if name not in self.dag.labels:
            raise self.program.error(condition, f"'{name}' is not a label node of the DAG '{self.dag.name}'; label nodes: {', '.join(self.dag.labels)}")
        domain = self.dag.nodes[name].domain
        column = labels[name]
        value = condition.right
        if domain.kind == "names" or condition.op in ("=", "!="):
            item = ast.Assignment(name, value, condition.line, condition.column)
            if condition.op not in ("=", "!="):
                raise self.program.error(condition, f"'{condition.op}' compares numbers; '{name}' takes names ({domain.describe()}): use = or !=")
            code = self.encode(item, "a selection")
            return (column == code) if condition.op == "=" else (column != code)
        if value.is_name:
            raise self.program.error(condition, f"'{name}' takes a number in its {domain.describe()}, not '{value}'")
        try:
            threshold = domain.number(value.value, value.unit)
        except DomainError as e:
            raise self.program.error(condition, f"{name}{condition.op}{value}: {e}") from None
        numbers = domain.values_of(torch.as_tensor(column)).numpy() if domain.is_discrete else column
        return {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}[condition.op](numbers, threshold)

    def _lookup(self, ref: ast.VarRef):
        if ref.name not in self.bound:
            defined = ", ".join(self.bound) or "none yet"
            raise self.program.error(ref, f"unknown variable '{ref.name}'; bound so far: {defined}")
        return self.bound[ref.name]

    def _check_world(self, unit) -> None:
        if unit.world not in (self.world.name, "data"):
            raise self.program.error(unit, f"'{unit.world}' is not this DAG's world; write {self.world.name}[INDEX] or data[INDEX]")

    def _indexed(self, unit: ast.IndexUnit) -> Unit:
        """``NAME[i]`` (NAME the DAG's world) or ``data[i]``: unit i of the world, its labels and image."""
        world = self.world
        self._check_world(unit)
        if not 0 <= unit.index < len(world):
            raise self.program.error(unit, f"{unit.world}[{unit.index}]: the index must be in 0..{len(world) - 1:,} (the {world.name} world has {len(world):,} units)")
        units = world.units(np.array([unit.index]))
        labels = {n: units.labels[n][0].item() for n in self.dag.labels}
        image = world.images(units)[0] if self.images else None
        evidence = {"unit": f"{unit.world}[{unit.index}]"} | {n: self.show(n, v) for n, v in labels.items()}
        return self._make(labels, image, evidence)

    def _png(self, unit: ast.PngUnit) -> Unit:
        labels = {item.name: self.encode(item, "a label") for item in unit.labels}
        image = self._read_png(unit)
        missing = [n for n in self.dag.labels if n not in labels]
        evidence = {"unit": f'png("{unit.path}")'}
        if missing:
            if self.oracles is None:
                raise self.program.error(unit, f"png(...) needs a label for every label node, or pseudo-oracles beside the model to infer them ('cq train-oracles'); missing: {', '.join(missing)}")
            try:
                check_sprite(image, self._image_domain().pixels, where="", path=unit.path)
            except DataError as e:
                raise self.program.error(unit, e.detail) from None
            predicted = self.oracles.predict(image[None])
            labels.update({n: int(predicted[n][0]) for n in missing})
            evidence["inferred from pixels"] = {n: self.show(n, labels[n]) for n in missing}
        evidence |= {n: self.show(n, i) for n, i in labels.items()}
        return self._make(labels, image, evidence)

    def _image_domain(self):
        images = self.images or list(self.dag.images)
        if not images:
            raise ValueError("the DAG has no image node")
        return self.dag.nodes[images[0]].domain

    def _read_png(self, unit: ast.PngUnit) -> np.ndarray:
        """The PNG as the image node's pixels (found beside the .cq file too), read safely (engine.pictures)."""
        if not (self.images or self.dag.images):
            raise self.program.error(unit, "png(...) needs a DAG with an image node")
        domain = self._image_domain()
        try:
            return read_image(unit.path, domain.shape, domain.pixels, beside=Path(self.program.path).parent)
        except DataError as e:
            raise self.program.error(unit, e.detail) from None

    def _make(self, labels: dict[str, int], image, evidence) -> Unit:
        values = {n: torch.tensor([i], dtype=self.dag.nodes[n].domain.dtype, device=self.device) for n, i in labels.items()}
        for name in self.images:
            values[name] = torch.as_tensor(image, dtype=torch.float32, device=self.device)[None]
        return Unit(values, evidence)


def _selection_text(unit: ast.Selection) -> str:
    part = [] if unit.start is None and unit.stop is None else [f"{'' if unit.start is None else unit.start}:{'' if unit.stop is None else unit.stop}"]
    part += [f"{c.left.node}{c.op}{c.right}" for c in unit.conditions]
    return f"{unit.world}[{', '.join(part)}]"
