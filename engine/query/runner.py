"""Run a parsed .cq program against a model: resolve names against the DAG, then answer.

Each statement becomes an ``Answer``. Counterfactual statements that intervene on the same
nodes are answered together as one batch of tensors (``samples n`` repeats the unit n times),
so a file of many statements costs a few batched passes, not a loop per image.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from engine.causal import inference
from engine.lang import nodes as ast
from engine.model.domains import DomainError
from engine.worlds.world import build_world
from engine.model.scm import SCM


@dataclass(frozen=True)
class Sample:
    """One world: every node's label value (names, numbers in domain units) and its image."""

    labels: dict[str, Any]
    image: np.ndarray | None = None  # (H, W) in {0, 1}
    mean: np.ndarray | None = None  # (H, W) probabilities


@dataclass(frozen=True)
class Answer:
    """The answer to one statement."""

    kind: str  # counterfactual, interventional or observational
    statement: str
    line: int
    evidence: dict[str, Any]
    intervention: dict[str, Any]
    factual: Sample | None
    samples: tuple[Sample, ...]
    inferred: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Unit:
    values: dict[str, torch.Tensor]  # every node of the SCM, batch of 1
    evidence: dict[str, Any]


class Runner:
    """Answers the statements of one program with one model."""

    def __init__(self, scm: SCM, program: ast.Program, *, world=None, oracles=None, device="cpu"):
        self.scm, self.program, self.oracles, self.device = scm, program, oracles, device
        self.world = world if world is not None else build_world(scm.dag)
        self.dag = scm.dag
        self.images = [n for n in scm.order if self.dag.nodes[n].domain.is_image]
        self.units: dict[str, _Unit] = {}

    @torch.no_grad()
    def run(self) -> list[Answer]:
        """Answer every statement in order (binds answer nothing)."""
        answers: dict[int, Answer] = {}
        batches = defaultdict(list)
        for i, statement in enumerate(self.program.statements):
            if isinstance(statement, ast.Bind):
                self.units[statement.name] = self._unit(statement.unit)
            elif isinstance(statement, ast.Counterfactual):
                unit = self._unit(statement.unit)
                act = self._values(statement.interventions, "intervention")
                batches[tuple(sorted(act))].append((i, statement, unit, act))
            elif isinstance(statement, ast.Interventional):
                act = self._values(statement.interventions, "intervention")
                draw = inference.interventional(self.scm, self._tensors(act), statement.samples, means=True)
                answers[i] = self._answer("interventional", statement, {}, act, None, draw, {})
            else:
                given = self._values(statement.evidence, "evidence")
                try:
                    draw, ess = inference.observational(self.scm, self._tensors(given), statement.samples, means=True)
                except inference.ImpossibleEvidence:
                    raise self.program.error(statement, "this evidence has probability zero under the model") from None
                how = {"labels": f"likelihood weighting under do(evidence), resampled (effective sample size {ess:.0f})"}
                answers[i] = self._answer("observational", statement, {n: v[1] for n, v in given.items()}, {}, None, draw, how)
        for group in batches.values():
            answers.update(self._counterfactuals(group))
        return [answers[i] for i in sorted(answers)]

    def _counterfactuals(self, group) -> dict[int, Answer]:
        """One abduction-action-prediction pass for statements that intervene on the same nodes."""
        sizes = [s.samples for _, s, _, _ in group]
        factual = {n: torch.cat([u.values[n].expand(k, *u.values[n].shape[1:]) for (_, _, u, _), k in zip(group, sizes)]) for n in self.scm.order}
        act = {n: torch.cat([torch.full((k,), a[n][0], device=self.device) for (_, _, _, a), k in zip(group, sizes)]) for n in group[0][3]}
        draw = inference.counterfactual(self.scm, factual, act, means=True)
        how = {site: self.scm.mechanisms[n].abduction for n in self.scm.order for site in self.scm.mechanisms[n].noise(1)}
        out, start = {}, 0
        for (i, statement, unit, a), k in zip(group, sizes):
            part = inference.Draw({n: v[start:start + k] for n, v in draw.values.items()}, {n: v[start:start + k] for n, v in draw.means.items()})
            factual_sample = self._samples(inference.Draw(unit.values, {}))[0]
            out[i] = self._answer("counterfactual", statement, unit.evidence, a, factual_sample, part, how)
            start += k
        return out

    def _answer(self, kind, statement, evidence, act, factual, draw, how) -> Answer:
        shown = {n: v[1] for n, v in act.items()}
        return Answer(kind, statement.text, statement.line, evidence, shown, factual, tuple(self._samples(draw)), how)

    def _samples(self, draw: inference.Draw) -> list[Sample]:
        n = next(iter(draw.values.values())).shape[0]
        labels = {k: v.cpu() for k, v in draw.values.items() if k not in self.images}
        out = []
        for j in range(n):
            shown = {k: self._show(k, v[j]) for k, v in labels.items()}
            image = draw.values[self.images[0]][j].cpu().numpy() if self.images else None
            mean = draw.means[self.images[0]][j].cpu().numpy() if self.images and self.images[0] in draw.means else None
            out.append(Sample(shown, image, mean))
        return out

    def _show(self, node: str, encoded):
        return self.dag.nodes[node].domain.decode(encoded)

    def _tensors(self, values: dict[str, tuple[int, Any]]) -> dict[str, torch.Tensor]:
        return {k: torch.tensor(v[0], dtype=self.dag.nodes[k].domain.dtype, device=self.device) for k, v in values.items()}

    def _values(self, items: tuple[ast.Assignment, ...], role: str) -> dict[str, tuple[int, Any]]:
        """Resolve name=value items to (class index, value shown in answers)."""
        out = {}
        for item in items:
            index = self._index(item, role)
            out[item.name] = (index, self._show(item.name, index))
        return out

    def _index(self, item: ast.Assignment, role: str):
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

    def _unit(self, unit) -> _Unit:
        if isinstance(unit, ast.VarRef):
            if unit.name not in self.units:
                defined = ", ".join(self.units) or "none yet"
                raise self.program.error(unit, f"unknown variable '{unit.name}'; bound so far: {defined}")
            return self.units[unit.name]
        if isinstance(unit, ast.IndexUnit):
            return self._indexed(unit)
        if isinstance(unit, ast.Selection):
            raise self.program.error(unit, f"{unit.world}[...] selects a population; a statement over one unit needs {unit.world}[INDEX]")
        return self._png(unit)

    def _indexed(self, unit) -> _Unit:
        """``NAME[i]`` (NAME the DAG's world) or ``data[i]``: unit i of the world, its labels and image."""
        world = self.world
        if unit.world not in (world.name, "data"):
            raise self.program.error(unit, f"'{unit.world}' is not this DAG's world; write {world.name}[INDEX] or data[INDEX]")
        if not 0 <= unit.index < len(world):
            raise self.program.error(unit, f"{unit.world}[{unit.index}]: the index must be in 0..{len(world) - 1:,} (the {world.name} world has {len(world):,} units)")
        units = world.units(np.array([unit.index]))
        labels = {n: units.labels[n][0].item() for n in self.dag.labels}
        image = world.images(units)[0] if self.images else None
        evidence = {"unit": f"{unit.world}[{unit.index}]"} | {n: self._show(n, v) for n, v in labels.items()}
        return self._make(labels, image, evidence)

    def _png(self, unit: ast.PngUnit) -> _Unit:
        labels = {item.name: self._index(item, "a label") for item in unit.labels}
        image = self._read_png(unit)
        missing = [n for n in self.dag.labels if n not in labels]
        evidence = {"unit": f'png("{unit.path}")'}
        if missing:
            if self.oracles is None:
                raise self.program.error(unit, f"png(...) needs a label for every label node, or pseudo-oracles beside the model to infer them ('cq train-oracles'); missing: {', '.join(missing)}")
            predicted = self.oracles.predict(image[None])
            labels.update({n: int(predicted[n][0]) for n in missing})
            evidence["inferred from pixels"] = {n: self._show(n, labels[n]) for n in missing}
        evidence |= {n: self._show(n, i) for n, i in labels.items()}
        return self._make(labels, image, evidence)

    def _read_png(self, unit: ast.PngUnit) -> np.ndarray:
        """The PNG as a binary array of the image node's size (found beside the .cq file too)."""
        path = Path(unit.path)
        if not path.is_absolute() and not path.exists():
            path = Path(self.program.path).parent / unit.path
        try:
            with Image.open(path) as picture:
                array = np.asarray(picture.convert("L"))
        except FileNotFoundError:
            raise self.program.error(unit, f"{unit.path}: no such image file") from None
        except (UnidentifiedImageError, OSError) as e:
            raise self.program.error(unit, f"{unit.path}: not a readable image ({e})") from None
        shape = self.dag.nodes[self.images[0]].domain.shape if self.images else array.shape
        if array.shape != tuple(shape):
            raise self.program.error(unit, f"{unit.path}: the image is {array.shape[1]}x{array.shape[0]} pixels; the model takes {shape[1]}x{shape[0]} binary images")
        return (array > 127).astype(np.uint8)

    def _make(self, labels: dict[str, int], image: np.ndarray, evidence) -> _Unit:
        values = {n: torch.tensor([i], dtype=self.dag.nodes[n].domain.dtype, device=self.device) for n, i in labels.items()}
        for name in self.images:
            values[name] = torch.as_tensor(image, dtype=torch.float32, device=self.device)[None]
        return _Unit(values, evidence)
