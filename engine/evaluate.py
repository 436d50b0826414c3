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
- identifiability bounds (binary worlds whose renderer names the factors a DAG hides,
  ``World.hidden_values``): the expected IoU of a best guess among the hidden values that the
  factual image cannot tell apart, ``bound`` and ``bound_exact``, and among all of them,
  ``bound_uncoupled`` (what the data alone guarantee; ``engine.identifiability``);
- composition: the null intervention applied 1 and 10 times, IoU (binary) and mean absolute
  pixel distance on 0..255 (``mae_255``, as Monteiro et al., ICLR 2023) with the input;
- reversibility: do(random value) then do(original value), the same distances after 1 and 5 cycles.

A random new value is, for a node of names or a grid, a uniformly random other value; for a
real node, the value of another held-out unit. A family's ``value`` may instead name how its
targets are drawn:

- ``RARE``: each unit is sent to one of the rarest values of the node given the unit's own
  parents under the DAG's declared mechanism, the bottom ``RARE_SHARE`` of its K values by
  p(value | parents) (at least one; ties go to the value farther from the mode), drawn
  uniformly among them. Skipped for a root with a uniform prior, where no value is rare;
- ``GRID``: the units are spread evenly over every combination of the nodes' values, at least
  ``CELL_UNITS`` per combination (a unit may serve several), and the fidelity is also reported
  per cell of the counterfactual labels (``cells``), printed worst first and drawn as a
  heatmap beside the model.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyro.poutine as poutine
import torch

from engine.causal import inference
from engine.distributed import Ranks
from engine.identifiability import bound, consistent, distances, hidden_values, uncoupled
from engine.images import iou, mae_255
from engine.model.scm import SCM, build_scm
from engine.worlds.world import Family, Units, World

BINS = 8
LABEL_UNITS = 100_000
RARE = "<rare>"  # Family.value: targets among the values the declared mechanism makes rarest
GRID = "<grid>"  # Family.value: targets spread evenly over the grid of the nodes' values
RARE_SHARE = 0.1  # the rare values: this share of a node's values, the least likely given its parents
CELL_UNITS = 20  # GRID: the fewest units per combination of values
WORST_CELLS = 5  # GRID: cells printed by table()


