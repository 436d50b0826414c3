"""Measured counterfactuals for any world: the world's renderer is the truth, the declared SCM the label oracle.

On held-out units (the world's test split, never used in training), for each intervention
family (the world's own, or from the DAG: the null intervention, one family per label node
and one over all of them):

- fidelity (worlds with a renderer): the model's counterfactual image against the true one,
  the renderer applied to the counterfactual labels (factors the DAG hides keep the unit's
  own values): IoU for binary images, PSNR and mean absolute error on 0..255 for gray ones,
  and whatever else the world measures (``World.fidelity``);
- labels: total variation between the engine's (factual, counterfactual) label pairs and a
  twin-network simulation of the declared SCM (prior noise pushed through both worlds), per
  node on a coarse grid, beside the same distance for a naive answer that redraws the noise;
- effectiveness (with pseudo-oracles): the counterfactual labels predicted from its image;
- composition: the null intervention applied 1 and 10 times, IoU (binary) and mean absolute
  pixel distance on 0..255 (``mae_255``, as Monteiro et al., ICLR 2023) with the input;
- reversibility: do(random value) then do(original value), the same distances after 1 and 5 cycles.

A random new value is, for a node of names or a grid, a uniformly random other value; for a
real node, the value of another held-out unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyro.poutine as poutine
import torch

from engine.causal import inference
from engine.model.scm import SCM, build_scm
from engine.worlds.world import Family, Units, World

BINS = 8
LABEL_UNITS = 100_000


def targets(family: Family, scm: SCM, factual: dict[str, torch.Tensor], rng: torch.Generator) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-unit intervention values of a family, and which units it applies to."""
    n = next(iter(factual.values())).shape[0]
    keep = torch.ones(n, dtype=torch.bool)
    out = {}
    for node in family.nodes:
        domain = scm.dag.nodes[node].domain
        if family.value is not None:
            out[node] = torch.full((n,), domain.encode(family.value), dtype=domain.dtype)
            keep &= out[node] != factual[node].cpu()
        elif domain.is_discrete:  # a uniformly random value other than the unit's own
            shift = torch.randint(1, domain.size, (n,), generator=rng)
            out[node] = (factual[node].cpu() + shift) % domain.size
        else:  # another unit's value
            shift = torch.randint(1, max(n, 2), (n,), generator=rng)
            out[node] = factual[node].cpu()[(torch.arange(n) + shift) % n]
    return out, keep


