"""The values a node takes, and the one place they change form.

A Domain converts between three forms of a value:

- as written (``square``, ``0.25``, ``90deg``) by a user, a DAG file or a data file;
- as encoded, the tensor a mechanism uses: a class index (``long``) for names and grids,
  the number itself (``float64``) for real nodes, pixels (``float32``) for images;
- as shown in answers (``square``, ``0.258065``).

``encode`` goes from written to encoded, ``decode`` back to shown, ``contains`` says whether
a written value is valid, and a grid's ``snap`` picks its nearest value. A numeric domain may
declare an angle ``unit`` (``rad`` or ``deg``); only such domains take numbers written with
``deg``, ``rad`` or ``pi``, converted to the domain's own unit.

YAML::

    domain: [square, ellipse, heart]                 # names
    domain: {linspace: [0, 2pi, 40], unit: rad}      # a grid (with an angle unit)
    domain: real                                     # any finite number
    domain: {real: [-40, 44], unit: deg}             # bounds are checked on every value written
    domain: {image: [64, 64]}                        # binary pixels
    domain: {image: [64, 64], pixels: gray}          # 8-bit grayscale
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

#: how many of each angle unit one written unit is
ANGLES = {"rad": {"rad": 1.0, "deg": 180 / math.pi}, "deg": {"rad": math.pi / 180, "deg": 1.0}}
ANGLE_UNITS = ("rad", "deg", "pi")
#: the largest grid and image sizes a DAG may declare (checked before anything is allocated)
MAX_GRID = 100_000
MAX_IMAGE_SIDE = 1024


class DomainError(ValueError):
    """A value that the domain does not hold; the message says what would be valid."""


@dataclass(frozen=True)
class Domain:
    """Base class; ``kind`` is ``names``, ``grid``, ``real`` or ``image``."""

    kind = ""
    unit = None

    @property
    def is_image(self) -> bool:
        return self.kind == "image"

    @property
    def is_discrete(self) -> bool:
        """Whether the domain is a finite set of values (names or a grid), encoded by class index."""
        return self.kind in ("names", "grid")

    @property
    def is_numeric(self) -> bool:
        """Whether values are numbers (ordered), so that <, <= and arithmetic apply."""
        return self.kind in ("grid", "real")

    @property
    def dtype(self) -> torch.dtype:
        return torch.long if self.is_discrete else torch.float64

    def describe(self) -> str:
        raise NotImplementedError

    def encode(self, value: Any, unit: str | None = None):
        """The encoded form of one written value (``unit``: as written after a number, or None)."""
        raise NotImplementedError

    def decode(self, encoded):
        """The value shown in answers for one encoded value."""
        raise NotImplementedError

    def contains(self, value: Any, unit: str | None = None) -> bool:
        try:
            self.encode(value, unit)
        except DomainError:
            return False
        return True

    def number(self, value: Any, unit: str | None) -> float:
        """A written number in the domain's unit; angle units only on angle domains."""
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise DomainError(f"expected a number in the {self.describe()}, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise DomainError(f"{value} is not a finite number")
        if unit is None:
            return value
        if unit not in ANGLE_UNITS:
            raise DomainError(f"unknown unit '{unit}'; angles take rad, deg or pi")
        if self.unit is None:
            raise DomainError(f"the unit '{unit}' is for angles; this node is not an angle ({self.describe()}): write a plain number")
        if unit == "pi":
            value, unit = value * math.pi, "rad"
        return value * ANGLES[unit][self.unit]

    def values_of(self, encoded: torch.Tensor) -> torch.Tensor:
        """The numeric value of encoded tensors (float64), for mechanisms that compute with it."""
        raise DomainError(f"{self.describe()} has no numeric values")


@dataclass(frozen=True)
class Names(Domain):
    """A finite set of names, encoded by position."""

    values: tuple[str, ...] = ()
    kind = "names"

    @property
    def size(self) -> int:
        return len(self.values)

    def describe(self) -> str:
        return "{" + ", ".join(self.values) + "}"

    def encode(self, value, unit=None) -> int:
        if unit is None and isinstance(value, str) and value in self.values:
            return self.values.index(value)
        raise DomainError(f"'{value}{unit or ''}' is not a value; valid: {', '.join(self.values)}")

    def decode(self, encoded) -> str:
        return self.values[int(encoded)]


@dataclass(frozen=True)
class Grid(Domain):
    """Evenly spaced numbers; a written number is snapped to the nearest one."""

    values: tuple[float, ...] = ()
    unit: str | None = None
    kind = "grid"

    @property
    def size(self) -> int:
        return len(self.values)

    @property
    def step(self) -> float:
        return (self.values[-1] - self.values[0]) / (self.size - 1)

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"grid of {self.size} from {self.values[0]:g} to {self.values[-1]:g}{unit}"

    def snap(self, number: float) -> int:
        """The index of the grid value nearest to ``number``."""
        i = min(max(int((number - self.values[0]) / self.step), 0), self.size - 1)
        near = [j for j in (i - 1, i, i + 1) if 0 <= j < self.size]
        return min(near, key=lambda j: abs(self.values[j] - number))  # a tie goes to the lower value

    def encode(self, value, unit=None) -> int:
        number = self.number(value, unit)
        lo, hi = self.values[0] - self.step / 2, self.values[-1] + self.step / 2
        if not lo <= number <= hi:
            raise DomainError(f"{value:g}{unit or ''} is outside the {self.describe()}")
        return self.snap(number)

    def decode(self, encoded) -> float:
        return round(float(self.values[int(encoded)]), 6)

    def values_of(self, encoded):
        return torch.tensor(self.values, dtype=torch.float64, device=encoded.device)[encoded]


@dataclass(frozen=True)
class Real(Domain):
    """Real numbers, optionally bounded: the bounds check written values, never mechanisms."""

    low: float = -math.inf
    high: float = math.inf
    unit: str | None = None
    kind = "real"

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if math.isinf(self.low) and math.isinf(self.high):
            return f"real numbers{unit}"
        return f"real numbers in [{self.low:g}, {self.high:g}]{unit}"

    def encode(self, value, unit=None) -> float:
        number = self.number(value, unit)
        if not self.low <= number <= self.high:
            raise DomainError(f"{number:g} is outside the {self.describe()}")
        return number

    def decode(self, encoded) -> float:
        return round(float(encoded), 6)

    def values_of(self, encoded):
        return encoded.double()


@dataclass(frozen=True)
class Image(Domain):
    """An image of ``shape`` (height, width): ``binary`` pixels in {0, 1}, or ``gray`` in 0..255."""

    shape: tuple[int, int] = (0, 0)
    pixels: str = "binary"
    kind = "image"

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def describe(self) -> str:
        return f"{self.pixels} image {self.shape[0]}x{self.shape[1]}"

    def encode(self, value, unit=None) -> torch.Tensor:
        """Pixels as the mechanisms see them: binary 0/1, or gray levels 0..255, as float32."""
        array = np.asarray(value)
        if array.shape != tuple(self.shape):
            raise DomainError(f"the image is {array.shape[1] if array.ndim > 1 else '?'}x{array.shape[0] if array.ndim else '?'} pixels; "
                              f"the model takes {self.describe()}s ({self.shape[1]} wide, {self.shape[0]} high)")
        return torch.as_tensor(array, dtype=torch.float32)

    def decode(self, encoded) -> np.ndarray:
        return np.asarray(encoded.cpu() if isinstance(encoded, torch.Tensor) else encoded, dtype=np.float32)

    def levels(self) -> int:
        """The number of pixel levels: 2 or 256."""
        return 2 if self.pixels == "binary" else 256


def parse(spec: Any, number) -> Domain:
    """A Domain from its YAML form; ``number(value)`` reads a YAML number. Raises DomainError."""
    valid = ("a list of names, {linspace: [start, stop, count]}, real, {real: [low, high]} or {image: [height, width]} "
             "(numeric domains may add unit: rad or deg; images pixels: binary or gray)")
    if isinstance(spec, list) and spec and all(isinstance(v, str) for v in spec):
        if len(set(spec)) != len(spec):
            raise DomainError(f"domain names must be distinct: {spec}")
        return Names(tuple(spec))
    if spec == "real":
        return Real()
    if not isinstance(spec, dict):
        hint = " (YAML reads yes/no/on/off as booleans: quote such names)" if "False" in repr(spec) or "True" in repr(spec) else ""
        raise DomainError(f"domain must be {valid}, got {spec!r}{hint}")
    kinds = [k for k in ("linspace", "real", "image") if k in spec]
    if len(kinds) != 1:
        raise DomainError(f"domain must be {valid}, got {spec!r}")
    kind = kinds[0]
    allowed = {"image": {"image", "pixels"}}.get(kind, {kind, "unit"})
    if set(spec) - allowed:
        raise DomainError(f"unknown domain key(s) {sorted(set(spec) - allowed)} for {kind}; valid: {', '.join(sorted(allowed))}")
    unit = spec.get("unit")
    if unit is not None and unit not in ANGLES:
        raise DomainError(f"unit must be rad or deg (an angle), got {unit!r}")
    args = spec[kind]
    if kind == "linspace":
        if isinstance(args, list) and len(args) == 3 and _whole(args[2]) and 2 <= args[2] <= MAX_GRID:
            lo, hi = number(args[0]), number(args[1])
            if hi > lo:
                step = (hi - lo) / (args[2] - 1)
                return Grid(tuple(lo + i * step for i in range(args[2])), unit)
        raise DomainError(f"linspace needs [start, stop, count] with stop > start and a whole count from 2 to {MAX_GRID:,}, got {args!r}")
    if kind == "real":
        if isinstance(args, list) and len(args) == 2:
            lo, hi = number(args[0]), number(args[1])
            if hi > lo:
                return Real(lo, hi, unit)
        raise DomainError(f"real needs [low, high] with high > low, got {args!r}")
    pixels = spec.get("pixels", "binary")
    if pixels not in ("binary", "gray"):
        raise DomainError(f"pixels must be binary or gray, got {pixels!r}")
    if isinstance(args, list) and len(args) == 2 and all(_whole(v) and 1 <= v <= MAX_IMAGE_SIDE for v in args):
        return Image(tuple(args), pixels)
    raise DomainError(f"image needs [height, width], whole numbers from 1 to {MAX_IMAGE_SIDE}, got {args!r}")


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
