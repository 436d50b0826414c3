"""The three kinds of causal answer, as Pyro handlers around an unchanged SCM.

- counterfactual (abduction, action, prediction): every exogenous site is drawn from its
  posterior given the unit's observed values (each mechanism's ``abduct``), then the model
  runs again under ``condition(noise)`` and ``do(interventions)``: descendants of an
  intervened node change through their own mechanisms, everything else keeps its value;
- interventional: the model under ``do``;
- observational: likelihood weighting: the model under ``do(evidence)``, each particle
  weighted by ``prod_e p(e | parents)`` and resampled (exact when evidence sits on roots).

Every function takes and returns dicts of batched tensors keyed by node or site name.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import pyro.poutine as poutine
import torch

from engine.model.scm import SCM


class ImpossibleEvidence(ValueError):
    """No particle is consistent with the evidence."""


@dataclass(frozen=True)
class Draw:
    """Values of every node for a batch of units, with image probability maps where the SCM has images."""

    values: dict[str, torch.Tensor]
    means: dict[str, torch.Tensor]


def abduct(scm: SCM, values: dict[str, torch.Tensor], *, once: bool = False) -> dict[str, torch.Tensor]:
    """One posterior draw of every exogenous site given fully observed node values.

    With ``once`` the noise feeds a single prediction, and a mechanism with ``abduct_lazily`` may
    leave a site's posterior undrawn for its own ``assign`` to draw only what the value needs.
    """
    noise = {}
    for name in scm.order:
        m = scm.mechanisms[name]
        how = getattr(m, "abduct_lazily", m.abduct) if once else m.abduct
        noise.update(how(values[name], scm.parents(name, values)))
    return noise


def counterfactual(scm: SCM, factual: dict[str, torch.Tensor], interventions: dict[str, torch.Tensor], *, means: bool = False) -> Draw:
    """Abduct the noise from ``factual``, apply ``do(interventions)``, predict every node."""
    n = next(iter(factual.values())).shape[0]
    noise = abduct(scm, factual, once=True)
    with poutine.condition(data=noise), poutine.do(data=interventions):
        return _run(scm, n, means)


def interventional(scm: SCM, interventions: dict[str, torch.Tensor], n: int, *, means: bool = False) -> Draw:
    """n units drawn from the model under ``do(interventions)``."""
    with poutine.do(data={k: v.expand(n) for k, v in interventions.items()}):
        return _run(scm, n, means)


def observational(scm: SCM, evidence: dict[str, torch.Tensor], n: int, particles: int = 8192, *, means: bool = False) -> tuple[Draw, float]:
    """n units drawn given label evidence, by likelihood weighting; also the effective sample size."""
    particles = max(particles, 16 * n)
    clamped = {k: v.expand(particles) for k, v in evidence.items()}
    with poutine.do(data=clamped):
        draw = _run(scm, particles, means)
    log_w = sum(scm.mechanisms[k].log_prob(v, scm.parents(k, draw.values)) for k, v in clamped.items())
    log_w = torch.as_tensor(log_w, dtype=torch.float64)
    if not torch.isfinite(log_w).any():
        raise ImpossibleEvidence("the evidence has probability zero under the model")
    w = torch.softmax(log_w, 0)
    ess = float(1 / (w**2).sum())
    pick = torch.multinomial(w, n, replacement=True)
    return Draw({k: v[pick] for k, v in draw.values.items()}, {k: v[pick] for k, v in draw.means.items()}), ess


def _run(scm: SCM, n: int, means: bool) -> Draw:
    """Run the (handled) model once; with ``means``, also each image node's probability map (one more decoder pass)."""
    trace = poutine.trace(scm).get_trace(n)
    values = trace.nodes["_RETURN"]["value"]
    maps = {}
    for name in scm.order if means else ():
        mean = getattr(scm.mechanisms[name], "mean", None)
        if mean is not None:
            noise = {site: trace.nodes[site]["value"] for site in scm.mechanisms[name].noise(1)}
            maps[name] = mean(scm.parents(name, values), noise)
    return Draw(values, maps)


def seed(value: int) -> None:
    """Seed every random generator the answers use."""
    pyro.set_rng_seed(value)