def families(scm: SCM, world: World | None = None) -> list[Family]:
    """The world's own families, else null, do(each label node) and do(every label node) at once."""
    own = world.families() if world is not None else None
    if own is not None:
        return own
    labels = scm.dag.labels
    out = [Family("null", ())] + [Family(f"do({n})", (n,)) for n in labels]
    if len(labels) > 1:
        out.append(Family(f"do({', '.join(labels)})", tuple(labels)))
    return out


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixel IoU of binary image batches (1 where both are empty)."""
    a, b = a.reshape(len(a), -1) > 0.5, b.reshape(len(b), -1) > 0.5
    inter, union = (a & b).sum(1), (a | b).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def mae_255(a: np.ndarray, b: np.ndarray, levels: int) -> np.ndarray:
    """Mean absolute pixel distance of image batches on a 0..255 scale."""
    scale = 255.0 if levels == 2 else 1.0
    return np.abs(a.reshape(len(a), -1).astype(np.float64) - b.reshape(len(b), -1)).mean(1) * scale


class Evaluation:
    """Runs every metric of one trained model on one set of held-out units of its world."""

    def __init__(self, scm: SCM, world: World, units: Units, *, oracles=None, device="cpu", batch: int = 1024, seed: int = 0):
        self.scm, self.world, self.units, self.oracles, self.device, self.batch = scm, world, units, oracles, device, batch
        self.image = scm.dag.images[0]
        self.domain = scm.dag.nodes[self.image].domain
        self.labels = list(scm.dag.labels)
        self.images = world.images(units)
        self.seed, self.rng = seed, torch.Generator().manual_seed(seed)

    def factual(self, rows=slice(None)) -> dict[str, torch.Tensor]:
        values = {n: torch.as_tensor(self.units.labels[n][rows], dtype=self.scm.dag.nodes[n].domain.dtype, device=self.device) for n in self.labels}
        values[self.image] = torch.as_tensor(self.images[rows], dtype=torch.float32, device=self.device)
        return values

    def truth(self, values: dict[str, torch.Tensor], rows) -> np.ndarray:
        """The renderer applied to counterfactual labels; hidden factors keep the unit's values."""
        return self.world.render({n: values[n].cpu().numpy() for n in self.labels}, self.units.subset(rows))

    def distance(self, images: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        """IoU (binary images) and mean absolute pixel distance on 0..255."""
        out = {"iou": float(iou(images, reference).mean())} if self.domain.levels() == 2 else {}
        out["mae_255"] = float(mae_255(images, reference, self.domain.levels()).mean())
        return out

    def counterfactual(self, factual, act) -> dict[str, torch.Tensor]:
        """Batched abduction-action-prediction."""
        n = factual[self.image].shape[0]
        parts = []
        for start in range(0, n, self.batch):
            part = slice(start, start + self.batch)
            parts.append(inference.counterfactual(self.scm, {k: v[part] for k, v in factual.items()}, {k: v[part].to(self.device) for k, v in act.items()}).values)
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    @torch.no_grad()
    def family(self, family: Family) -> dict:
        factual = self.factual()
        act, keep = targets(family, self.scm, factual, self.rng)
        rows = keep.cpu().numpy()
        factual = {k: v[keep.to(v.device)] for k, v in factual.items()}
        act = {k: v[keep] for k, v in act.items()}
        cf = self.counterfactual(factual, act)
        result = {"units": int(keep.sum())}
        if self.world.has_renderer:
            result.update(self.world.fidelity(cf[self.image].cpu().numpy(), self.truth(cf, rows)))
        if self.oracles is not None:
            result.update(self.oracles.score(cf[self.image].cpu().numpy(), {n: cf[n].cpu().numpy() for n in self.labels}))
        result["labels_tv"], result["labels_tv_naive"] = label_correctness(self.scm, family, self.seed)
        return result

    @torch.no_grad()
    def composition(self, times=(1, 10)) -> dict:
        """The null intervention applied repeatedly, each time abducting from the last answer."""
        values, out = self.factual(), {}
        for k in range(1, max(times) + 1):
            values = self.counterfactual(values, {})
            if k in times:
                out |= {f"{name}_after_{k}": v for name, v in self.distance(values[self.image].cpu().numpy(), self.images).items()}
        return out

    @torch.no_grad()
    def reversibility(self, cycles=(1, 5)) -> dict:
        """do(random values of shape, x, y or every label) then do(the original values), repeated."""
        nodes = tuple(n for n in self.world.reverse if n in self.labels) or tuple(self.labels)
        family = Family("reverse", nodes)
        original = self.factual()
        values, out = original, {}
        for k in range(1, max(cycles) + 1):
            act, _ = targets(family, self.scm, values, self.rng)
            values = self.counterfactual(values, act)
            values = self.counterfactual(values, {n: original[n] for n in nodes})
            if k in cycles:
                out |= {f"{name}_after_{k}": v for name, v in self.distance(values[self.image].cpu().numpy(), self.images).items()}
                back = torch.stack([values[n] == original[n] for n in self.labels]).all(0)
                out[f"labels_back_after_{k}"] = float(back.float().mean())  # label counterfactuals are distributions
        out["intervened"] = ", ".join(nodes)
        return out

    def samples(self, family: Family, k: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inputs, counterfactuals and their truths for the first k units of a family (for the picture)."""
        rows = slice(0, k)
        factual = self.factual(rows)
        act, _ = targets(family, self.scm, factual, torch.Generator().manual_seed(0))
        with torch.no_grad():
            cf = self.counterfactual(factual, act)
        truth = self.truth(cf, np.arange(k)) if self.world.has_renderer else self.images[rows]
        return self.images[rows], cf[self.image].cpu().numpy(), truth


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
        act, keep = targets(family, world, factual, rng)
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
        domain = scm.dag.nodes[node].domain
        if domain.is_discrete:
            bins = min(domain.size, BINS)
            coarse = lambda v: (v[keep] * bins // domain.size).numpy()  # noqa: E731
        else:  # real values in BINS quantile bins of the factual ones
            bins = BINS
            edges = np.quantile(factual[node][keep].numpy(), np.linspace(0, 1, BINS + 1)[1:-1])
            coarse = lambda v: np.digitize(v[keep].numpy(), edges)  # noqa: E731
        f, a, t = coarse(factual[node]), coarse(answer[node]), coarse(truth[node])
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
        if truth is learned or not scm.dag.nodes[name].domain.is_discrete:
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
    columns = ["units", "iou", "above_0.9", "psnr", "mae_255", "pendulum_iou", "shadow_iou", "labels_tv", "labels_tv_naive", "shape_accuracy", "scale_mae", "orientation_mae", "x_mae", "y_mae"]
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


def run(scm: SCM, world: World, *, n: int = 2000, seed: int = 0, oracles=None, device="cpu") -> tuple[dict, "Evaluation"]:
    """Every metric on n held-out units: {families: {name: metrics}, composition, reversibility, learned}."""
    units = world.test_units(n, seed)
    evaluation = Evaluation(scm, world, units, oracles=oracles, device=device, seed=seed)
    results = {"units": len(units), "seed": seed, "world": world.name, "families": {f.name: evaluation.family(f) for f in families(scm, world)}}
    results["composition"] = evaluation.composition()
    results["reversibility"] = evaluation.reversibility()
    results["learned"] = learned_gaps(scm)
    return results, evaluation