def targets(family: Family, scm: SCM, factual: dict[str, torch.Tensor], rng: torch.Generator) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-unit intervention values of a family, and the rows of ``factual`` they apply to (long, on the CPU)."""
    if family.value == GRID:
        return grid_targets(family, scm, factual, rng)
    n = next(iter(factual.values())).shape[0]
    keep = torch.ones(n, dtype=torch.bool)
    out = {}
    for node in family.nodes:
        domain = scm.dag.nodes[node].domain
        if family.value == RARE:
            rare = rare_values(scm, node, factual)
            pick = torch.randint(0, rare.shape[1], (n,), generator=rng)
            out[node] = rare.gather(1, pick[:, None]).squeeze(1)
            keep &= out[node] != factual[node].cpu()
        elif family.value is not None:
            out[node] = torch.full((n,), domain.encode(family.value), dtype=domain.dtype)
            keep &= out[node] != factual[node].cpu()
        elif domain.is_discrete:  # a uniformly random value other than the unit's own
            shift = torch.randint(1, domain.size, (n,), generator=rng)
            out[node] = (factual[node].cpu() + shift) % domain.size
        else:  # another unit's value
            shift = torch.randint(1, max(n, 2), (n,), generator=rng)
            out[node] = factual[node].cpu()[(torch.arange(n) + shift) % n]
    rows = keep.nonzero().squeeze(1)
    return {k: v[rows] for k, v in out.items()}, rows


def value_probs(scm: SCM, node: str, factual: dict[str, torch.Tensor]) -> torch.Tensor:
    """p(value | each unit's parents) under the node's declared mechanism, for every value: (N, K) on the CPU."""
    mechanism, spec = scm.mechanisms[node].truth(), scm.dag.nodes[node]
    n = len(next(iter(factual.values()))) if factual else 1
    parents = {p: factual[p].cpu() for p in spec.parents}
    with torch.no_grad():
        return torch.stack([mechanism.log_prob(torch.full((n,), v), parents).exp() for v in range(spec.domain.size)], 1).cpu()


def rare_values(scm: SCM, node: str, factual: dict[str, torch.Tensor], share: float = RARE_SHARE) -> torch.Tensor:
    """(N, k): each unit's k = max(1, floor(share K)) least likely values given its parents, rarest first.

    Values are ranked by p(value | parents) under the declared mechanism; among equal
    probabilities the value farther from the mode (in grid steps) counts as rarer.
    """
    p = value_probs(scm, node, factual).double()
    k = max(1, int(share * p.shape[1]))
    steps = torch.arange(p.shape[1], dtype=torch.float64)
    distance = (steps[None, :] - p.argmax(1, keepdim=True)).abs()
    far = torch.argsort(-distance, dim=1, stable=True)  # farthest first, then a stable sort by p: lexicographic
    return far.gather(1, torch.argsort(p.gather(1, far), dim=1, stable=True))[:, :k]


def uniform_root(scm: SCM, node: str) -> bool:
    """Whether a node has no parents and a uniform prior (no value of it is rare)."""
    if scm.dag.nodes[node].parents:
        return False
    p = value_probs(scm, node, {})[0]
    return bool(torch.allclose(p, p.mean().expand_as(p)))


def grid_targets(family: Family, scm: SCM, factual: dict[str, torch.Tensor], rng: torch.Generator) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Every combination of the nodes' values, each given to max(CELL_UNITS, N / cells) units whose own combination differs."""
    domains = [scm.dag.nodes[node].domain for node in family.nodes]
    n = next(iter(factual.values())).shape[0]
    cells = torch.cartesian_prod(*[torch.arange(d.size) for d in domains]).reshape(-1, len(domains))
    per = max(CELL_UNITS, math.ceil(n / len(cells)))
    own = torch.stack([factual[node].cpu() for node in family.nodes], 1)
    rows = []
    for cell in cells:
        other = (own != cell).any(1).nonzero().squeeze(1)
        pick = torch.randperm(len(other), generator=rng).repeat(math.ceil(per / max(len(other), 1)))[:per]
        rows.append(other[pick])
    rows = torch.cat(rows)
    values = cells.repeat_interleave(per, 0)
    return {node: values[:, i] for i, node in enumerate(family.nodes)}, rows


def families(scm: SCM, world: World | None = None) -> list[Family]:
    """The world's own families, else null, do(each label node) and do(every label node) at once."""
    own = world.families() if world is not None else None
    if own is not None:
        return [f for f in own if f.value != RARE or not any(uniform_root(scm, n) for n in f.nodes)]
    labels = scm.dag.labels
    out = [Family("null", ())] + [Family(f"do({n})", (n,)) for n in labels]
    if len(labels) > 1:
        out.append(Family(f"do({', '.join(labels)})", tuple(labels)))
    return out


class Evaluation:
    """Runs every metric of one trained model on one set of held-out units of its world."""

    def __init__(self, scm: SCM, world: World, units: Units, *, oracles=None, device="cpu", batch: int = 1024, seed: int = 0,
                 draws: int | None = None, shared: bool = True):
        self.scm, self.world, self.units, self.oracles, self.device, self.batch = scm, world, units, oracles, device, batch
        self.shared = shared  # compute SHARED_METRICS, which do not depend on the units (one share of several: rank 0's alone)
        self.image = scm.dag.images[0]
        self.domain = scm.dag.nodes[self.image].domain
        self.labels = list(scm.dag.labels)
        self.images = world.images(units)
        self.seed, self.rng = seed, torch.Generator().manual_seed(seed if draws is None else draws)  # draws: the targets' seed
        self.hidden = hidden_values(world) if self.domain.levels() == 2 else {}
        if self.hidden:  # the consistent hidden values of each unit, for the identifiability bound
            d, own, near = distances(world, units, self.images, self.hidden, self.labels)
            self.allowed = {"bound": consistent(d, own, near), "bound_exact": d <= own[:, None], "bound_uncoupled": uncoupled(d)}

    def factual(self, rows=slice(None), *, image: bool = True) -> dict[str, torch.Tensor]:
        values = {n: torch.as_tensor(self.units.labels[n][rows], dtype=self.scm.dag.nodes[n].domain.dtype, device=self.device) for n in self.labels}
        if not image:
            return values
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
        act, rows = targets(family, self.scm, factual, self.rng)
        factual = {k: v[rows.to(v.device)] for k, v in factual.items()}
        cf = self.counterfactual(factual, act)
        result = {"units": len(rows)}
        if self.world.has_renderer:
            images, truth = cf[self.image].cpu().numpy(), self.truth(cf, rows.numpy())
            result.update(self.world.fidelity(images, truth))
            if self.hidden:
                labels, like = {n: cf[n].cpu().numpy() for n in self.labels}, self.units.subset(rows.numpy())
                result |= {k: bound(self.world, like, labels, truth, self.hidden, allowed[rows.numpy()]) for k, allowed in self.allowed.items()}
            if family.value == GRID:
                result["cells"] = self.cells(family, cf, images, truth)
        if self.oracles is not None:
            result.update(self.oracles.score(cf[self.image].cpu().numpy(), {n: cf[n].cpu().numpy() for n in self.labels}))
        if self.shared:
            result["labels_tv"], result["labels_tv_naive"] = label_correctness(self.scm, family, self.seed)
        return result

    def cells(self, family: Family, cf: dict[str, torch.Tensor], images: np.ndarray, truth: np.ndarray) -> dict:
        """Mean fidelity per combination of the counterfactual labels of the family's nodes (IoU; gray: mae_255)."""
        domains = [self.scm.dag.nodes[n].domain for n in family.nodes]
        shape = tuple(d.size for d in domains)
        metric = "iou" if self.domain.levels() == 2 else "mae_255"
        scores = iou(images, truth) if metric == "iou" else mae_255(images, truth, self.domain.levels())
        cell = np.ravel_multi_index([cf[n].cpu().numpy() for n in family.nodes], shape)
        units = np.bincount(cell, minlength=math.prod(shape))
        total = np.bincount(cell, weights=scores, minlength=math.prod(shape))
        mean = [float(t / u) if u else None for t, u in zip(total, units)]
        return {"nodes": list(family.nodes), "values": [[_label(d, i) for i in range(d.size)] for d in domains],
                "metric": metric, "units": np.asarray(units).reshape(shape).tolist(), metric: np.asarray(mean, dtype=object).reshape(shape).tolist()}

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

    def samples(self, family: Family, k: int = 8, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inputs, counterfactuals and their truths for the first k units of a family (for the picture).

        A family skips the units its target would not move (the squares, for do(shape=square)), so
        the units are looked through in order until k are found, or all of them (fewer, or none,
        where the units are sorted by the factor the family moves, as a whole split is).
        """
        found, acts, count = [], [], 0
        for start in range(0, len(self.units), chunk):
            rows = torch.arange(start, min(start + chunk, len(self.units)))
            act, picked = targets(family, self.scm, self.factual(rows.numpy(), image=False), torch.Generator().manual_seed(0))
            found.append(rows[picked[:k - count]])
            acts.append({n: v[:len(found[-1])] for n, v in act.items()})
            count += len(found[-1])
            if count == k:
                break
        picked = torch.cat(found).numpy()
        if not len(picked):
            empty = self.images[:0]
            return empty, empty, empty
        act = {n: torch.cat([a[n] for a in acts]) for n in acts[0]}
        with torch.no_grad():
            cf = self.counterfactual(self.factual(picked), act)
        truth = self.truth(cf, picked) if self.world.has_renderer else self.images[picked]
        return self.images[picked], cf[self.image].cpu().numpy(), truth


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
        act, rows = targets(family, world, factual, rng)
        factual, noise = {k: v[rows] for k, v in factual.items()}, {k: v[rows] for k, v in noise.items()}
        with poutine.condition(data=noise), poutine.do(data=act):
            truth = world(len(rows))
        device = _device(model)
        on = lambda d: {k: v.to(device) for k, v in d.items()}
        engine = {k: v.cpu() for k, v in inference.counterfactual(model, on(factual), on(act)).values.items()}
        with poutine.do(data=act):
            naive = world(len(rows))
    return _tv(world, factual, engine, truth), _tv(world, factual, naive, truth)


def _device(scm: SCM) -> torch.device:
    for m in scm.mechanisms.values():
        if isinstance(m, torch.nn.Module):
            return next(m.parameters()).device
    return torch.device("cpu")


def _tv(scm: SCM, factual, answer, truth) -> float:
    worst = 0.0
    for node in scm.order:
        domain = scm.dag.nodes[node].domain
        if domain.is_discrete:
            bins = min(domain.size, BINS)
            coarse = lambda v: (v * bins // domain.size).numpy()  # noqa: E731
        else:  # real values in BINS quantile bins of the factual ones
            bins = BINS
            edges = np.quantile(factual[node].numpy(), np.linspace(0, 1, BINS + 1)[1:-1])
            coarse = lambda v: np.digitize(v.numpy(), edges)  # noqa: E731
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


TABLE_FIRST = ("units", "iou", "bound", "bound_exact", "bound_uncoupled", "above_0.9", "psnr", "mae_255", "labels_tv", "labels_tv_naive")


def table(results: dict) -> str:
    """The evaluation as a readable table: one row per family, then the soundness metrics."""
    families = {k: v for k, v in results["families"].items()}
    found = dict.fromkeys(k for v in families.values() for k, x in v.items() if not isinstance(x, dict))  # a world's own metrics too, as they come
    shown = [c for c in TABLE_FIRST if c in found] + [c for c in found if c not in TABLE_FIRST]
    rows = [f"{'family':<22}" + "".join(f"{c:>16}" for c in shown)]
    for name, metrics in families.items():
        rows.append(f"{name:<22}" + "".join(f"{_cell(metrics.get(c)):>16}" for c in shown))
    for part in ("composition", "reversibility"):
        rows.append(f"\n{part}: " + ", ".join(f"{k} {_cell(v)}" for k, v in results[part].items()))
    for name, gap in results.get("learned", {}).items():
        rows.append(f"learned p({name} | parents) vs declared: TV mean {gap['tv_mean']:.4f}, max {gap['tv_max']:.4f} over {gap['configurations']} parent configurations")
    for name, metrics in families.items():
        if "cells" in metrics:
            rows.append(f"\nworst cells of {name}: " + "; ".join(worst_cells(metrics["cells"])))
    for path in results.get("heatmaps", []):
        rows.append(f"heatmap: {path}")
    return "\n".join(rows)


def worst_cells(cells: dict, k: int = WORST_CELLS) -> list[str]:
    """The k cells of a GRID family with the worst fidelity, as '(heart, 171deg) iou 0.912 (20 units)'."""
    metric = cells["metric"]
    flat = []
    for index in np.ndindex(*[len(v) for v in cells["values"]]):
        score = _at(cells[metric], index)
        if score is not None:
            flat.append((score, index, _at(cells["units"], index)))
    flat.sort(key=lambda c: c[0], reverse=metric != "iou")
    return [f"({', '.join(str(v[i]) for v, i in zip(cells['values'], index))}) {metric} {score:.4f} ({units} units)" for score, index, units in flat[:k]]


def _at(nested, index):
    for i in index:
        nested = nested[i]
    return nested


def _label(domain, encoded: int) -> str:
    """A value as a table shows it: a name, a grid value, an angle in whole degrees."""
    value = domain.decode(encoded)
    if domain.unit == "rad":
        return f"{math.degrees(value):.0f}deg"
    return value if isinstance(value, str) else f"{value:g}"


def heatmaps(results: dict, out) -> list[Path]:
    """One PNG per two-node GRID family, its fidelity per cell (matplotlib's Agg canvas), into ``out``:
    a folder, or an ``engine.outputs.Output`` (whose ``path(name)`` lists the file in the folder's manifest)."""
    where = out.path if hasattr(out, "path") else (lambda name: Path(out) / name)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from engine.files import write_atomic

    written = []
    for name, metrics in results["families"].items():
        cells = metrics.get("cells")
        if cells is None or len(cells["nodes"]) != 2:
            continue
        metric, (rows, cols) = cells["metric"], cells["values"]
        grid = np.array([[np.nan if v is None else v for v in row] for row in cells[metric]], dtype=float)
        figure = Figure(figsize=(max(4.0, 0.28 * len(cols) + 2.5), 0.45 * len(rows) + 1.8), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        scale = {"vmin": min(0.9, float(np.nanmin(grid))), "vmax": 1.0} if metric == "iou" else {}  # IoU: one scale for every model
        image = axes.imshow(grid, cmap="viridis" if metric == "iou" else "viridis_r", aspect="auto", **scale)
        axes.set_xticks(range(len(cols)), cols, rotation=90, fontsize=7)
        axes.set_yticks(range(len(rows)), rows, fontsize=8)
        axes.set_xlabel(cells["nodes"][1])
        axes.set_ylabel(cells["nodes"][0])
        worst = np.nanargmin(grid) if metric == "iou" else np.nanargmax(grid)
        axes.set_title(f"{name}: {metric} per counterfactual cell (worst {grid.flat[worst]:.3f})", fontsize=9)
        if len(cols) <= 12:
            for (r, c), v in np.ndenumerate(grid):
                axes.text(c, r, f"{v:.3f}", ha="center", va="center", fontsize=7, color="w")
        figure.colorbar(image, ax=axes, label=metric)
        path = where(f"{metric}_{'_'.join(cells['nodes'])}.png")
        written.append(write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=120)))
    return written


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:,}" if isinstance(value, int) else f"{value:.4f}"


def run(scm: SCM, world: World, *, n: int | None = 2000, seed: int = 0, oracles=None, device="cpu", out=None,
        ranks: Ranks | None = None) -> tuple[dict, "Evaluation"]:
    """Every metric on n held-out units (None: every held-out unit): {families: {name: metrics}, composition, ...}.

    With ``out`` (a folder or an ``engine.outputs.Output``, the model's), the per-cell heatmaps
    of GRID families are written there. Under torchrun (``ranks``), each rank evaluates its
    contiguous share of the units, drawing its random targets from its own seed
    (``Ranks.seed``: rank 0 keeps ``seed``), and rank 0 merges the shares (``merge``); the
    other ranks get an empty dict.
    """
    ranks = ranks if ranks is not None else Ranks()
    units = world.held_out_units() if n is None else world.test_units(n, seed)
    evaluation, share = evaluate_share(scm, world, units, ranks.rank, ranks.size, seed=seed, oracles=oracles, device=device)
    parts = ranks.gather_objects(share)
    if parts is None:
        return {}, evaluation
    results = {"units": len(units), "seed": seed, "world": world.name, "processes": ranks.size} | merge(parts)
    results["learned"] = learned_gaps(scm)
    if out is not None:
        results["heatmaps"] = [str(p) for p in heatmaps(results, out)]
    return results, evaluation


def evaluate_share(scm: SCM, world: World, units: Units, rank: int, size: int, *, seed: int = 0, oracles=None, device="cpu") -> tuple["Evaluation", dict]:
    """Rank ``rank`` of ``size``'s evaluation of its contiguous share of ``units``, and its results.

    Its random targets and noise draws come from generators seeded by ``Ranks.seed`` (rank 0:
    ``seed``), whatever the program drew before.
    """
    rows, draws = np.array_split(np.arange(len(units)), size)[rank], Ranks(rank, size).seed(seed)
    evaluation = Evaluation(scm, world, units.subset(rows), oracles=oracles, device=device, seed=seed, draws=draws, shared=rank == 0)
    with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
        torch.manual_seed(draws)  # the noise posteriors' draws too: a share's results depend on its rank alone
        families_ = {f.name: evaluation.family(f) for f in families(scm, world)}
        result = {"share": len(rows), "families": families_, "composition": evaluation.composition(), "reversibility": evaluation.reversibility()}
    return evaluation, result


def merge(parts: list[dict]) -> dict:
    """The results of one evaluation from its shares' (rank order): each mean weighted by its share's units.

    A family's means are weighted by its units in each share, composition and reversibility by
    the share's units, a GRID family's cells by their own units; the label distances, which
    come from one simulation of the declared SCM whatever the units, only rank 0 computes.
    """
    first = parts[0]
    if len(parts) == 1:
        return {k: v for k, v in first.items() if k != "share"}
    families_ = {name: _merged([p["families"][name] for p in parts], [p["families"][name]["units"] for p in parts]) for name in first["families"]}
    for name, family in families_.items():
        family["units"] = sum(p["families"][name]["units"] for p in parts)
    shares = [p["share"] for p in parts]
    return {"families": families_, "composition": _merged([p["composition"] for p in parts], shares),
            "reversibility": _merged([p["reversibility"] for p in parts], shares)}


SHARED_METRICS = ("labels_tv", "labels_tv_naive")  # from the declared SCM's simulation, not from the units


def _merged(dicts: list[dict], weights: list[int]) -> dict:
    out = {}
    for key, value in dicts[0].items():  # rank 0's share alone holds SHARED_METRICS
        if key == "cells":
            out[key] = _merged_cells([d[key] for d in dicts])
        elif key in SHARED_METRICS or isinstance(value, (str, bool)) or not isinstance(value, (int, float)):
            out[key] = value
        else:
            out[key] = sum(w * d[key] for w, d in zip(weights, dicts)) / max(sum(weights), 1)
    return out


def _merged_cells(cells: list[dict]) -> dict:
    metric = cells[0]["metric"]
    units = np.sum([np.asarray(c["units"], dtype=np.float64) for c in cells], axis=0)
    means = [np.asarray(c[metric], dtype=object) for c in cells]
    total = np.sum([np.asarray(c["units"], dtype=np.float64) * np.where(m == None, 0.0, m).astype(np.float64) for c, m in zip(cells, means)], axis=0)  # noqa: E711
    mean = np.where(units > 0, total / np.maximum(units, 1), np.nan)
    return cells[0] | {"units": units.astype(np.int64).tolist(), metric: np.asarray([None if np.isnan(m) else float(m) for m in mean.ravel()], dtype=object).reshape(units.shape).tolist()}
