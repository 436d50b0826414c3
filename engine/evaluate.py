"""Measured counterfactuals: the renderer is the truth, the declared SCM the label oracle.

On held-out units (canonical indices never used in training), for each intervention family:

- fidelity: IoU of the model's counterfactual image with the true one, the renderer applied
  to the counterfactual labels (factors the DAG hides keep the unit's own values);
- labels: total variation between the engine's (factual, counterfactual) label pairs and a
  twin-network simulation of the declared SCM (prior noise pushed through both worlds), per
  node on a coarse grid, beside the same distance for a naive answer that redraws the noise;
- effectiveness (with pseudo-oracles): the counterfactual labels predicted from its image;
- composition: the null intervention applied 1 and 10 times, IoU with the input;
- reversibility: do(random value) then do(original value), IoU with the input after 1 and 5 cycles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyro.poutine as poutine
import torch

from engine.worlds.dsprites import data
from engine.worlds.dsprites import render as dsprites
from engine.causal import inference
from engine.model.scm import SCM, build_scm

BINS = 8
LABEL_UNITS = 100_000


@dataclass(frozen=True)
class Family:
    """An intervention family: which nodes get a new value, and optionally a fixed one."""

    name: str
    nodes: tuple[str, ...]
    value: str | None = None  # a fixed target (do(shape=square)); else random, different from the unit's

    def targets(self, scm: SCM, factual: dict[str, torch.Tensor], rng: torch.Generator) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Per-unit intervention values, and which units the family applies to."""
        n = factual[self.nodes[0]].shape[0] if self.nodes else next(iter(factual.values())).shape[0]
        keep = torch.ones(n, dtype=torch.bool)
        out = {}
        for node in self.nodes:
            domain = scm.dag.nodes[node].domain
            if self.value is not None:
                out[node] = torch.full((n,), domain.index(self.value))
                keep &= out[node] != factual[node]
            else:  # a uniformly random value other than the unit's own
                shift = torch.randint(1, domain.size, (n,), generator=rng)
                out[node] = (factual[node] + shift) % domain.size
        return out, keep


