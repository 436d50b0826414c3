"""After training: test metrics of each image mechanism, and pictures of what it learned.

On held-out units (never seen in training):

- neg ELBO: -E_q[log p(image | parents, z)] + KL(q(z | image, parents) || p(z)), nats per image;
- reconstruction: the decoder's map at z = the encoder's mean (``reconstruct``), thresholded at 1/2, scored
  against the input by pixel accuracy and IoU (intersection over union of the on-pixels,
  averaged over images);
- decoder speed: images/s of one forward pass (the probability map) on 4,096 units;
- with a latent turn: how many turns the images leave open (``turn_ambiguity``), from the
  reconstructions' posteriors.

Writes ``report.json``, ``report.md``, ``reconstructions.png`` (inputs above their
reconstructions) and ``traversals.png`` (one row per label parent, swept over its domain
with z = 0 and the other parents fixed).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyro
import torch
from pyro.infer import Trace_ELBO

from engine.worlds.world import Units, World
from engine.model.dag import DagSpec
from engine.images import grid, save_png
from engine.model.scm import SCM

COLUMNS = 10  # traversal columns: values spread evenly over each domain


@torch.no_grad()
def evaluate(mechanism, images: torch.Tensor, parents: dict[str, torch.Tensor], batch: int = 1024) -> dict:
    """Test neg ELBO (nats/image), pixel accuracy and mean IoU of reconstructions at the encoder mean."""
    elbo, total, correct, iou, mae, spread = Trace_ELBO(), 0.0, 0.0, 0.0, 0.0, []
    n = len(images)
    gray = mechanism.domain.levels() > 2
    with pyro.validation_enabled(False):
        for i in range(0, n, batch):
            x = images[i:i + batch]
            par = {k: v[i:i + batch] for k, v in parents.items()}
            total += elbo.loss(mechanism.model, mechanism.guide, x, par)
            mean, turns = mechanism.reconstruct(x, par)  # a map in [0, 1], and the latent turn's posterior
            if turns is not None:
                spread.append(torch.special.entr(turns).sum(1).exp())
            if gray:  # the mean against the gray levels, and the masks of pixels above half brightness
                mae += float((mean * 255 - x).abs().mean((1, 2)).sum())
                x = x / 255
            recon, on = mean > 0.5, x > 0.5
            correct += float((recon == on).float().mean((1, 2)).sum())
            inter, union = (recon & on).sum((1, 2)).float(), (recon | on).sum((1, 2)).float()
            iou += float(torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).sum())
    out = {"units": n, "neg_elbo": total / n, "pixel_accuracy": correct / n, "iou": iou / n}
    if spread:
        out["turn_ambiguity"] = turn_ambiguity(mechanism, torch.cat(spread), parents)
    return out | ({"recon_mae_255": mae / n} if gray else {})


def turn_ambiguity(mechanism, spread: torch.Tensor, parents: dict[str, torch.Tensor]) -> dict:
    """How many latent turns the images leave open, from each one's exp(entropy) of p(k | image, parents, z).

    Averaged over all units, and by the value of each parent with named values: 1 where
    the image shows its turn, up to K where it shows none.
    """
    out = {"turns": mechanism.turns, "units": len(spread), "mean": float(spread.mean())}
    for name, domain in mechanism.parents.items():
        if domain.kind == "names":
            out[name] = {label: float(spread[parents[name] == i].mean()) for i, label in enumerate(domain.values) if (parents[name] == i).any()}
    return out


@torch.no_grad()
def decoder_speed(mechanism, parents: dict[str, torch.Tensor], n: int = 4096, repeats: int = 3) -> float:
    """Images/s of the decoder's forward pass (probability maps) on a batch of n units."""
    take = torch.arange(n, device=next(iter(parents.values())).device) % len(next(iter(parents.values())))
    par = {k: v[take] for k, v in parents.items()}
    z = torch.zeros(n, mechanism.latent_dim, device=take.device)
    mechanism.probs(par, z)
    if take.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        mechanism.probs(par, z)
    if take.is_cuda:
        torch.cuda.synchronize()
    return n * repeats / (time.perf_counter() - start)


@torch.no_grad()
def traversals(mechanism, base: dict[str, torch.Tensor]) -> np.ndarray:
    """One row per parent: that parent swept over (up to COLUMNS of) its values, the rest from ``base``, z = 0."""
    rows = []
    device = next(iter(base.values())).device
    for name, domain in mechanism.parents.items():
        if domain.is_discrete:
            picks = np.unique(np.linspace(0, domain.size - 1, min(domain.size, COLUMNS)).round().astype(int))
        elif np.isfinite(domain.low) and np.isfinite(domain.high):
            picks = np.linspace(domain.low, domain.high, COLUMNS)
        else:
            continue
        par = {k: v.expand(len(picks)).clone() for k, v in base.items()}
        par[name] = torch.as_tensor(picks, dtype=domain.dtype, device=device)
        maps = mechanism.probs(par, torch.zeros(len(picks), mechanism.latent_dim, device=device)).cpu().numpy()
        blank = np.full((COLUMNS - len(picks), *maps.shape[1:]), 0.5)
        rows.append(np.concatenate([maps, blank]))
    return np.concatenate(rows)


