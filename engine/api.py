"""The Python API: load a trained model (or a DAG alone) and ask it .cq statements.

    from engine.api import load

    model = load("runs/<name>")                   # a run folder or checkpoint; or load("dags/<name>.yaml")
    answer = model.ask("P(y > 0.5 | do(scale=1.0))")
    answer.value, answer.stderr, answer.method, answer.kind     # e.g. 0.8667, 0.0, 'exact enumeration', 'probability'
    model.ask("u = data[3]")                      # names bound by one ask are kept for the next
    model.ask("P(y@do(shape=square) > 0.5 | u)")  # Monte Carlo over u's exact noise posteriors

A DAG file gives its declared label mechanisms (learned ones by their declared truth) and no
image mechanism: label questions are answered, image statistics and sample statements ask for
a model. Answers show themselves in notebooks (``_repr_html_``: the number, a table, images).
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.causal import inference
from engine.causal.exact import Enumeration
from engine.lang import parse
from engine.model.dag import DagSpec, load_dag
from engine.model.scm import SCM, build_scm
from engine.query.answers import Answer, NumericAnswer
from engine.query.runner import Runner
from engine.worlds.world import build_world

__all__ = ["Model", "load"]


class Model:
    """An SCM with its world, answering .cq text; units bound by one ``ask`` stay bound for the next."""

    def __init__(self, dag: DagSpec, scm: SCM, *, oracles=None, seed: int = 0, device="cpu"):
        self.dag, self.scm, self.oracles, self.device = dag, scm, oracles, device
        self.world = build_world(dag)
        self.enumeration = Enumeration(scm)
        self.bound: dict = {}
        inference.seed(seed)

    def run(self, text: str, *, seed: int | None = None) -> list[Answer | NumericAnswer]:
        """Every answer of a .cq program (binds answer nothing)."""
        if seed is not None:
            inference.seed(seed)
        runner = Runner(self.scm, parse(text, "<ask>"), world=self.world, oracles=self.oracles, device=self.device,
                        bound=self.bound, enumeration=self.enumeration)
        with torch.no_grad():
            return runner.run()

    def ask(self, text: str, *, seed: int | None = None) -> Answer | NumericAnswer | None:
        """The answer to the last statement of ``text`` (None when it only binds names)."""
        answers = self.run(text, seed=seed)
        return answers[-1] if answers else None

    def __repr__(self) -> str:
        kind = "label mechanisms only" if set(self.dag.images) - set(self.scm.mechanisms) else "with its image mechanism"
        return f"<Model of DAG '{self.dag.name}' ({kind}): {', '.join(self.scm.order)}>"


def load(path: str | Path, *, dag: str | Path | None = None, seed: int = 0, device="cpu") -> Model:
    """A trained run (folder or checkpoint file, optionally checked against ``dag``), or a DAG file (.yaml) alone."""
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        spec = load_dag(path)
        return Model(spec, build_scm(spec, spec.labels, world=True), seed=seed, device=device)
    from engine.learn.checkpoint import load_model

    spec, scm = load_model(path, dag=dag, device=device)
    return Model(spec, scm, oracles=build_world(spec).oracles(path), seed=seed, device=device)