def families(scm: SCM) -> list[Family]:
    """null, do(shape=each value), do(each other label), do(x, y) and do(shape, x, y) where the DAG has them."""
    labels = [n for n in scm.order if scm.dag.nodes[n].domain.kind != "image"]
    out = [Family("null", ())]
    for node in labels:
        domain = scm.dag.nodes[node].domain
        if domain.kind == "categorical":
            out += [Family(f"do({node}={v})", (node,), v) for v in domain.values]
        elif node not in ("x", "y"):
            out.append(Family(f"do({node})", (node,)))
    if {"x", "y"} <= set(labels):
        out.append(Family("do(x, y)", ("x", "y")))
        if "shape" in labels:
            out.append(Family("do(shape, x, y)", ("shape", "x", "y")))
    return out


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixel IoU of binary image batches (1 where both are empty)."""
    a, b = a.reshape(len(a), -1) > 0.5, b.reshape(len(b), -1) > 0.5
    inter, union = (a & b).sum(1), (a | b).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def held_out_units(scm: SCM, n: int, seed: int) -> data.LabelSet:
    """n units drawn from the DAG whose canonical indices are in the test split."""
    picked, drawn = [], 0
    while drawn < n:
        labels = data.resample(scm.dag, max(20 * n, 10_000), seed + len(picked))
        test = labels.subset(data.is_test(labels.index))
        picked.append(test)
        drawn += len(test)
    merged = {k: np.concatenate([p.labels[k] for p in picked])[:n] for k in dsprites.FACTORS}
    return data.LabelSet(merged, scm.dag.hash, seed)


class Evaluation:
    """Runs every metric of one trained model on one set of held-out units."""

    def __init__(self, scm: SCM, units: data.LabelSet, *, npz=None, oracles=None, device="cpu", batch: int = 1024):
        self.scm, self.units, self.oracles, self.device, self.batch = scm, units, oracles, device, batch
        self.image = next(n for n in scm.order if scm.dag.nodes[n].domain.kind == "image")
        self.labels = [n for n in scm.order if n != self.image]
        self.images = data.images(units.index, npz)
        self.rng = torch.Generator().manual_seed(units.seed)

    def factual(self, rows=slice(None)) -> dict[str, torch.Tensor]:
        values = {n: torch.as_tensor(self.units.labels[n][rows], device=self.device) for n in self.labels}
        values[self.image] = torch.as_tensor(self.images[rows], dtype=torch.float32, device=self.device)
        return values

    def truth(self, values: dict[str, torch.Tensor], rows) -> np.ndarray:
        """The renderer applied to counterfactual labels; hidden factors keep the unit's values."""
        factors = {k: self.units.labels[k][rows] for k in dsprites.FACTORS[1:]}
        factors.update({n: values[n].cpu().numpy() for n in self.labels})
        return dsprites.render(**factors)

    def counterfactual(self, factual, act) -> dict[str, torch.Tensor]:
        """Batched abduction-action-prediction."""
        n = factual[self.image].shape[0]
        parts = []
        for start in range(0, n, self.batch):
            part = slice(start, start + self.batch)
            parts.append(inference.counterfactual(self.scm, {k: v[part] for k, v in factual.items()}, {k: v[part] for k, v in act.items()}).values)
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    @torch.no_grad()
    def family(self, family: Family) -> dict:
        factual = self.factual()
        act, keep = family.targets(self.scm, factual, self.rng)
        rows = keep.cpu().numpy()
        factual = {k: v[keep] for k, v in factual.items()}
        act = {k: v[keep] for k, v in act.items()}
        cf = self.counterfactual(factual, act)
        truth = self.truth(cf, rows)
        scores = iou(cf[self.image].cpu().numpy(), truth)
        result = {"units": int(keep.sum()), "iou": float(scores.mean()), "above_0.9": float((scores > 0.9).mean())}
        if self.oracles is not None:
            result.update(self.oracles.score(cf[self.image].cpu().numpy(), {n: cf[n].cpu().numpy() for n in self.labels}))
        result["labels_tv"], result["labels_tv_naive"] = label_correctness(self.scm, family, self.units.seed)
        return result

    @torch.no_grad()
    def composition(self, times=(1, 10)) -> dict:
        """The null intervention applied repeatedly, each time abducting from the last answer."""
        values, out = self.factual(), {}
        for k in range(1, max(times) + 1):
            values = self.counterfactual(values, {})
            if k in times:
                out[f"iou_after_{k}"] = float(iou(values[self.image].cpu().numpy(), self.images).mean())
        return out

    @torch.no_grad()
    def reversibility(self, cycles=(1, 5)) -> dict:
        """do(random values of shape, x, y or every label) then do(the original values), repeated."""
        nodes = tuple(n for n in ("shape", "x", "y") if n in self.labels) or tuple(self.labels)
        family = Family("reverse", nodes)
        original = self.factual()
        values, out = original, {}
        for k in range(1, max(cycles) + 1):
            act, _ = family.targets(self.scm, values, self.rng)
            values = self.counterfactual(values, act)
            values = self.counterfactual(values, {n: original[n] for n in nodes})
            if k in cycles:
                out[f"iou_after_{k}"] = float(iou(values[self.image].cpu().numpy(), self.images).mean())
                back = torch.stack([values[n] == original[n] for n in self.labels]).all(0)
                out[f"labels_back_after_{k}"] = float(back.float().mean())  # label counterfactuals are distributions
        out["intervened"] = ", ".join(nodes)
        return out

    def samples(self, family: Family, k: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inputs, counterfactuals and their truths for the first k units of a family (for the picture)."""
        rows = slice(0, k)
        factual = self.factual(rows)
        act, _ = family.targets(self.scm, factual, torch.Generator().manual_seed(0))
        with torch.no_grad():
            cf = self.counterfactual(factual, act)
        return self.images[rows], cf[self.image].cpu().numpy(), self.truth(cf, np.arange(k))


def label_correctness(scm: SCM, family: Family, seed: int, n: int = LABEL_UNITS) -> tuple[float, float]:
    """Largest per-node TV between the engine's (factual, counterfactual) pairs and the twin network's.

    The twin network pushes prior noise through the declared world twice (factual, then under
    ``do``); the engine answers the same factual units with the model's label mechanisms
    (learned ones included). Also returns the distance of a naive answer that redraws the noise.
    """
    world = build_scm(scm.dag, scm.dag.labels, world=True)
    model = SCM(scm.dag, {name: scm.mechanisms[name] for name in world.order})
    rng = torch.Generator().manual_seed(seed)
    inference.seed(seed)
    with torch.no_grad():
        twin = poutine.trace(world).get_trace(n)  # prior noise, factual world
        noise = {k: s["value"] for k, s in twin.nodes.items() if k.startswith("U_")}
        factual = twin.nodes["_RETURN"]["value"]
        act, keep = family.targets(world, factual, rng)
        with poutine.condition(data=noise), poutine.do(data=act):
            truth = world(n)
        device = _device(model)
        on = lambda d: {k: v.to(device) for k, v in d.items()}
        engine = {k: v.cpu() for k, v in inference.counterfactual(model, on(factual), on(act)).values.items()}
        with poutine.do(data=act):
            naive = world(n)
    return _tv(world, factual, engine, truth, keep), _tv(world, factual, naive, truth, keep)


def _device(scm: SCM) -> torch.device:
    for m in scm.mechanisms.values():
        if isinstance(m, torch.nn.Module):
            return next(m.parameters()).device
    return torch.device("cpu")


def _tv(scm: SCM, factual, answer, truth, keep) -> float:
    worst = 0.0
    for node in scm.order:
        size = scm.dag.nodes[node].domain.size
        bins = min(size, BINS)
        f = (factual[node][keep] * bins // size).numpy()
        a = (answer[node][keep] * bins // size).numpy()
        t = (truth[node][keep] * bins // size).numpy()
        p = np.bincount(f * bins + a, minlength=bins * bins) / len(f)
        q = np.bincount(f * bins + t, minlength=bins * bins) / len(f)
        worst = max(worst, 0.5 * float(np.abs(p - q).sum()))
    return worst


def learned_gaps(scm: SCM) -> dict[str, dict]:
    """Total variation between each learned conditional and the declared truth, per parent configuration."""
    out = {}
    for name in scm.order:
        learned = scm.mechanisms[name]
        truth = learned.truth()
        if truth is learned:
            continue
        parents = list(scm.dag.nodes[name].parents)
        sizes = [scm.dag.nodes[p].domain.size for p in parents]
        configs = torch.cartesian_prod(*[torch.arange(s) for s in sizes]).reshape(-1, len(sizes)) if parents else torch.zeros(1, 0, dtype=torch.long)
        values = {p: configs[:, i] for i, p in enumerate(parents)}
        k, n = scm.dag.nodes[name].domain.size, configs.shape[0]
        with torch.no_grad():
            p = torch.stack([learned.log_prob(torch.full((n,), v), values) for v in range(k)], 1).exp()
            q = torch.stack([truth.log_prob(torch.full((n,), v), values) for v in range(k)], 1).exp()
        tv = 0.5 * (p.cpu() - q.cpu()).abs().sum(1)
        out[name] = {"configurations": n, "tv_mean": float(tv.mean()), "tv_max": float(tv.max())}
    return out


def table(results: dict) -> str:
    """The evaluation as a readable table: one row per family, then the soundness metrics."""
    columns = ["units", "iou", "above_0.9", "labels_tv", "labels_tv_naive", "shape_accuracy", "scale_mae", "orientation_mae", "x_mae", "y_mae"]
    families = {k: v for k, v in results["families"].items()}
    shown = [c for c in columns if any(c in v for v in families.values())]
    rows = [f"{'family':<22}" + "".join(f"{c:>16}" for c in shown)]
    for name, metrics in families.items():
        rows.append(f"{name:<22}" + "".join(f"{_cell(metrics.get(c)):>16}" for c in shown))
    for part in ("composition", "reversibility"):
        rows.append(f"\n{part}: " + ", ".join(f"{k} {_cell(v)}" for k, v in results[part].items()))
    for name, gap in results.get("learned", {}).items():
        rows.append(f"learned p({name} | parents) vs declared: TV mean {gap['tv_mean']:.4f}, max {gap['tv_max']:.4f} over {gap['configurations']} parent configurations")
    return "\n".join(rows)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:,}" if isinstance(value, int) else f"{value:.4f}"


def run(scm: SCM, *, n: int = 2000, seed: int = 0, npz=None, oracles=None, device="cpu") -> tuple[dict, "Evaluation"]:
    """Every metric on n held-out units: {families: {name: metrics}, composition, reversibility, learned}."""
    units = held_out_units(scm, n, seed)
    evaluation = Evaluation(scm, units, npz=npz, oracles=oracles, device=device)
    results = {"units": n, "seed": seed, "families": {f.name: evaluation.family(f) for f in families(scm)}}
    results["composition"] = evaluation.composition()
    results["reversibility"] = evaluation.reversibility()
    results["learned"] = learned_gaps(scm)
    return results, evaluation