def write(scm: SCM, world: World, test: Units, config, out: Path, *, device="cpu", train=None) -> dict:
    """Score every learnable image node on the test units; write report.json, report.md and PNGs."""
    dag = world.dag
    units = test.subset(np.arange(len(test)) < config.eval_n)
    parents_all = {k: torch.as_tensor(units.labels[k], dtype=dag.nodes[k].domain.dtype).to(device) for k in dag.labels}
    out.mkdir(parents=True, exist_ok=True)
    nodes = {}
    for name, mechanism in scm.mechanisms.items():
        if not mechanism.learnable or not dag.nodes[name].domain.is_image:
            continue
        shape = dag.nodes[name].domain.shape
        images = torch.from_numpy(world.images(units)).to(device).float()
        parents = {p: parents_all[p] for p in dag.nodes[name].parents}
        metrics = evaluate(mechanism, images, parents)
        metrics["decoder_images_per_s"] = decoder_speed(mechanism, parents)
        with torch.no_grad():
            shown = images[:16]
            few = {k: v[:16] for k, v in parents.items()}
            recon = mechanism.reconstruct(shown, few)[0].cpu().numpy()
        shown = shown.cpu().numpy() / (255 if mechanism.domain.levels() > 2 else 1)
        pairs = np.concatenate([np.concatenate([shown[i:i + 8], recon[i:i + 8]]) for i in range(0, len(shown), 8)])
        save_png(grid(pairs, columns=min(8, len(shown))), out / "reconstructions.png", scale=2)
        save_png(grid(traversals(mechanism, {k: v[:1] for k, v in parents.items()}), columns=COLUMNS), out / "traversals.png", scale=2)
        nodes[name] = metrics
    report = {
        "dag": {"name": dag.name, "path": dag.path, "hash": dag.hash},
        "device": str(device),
        "train": {k: v for k, v in (train or {}).items() if k != "history"},
        "test": nodes,
        "config": {k: v for k, v in vars(config).items()},
        "files": ["model.pt", "reconstructions.png", "traversals.png"],
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report, (train or {}).get("history", [])))
    return report


def markdown(report: dict, history: list[dict]) -> str:
    """The report as a short Markdown page."""
    lines = [f"# Training report: {report['dag']['name']}", "",
             f"DAG `{report['dag']['path']}` (sha256 {report['dag']['hash'][:12]}), device {report['device']}.", ""]
    train = report["train"]
    if train:
        lines += [f"{train['epochs']} epochs in {train['seconds'] / 60:.1f} minutes of training.", ""]
    if history:
        lines += ["The training loss is the objective SVI minimises, per image: the neg ELBO with each image "
                  "mechanism's KL term times its `kl_weight`, plus the NLL of any learned label mechanism.", "",
                  "| epoch | train loss (nats/image) | images/s | seconds |", "| --- | --- | --- | --- |"]
        # train_neg_elbo: the same figure, in runs saved before it was named for what it is
        lines += [f"| {h['epoch']} | {h.get('train_loss', h.get('train_neg_elbo')):.2f} | {h['images_per_s']:.0f} | {h['seconds']:.0f} |" for h in history]
        lines.append("")
    for name, m in report["test"].items():
        lines += [f"## Node `{name}` on {m['units']:,} held-out test units", "",
                  f"- neg ELBO: {m['neg_elbo']:.2f} nats/image",
                  f"- reconstruction pixel accuracy: {m['pixel_accuracy']:.4f}",
                  f"- reconstruction IoU: {m['iou']:.4f}",
                  f"- decoder forward: {m['decoder_images_per_s']:,.0f} images/s (4,096 units)",
                  *ambiguity_lines(m.get("turn_ambiguity")), "",
                  "Inputs (odd rows) and reconstructions (even rows):", "", "![reconstructions](reconstructions.png)", "",
                  "Traversals (one row per parent, in the DAG's parent order; z = 0):", "", "![traversals](traversals.png)", ""]
    return "\n".join(lines)


def ambiguity_lines(ambiguity: dict | None) -> list[str]:
    """The report's lines on how many latent turns the images leave open (none without a latent turn)."""
    if not ambiguity:
        return []
    by = [f"{name}: " + ", ".join(f"{label} {v:.2f}" for label, v in values.items())
          for name, values in ambiguity.items() if isinstance(values, dict)]
    return [f"- latent turn: the posterior leaves {ambiguity['mean']:.2f} of {ambiguity['turns']} turns open "
            f"(exp of its entropy at the encoder's mean z, on {ambiguity['units']:,} units){'; by ' + '; '.join(by) if by else ''}"]
