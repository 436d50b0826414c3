"""What a statement's answer is: images drawn in some world (``Answer``), or a number (``NumericAnswer``).

Both show themselves in a notebook: ``repr`` is one line, ``_repr_html_`` the number, the table
or the images (inline PNG); ``engine.query.report`` writes them to disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One world: every node's label value (names, numbers in domain units) and its image."""

    labels: dict[str, Any]
    image: np.ndarray | None = None  # (H, W) in [0, 1]: binary pixels, or gray levels / 255
    mean: np.ndarray | None = None  # (H, W) probabilities, or the mean gray level / 255


@dataclass(frozen=True)
class Answer:
    """The answer to one sample statement (images drawn in a world)."""

    kind: str  # counterfactual, interventional or observational
    statement: str
    line: int
    evidence: dict[str, Any]
    intervention: dict[str, Any]
    factual: Sample | None
    samples: tuple[Sample, ...]
    inferred: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<{self.kind} answer to {self.statement!r}: {len(self.samples)} sample(s)>"

    def _repr_html_(self) -> str:
        from engine.query import report

        return report.html(self)


@dataclass(frozen=True)
class NumericAnswer:
    """The answer to one numeric statement.

    ``value`` is a number, or for a distribution a table {value as answers show it: probability}
    (a joint's keys are tuples; a real-valued quantity's table is its mean, sd and quantiles).
    ``stderr`` is 0 when the answer is exact (a distribution's: its largest entry's), ``draws``
    the Monte Carlo draws (0 when exact), ``method`` how it was computed, in words.
    """

    kind: str  # probability, expectation, distribution or expression
    statement: str
    line: int
    value: float | dict
    stderr: float
    method: str
    draws: int
    details: dict[str, Any] = field(default_factory=dict)  # nodes, snapped values, the @ form of PN/PS/PNS, ESS, stderrs
    samples: np.ndarray | None = field(default=None, repr=False, compare=False)  # a real quantity's draws (histograms)
    weights: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def exact(self) -> bool:
        return self.draws == 0

    def __repr__(self) -> str:
        from engine.query import report

        return report.line(self)

    def _repr_html_(self) -> str:
        from engine.query import report

        return report.html(self)


@dataclass(frozen=True)
class PopulationAnswer:
    """The counterfactual of every unit a selection keeps (``engine.query.population``).

    ``path`` is the .npz of every unit's labels and image (a scratch file until
    ``engine.query.report`` moves it beside the other answers; None on ranks other than 0),
    ``summary`` the counterfactual labels' shares, the fidelity and the speed, ``examples`` the
    first units' factual, counterfactual and true images.
    """

    statement: str
    line: int
    selection: str
    intervention: dict[str, Any]
    path: Path | None
    summary: dict[str, Any]
    examples: dict[str, np.ndarray] = field(repr=False, compare=False)
    kind: str = "population"

    def arrays(self) -> dict[str, np.ndarray]:
        """The archive's arrays, read back."""
        from engine.files import read_npz

        return read_npz(self.path)

    def __repr__(self) -> str:
        from engine.query import report

        return report.population_line(self)

    def _repr_html_(self) -> str:
        from engine.query import report

        return report.html(self)
