"""Run a parsed .cq program against a model: each statement kind has one handler.

Sample statements (counterfactual, interventional, observational) draw images; counterfactual
statements that intervene on the same nodes are answered together as one batch of tensors
(``samples n`` repeats the unit n times), so a file of many statements costs a few batched
passes. A counterfactual over a selection of the world's units (``given data[shape=heart],
do(shape=square)``) answers every unit, in blocks, to one archive (``engine.query.population``),
its blocks shared among torchrun's ranks when ``ranks`` has several. Numeric statements
(``P(...)``, ``E[...]``, ``PN(...)``, arithmetic) are answered by ``engine.query.estimands``:
exactly by enumeration where they can be, else by Monte Carlo.

A model built from the DAG alone (``build_scm(dag, dag.labels, world=True)``) answers every
label-only statement; one that needs the image mechanism is an error that asks for a model.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from engine.causal import inference
from engine.causal.exact import Enumeration
from engine.distributed import Ranks
from engine.lang import nodes as ast
from engine.model.scm import SCM
from engine.query import estimands
from engine.query.answers import Answer, NumericAnswer, PopulationAnswer, Sample
from engine.query.population import Population
from engine.query.resolve import Resolver
from engine.query.units import Units
from engine.worlds.world import build_world

__all__ = ["Answer", "NumericAnswer", "PopulationAnswer", "Runner", "Sample"]


class Runner:
    """Answers the statements of one program with one model."""

    def __init__(self, scm: SCM, program: ast.Program, *, world=None, oracles=None, device="cpu", bound=None, enumeration=None,
                 ranks: Ranks | None = None, scratch=None):
        self.scm, self.program, self.device = scm, program, device
        self.dag = scm.dag
        self.world = world if world is not None else build_world(scm.dag)
        self.images = [n for n in scm.order if self.dag.nodes[n].domain.is_image]
        self.units = Units(program, self.dag, self.world, images=self.images, oracles=oracles, device=device, bound=bound)
        self.resolver = Resolver(self.units, set(scm.mechanisms))
        self.enumeration = enumeration if enumeration is not None else Enumeration(scm)
        self.ranks, self.scratch = ranks if ranks is not None else Ranks(), scratch
        self.handlers = {
            ast.Bind: self._bind,
            ast.Counterfactual: self._counterfactual,
            ast.Interventional: self._interventional,
            ast.Observational: self._observational,
            ast.Numeric: self._numeric,
        }

    @torch.no_grad()
    def run(self) -> list[Answer | NumericAnswer | PopulationAnswer]:
        """Answer every statement in order (binds answer nothing)."""
        answers: dict[int, Answer | NumericAnswer] = {}
        self._batches = defaultdict(list)
        for i, statement in enumerate(self.program.statements):
            answer = self.handlers[type(statement)](i, statement)
            if answer is not None:
                answers[i] = answer
        for group in self._batches.values():
            answers.update(self._answer_batch(group))
        return [answers[i] for i in sorted(answers)]

    # ---- one handler per statement kind ----

    def _bind(self, i, statement: ast.Bind) -> None:
        self.units.bind(statement)

    def _numeric(self, i, statement: ast.Numeric) -> NumericAnswer:
        return estimands.answer(self, statement)

    def _counterfactual(self, i, statement: ast.Counterfactual) -> PopulationAnswer | None:
        self._needs_images(statement)
        act = self.units.values(statement.interventions, "intervention")
        selection = self.units.population(statement.unit)
        if selection is not None:
            if statement.samples > 1:
                raise self.program.error(statement, f"{selection.text} answers each of its {len(selection):,} units once; "
                                                    "'samples N' repeats one unit: drop it, or name one unit")
            return Population(self, self.ranks, self.scratch).answer(statement, selection, act)
        unit = self.units.unit(statement.unit)
        self._batches[tuple(sorted(act))].append((i, statement, unit, act))

    def _interventional(self, i, statement: ast.Interventional) -> Answer:
        self._needs_images(statement)
        act = self.units.values(statement.interventions, "intervention")
        draw = inference.interventional(self.scm, self.units.tensors(act), statement.samples, means=True)
        return self._answer("interventional", statement, {}, act, None, draw, {})

    def _observational(self, i, statement: ast.Observational) -> Answer:
        self._needs_images(statement)
        given = self.units.values(statement.evidence, "evidence")
        try:
            draw, ess = inference.observational(self.scm, self.units.tensors(given), statement.samples, means=True)
        except inference.ImpossibleEvidence:
            raise self.program.error(statement, "this evidence has probability zero under the model") from None
        how = {"labels": f"likelihood weighting under do(evidence), resampled (effective sample size {ess:.0f})"}
        return self._answer("observational", statement, {n: v[1] for n, v in given.items()}, {}, None, draw, how)

    def _needs_images(self, statement) -> None:
        missing = [n for n in self.dag.images if n not in self.scm.mechanisms]
        if missing:
            raise self.program.error(statement, f"this statement draws images ({', '.join(missing)}): it needs the image mechanism, "
                                                "and this query runs on the DAG alone; answer it with a trained model, cq query FILE --model RUN")

    # ---- sample answers ----

    def _answer_batch(self, group) -> dict[int, Answer]:
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
        scale = 255.0 if self.images and self.dag.nodes[self.images[0]].domain.levels() > 2 else 1.0  # gray levels -> [0, 1]
        out = []
        for j in range(n):
            shown = {k: self.units.show(k, v[j]) for k, v in labels.items()}
            image = draw.values[self.images[0]][j].cpu().numpy() / scale if self.images else None
            mean = draw.means[self.images[0]][j].cpu().numpy() if self.images and self.images[0] in draw.means else None
            out.append(Sample(shown, image, mean))
        return out

