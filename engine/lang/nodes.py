"""The statements of a .cq program: frozen dataclasses that remember where they were written.

Every node carries the 1-based ``line`` and ``column`` of its first character, so that the
executor can point at the exact item it rejects with :meth:`Program.error`. Statements also
keep their own source ``text`` (without the trailing comment) for reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Union

from engine.errors import QueryError

UNITS = {"rad": 1.0, "deg": math.pi / 180.0, "pi": math.pi}  # how many radians one unit is


@dataclass(frozen=True)
class Value:
    """The right-hand side of ``name=value``: a name (``square``) or a number with an optional unit.

    ``unit`` is None for names and for plain numbers (an angle written without a unit is in
    radians); it is ``"rad"``, ``"deg"`` or ``"pi"`` when written (``1.5rad``, ``90deg``, ``0.5pi``).
    """

    value: str | float
    unit: str | None = None

    @property
    def is_name(self) -> bool:
        return isinstance(self.value, str)

    def number(self) -> float:
        """The number in base units: ``90deg`` and ``0.5pi`` both give π/2, ``0.25`` gives 0.25."""
        if self.is_name:
            raise TypeError(f"{self.value!r} is a name, not a number")
        return self.value * UNITS[self.unit or "rad"]

    def __str__(self) -> str:
        if self.is_name:
            return self.value
        return f"{self.value:g}{self.unit or ''}"


@dataclass(frozen=True)
class Assignment:
    """One ``name=value`` item: an intervention in ``do(...)``, evidence after ``given``, or a PNG label."""

    name: str
    value: Value
    line: int
    column: int


@dataclass(frozen=True)
class DspritesUnit:
    """``dsprites[index]``: the canonical dSprites image with that index, and its labels."""

    index: int
    line: int
    column: int


@dataclass(frozen=True)
class PngUnit:
    """``png("path", name=value, ...)``: a user image, with the labels it was given (maybe none)."""

    path: str
    labels: tuple[Assignment, ...]
    line: int
    column: int


@dataclass(frozen=True)
class VarRef:
    """A unit bound earlier by ``name = ...``; the executor looks the name up."""

    name: str
    line: int
    column: int


Unit = Union[DspritesUnit, PngUnit]


@dataclass(frozen=True)
class Bind:
    """``name = unit``: give a unit a name for later statements."""

    name: str
    unit: Unit
    line: int
    column: int
    text: str


@dataclass(frozen=True)
class Counterfactual:
    """``given unit, do(...) [samples n]``: what the unit would have looked like under the interventions."""

    unit: VarRef | DspritesUnit | PngUnit
    interventions: tuple[Assignment, ...]
    samples: int
    line: int
    column: int
    text: str


@dataclass(frozen=True)
class Interventional:
    """``do(...) [samples n]``: images drawn from the model with the interventions applied."""

    interventions: tuple[Assignment, ...]
    samples: int
    line: int
    column: int
    text: str


@dataclass(frozen=True)
class Observational:
    """``given name=value, ... [samples n]``: images drawn conditioned on label evidence."""

    evidence: tuple[Assignment, ...]
    samples: int
    line: int
    column: int
    text: str


Statement = Union[Bind, Counterfactual, Interventional, Observational]


@dataclass(frozen=True)
class Program:
    """The statements of one .cq file in order, with the file's path and text for error messages."""

    statements: tuple[Statement, ...]
    path: str = "<query>"
    source: str = field(default="", repr=False, compare=False)

    def error(self, node: Assignment | Unit | VarRef | Statement, message: str) -> QueryError:
        """A QueryError that points at ``node``: ``path:line:column: message``, the line, and a caret."""
        return error_at(self.path, self.source, node.line, node.column, message)


def error_at(path: str, source: str, line: int, column: int, message: str) -> QueryError:
    """A QueryError reading ``path:line:column: message`` followed by the source line and a caret."""
    lines = source.splitlines()
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    pad = "".join("\t" if c == "\t" else " " for c in text[: column - 1])
    error = QueryError(f"{path}:{line}:{column}: {message}\n    {text}\n    {pad}^")
    error.path, error.line, error.column = path, line, column
    return error
