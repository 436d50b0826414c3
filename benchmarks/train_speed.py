"""Training speed: Pyro SVI (Trace_ELBO, Adam) against a plain PyTorch loop on the same network.

Both train the image mechanism of a DAG on the same batch with the trainer's Adam options
(engine.svi.ADAM): the trainer's SVI step (engine.learn.svi) through its model and guide, and for
reference pyro.infer.SVI, which keeps one Adam per parameter tensor; the plain loop through the same
decoder and encoder with the ELBO written by hand (Bernoulli log-likelihood of one z draw
plus the Gaussian KL in closed form). Rounds of the two alternate so that other load on the
machine hits both alike; each ratio is the median over rounds of that round's ratio, so a
slow spell on the shared machine cancels out instead of landing on one side. Data loading is timed
through the trainer's own loader (shuffled batches of bit-packed images, unpacked), and the
bare decoder's forward speed on 4,096 units is printed for reference.

    python benchmarks/train_speed.py [--dag dags/dsprites.yaml] [--batch-size N: the trainer's default] [--steps 10] [--rounds 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # as cli.py does: huge pages for large CPU tensors

import pyro  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from pyro.infer import SVI as PyroSVI  # noqa: E402
from pyro.infer import Trace_ELBO  # noqa: E402

from engine.model.dag import load_dag  # noqa: E402
from engine.model.scm import build_scm  # noqa: E402
from engine.learn.svi import ADAM, SVI  # noqa: E402
from engine.device import tune_cpu  # noqa: E402
from engine.learn.train import TrainConfig, batch_values, batches, load_units  # noqa: E402
from engine.worlds.world import build_world  # noqa: E402


def plain_step(m, opt, image, parents) -> float:
    """One step of the hand-written objective: -log p(x | z) + beta KL(q(z | x) || N(0, I)), z ~ q."""
    z_loc, z_scale = m.posterior(image, parents)
    z = z_loc + z_scale * torch.randn_like(z_loc)
    nll = F.binary_cross_entropy_with_logits(m.logits(parents, z), image, reduction="sum")
    kl = (0.5 * (z_loc**2 + z_scale**2 - 1) - z_scale.log()).sum()
    loss = nll + m.config["kl_weight"] * kl
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def timed(step, steps: int, batch: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def loading_rate(dag, name: str, batch_size: int, units: int = 20_000) -> float:
    """Images/s through the trainer's loader: a shuffled batch of labels and packed images, unpacked."""
    world = build_world(dag)
    loaded = load_units(world, world.train_units(units, 0))
    start, count = time.perf_counter(), 0
    for batch in batches(loaded, batch_size, seed=0):
        count += len(batch_values(batch, dag, "cpu")[name])
    return count / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dag", default="dags/dsprites.yaml")
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="default: the trainer's")
    p.add_argument("--steps", type=int, default=10, help="steps per round")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = p.parse_args()
    tune_cpu(args.threads)

    dag = load_dag(args.dag)
    name = next(n for n in dag.order if dag.nodes[n].domain.is_image)
    pyro.set_rng_seed(0)
    scm = build_scm(dag)
    m = scm.mechanisms[name]
    with torch.no_grad():
        values = scm(args.batch_size)
    image, parents = values[name], scm.parents(name, values)

    pyro.clear_param_store()
    svi = SVI({name: (m.model, m.guide)}, lr=1e-3)
    reference = PyroSVI(m.model, m.guide, pyro.optim.Adam({"lr": 1e-3, **ADAM}), Trace_ELBO())
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, **ADAM)
    steps = {
        "svi": lambda: svi.step({name: (image, parents)}),
        "plain": lambda: plain_step(m, opt, image, parents),
        "pyro.infer.SVI": lambda: reference.step(image, parents),
    }
    rates = {k: [] for k in steps}
    with pyro.validation_enabled(False):
        for step in steps.values():  # warm up
            for _ in range(3):
                step()
        for _ in range(args.rounds):
            for k, step in steps.items():
                rates[k].append(timed(step, args.steps, args.batch_size))

    with torch.no_grad():
        take = torch.arange(4096) % args.batch_size
        par = {k: v[take] for k, v in parents.items()}
        z = torch.zeros(4096, m.latent_dim)
        m.probs(par, z)
        decoder = timed(lambda: m.probs(par, z), 5, 4096)

    loading = loading_rate(dag, name, args.batch_size)
    svi_rate, plain_rate, reference_rate = (statistics.median(rates[k]) for k in steps)
    svi_ratio = statistics.median(a / b for a, b in zip(rates["svi"], rates["plain"]))
    reference_ratio = statistics.median(a / b for a, b in zip(rates["pyro.infer.SVI"], rates["plain"]))
    if args.json:
        print(json.dumps({"svi_images_per_s": svi_rate, "plain_images_per_s": plain_rate, "ratio_svi_to_plain": svi_ratio,
                          "pyro_infer_svi_images_per_s": reference_rate, "ratio_pyro_infer_svi_to_plain": reference_ratio,
                          "loading_images_per_s": loading, "loading_share_of_svi_step": svi_rate / loading,
                          "decoder_images_per_s": decoder, "threads": torch.get_num_threads(), "batch_size": args.batch_size}))
        return
    print(f"threads {torch.get_num_threads()}, batch {args.batch_size}, {args.rounds} rounds of {args.steps} steps (medians)")
    print(f"SVI (engine.learn.svi)   {svi_rate:10,.0f} images/s")
    print(f"plain torch        {plain_rate:10,.0f} images/s")
    print(f"pyro.infer.SVI     {reference_rate:10,.0f} images/s (one Adam per parameter tensor)")
    print(f"ratio SVI / plain: {svi_ratio:.2f} (pyro.infer.SVI / plain: {reference_ratio:.2f}), medians of per-round ratios")
    print(f"data loading       {loading:10,.0f} images/s: {svi_rate / loading:.1%} of an SVI step's time")
    print(f"decoder forward (4,096 units): {decoder:,.0f} images/s")


if __name__ == "__main__":
    main()
