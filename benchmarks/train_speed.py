"""Training speed: Pyro SVI (Trace_ELBO, Adam) against a plain PyTorch loop on the same network.

Both train the image mechanism of a DAG on the same batch: SVI through its model and guide,
the plain loop through the same decoder and encoder with the ELBO written by hand
(Bernoulli log-likelihood of one z draw plus the Gaussian KL in closed form). Rounds of
the two alternate so that other load on the machine hits both alike; the medians are printed
with their ratio, and the bare decoder's forward speed on 4,096 units for reference.

    python benchmarks/train_speed.py [--dag dags/dsprites.yaml] [--batch-size 128] [--steps 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyro  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from pyro.infer import SVI, Trace_ELBO  # noqa: E402

from engine.dag import load_dag  # noqa: E402
from engine.scm import build_scm  # noqa: E402
from engine.train import tune_cpu  # noqa: E402


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dag", default="dags/dsprites.yaml")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=30, help="steps per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = p.parse_args()
    tune_cpu(args.threads)

    dag = load_dag(args.dag)
    name = next(n for n in dag.order if dag.nodes[n].domain.kind == "image")
    pyro.set_rng_seed(0)
    scm = build_scm(dag)
    m = scm.mechanisms[name]
    with torch.no_grad():
        values = scm(args.batch_size)
    image, parents = values[name], scm.parents(name, values)

    pyro.clear_param_store()
    svi = SVI(m.model, m.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    pyro_rates, plain_rates = [], []
    with pyro.validation_enabled(False):
        for _ in range(3):  # warm up both
            svi.step(image, parents)
            plain_step(m, opt, image, parents)
        for _ in range(args.rounds):
            pyro_rates.append(timed(lambda: svi.step(image, parents), args.steps, args.batch_size))
            plain_rates.append(timed(lambda: plain_step(m, opt, image, parents), args.steps, args.batch_size))

    with torch.no_grad():
        take = torch.arange(4096) % args.batch_size
        par = {k: v[take] for k, v in parents.items()}
        z = torch.zeros(4096, m.latent_dim)
        m.probs(par, z)
        decoder = timed(lambda: m.probs(par, z), 5, 4096)

    svi_rate, plain_rate = statistics.median(pyro_rates), statistics.median(plain_rates)
    if args.json:
        print(json.dumps({"svi_images_per_s": svi_rate, "plain_images_per_s": plain_rate, "ratio_svi_to_plain": svi_rate / plain_rate,
                          "decoder_images_per_s": decoder, "threads": torch.get_num_threads(), "batch_size": args.batch_size}))
        return
    print(f"threads {torch.get_num_threads()}, batch {args.batch_size}, {args.rounds} rounds of {args.steps} steps (medians)")
    print(f"pyro SVI     {svi_rate:10,.0f} images/s")
    print(f"plain torch  {plain_rate:10,.0f} images/s")
    print(f"ratio SVI / plain: {svi_rate / plain_rate:.2f}")
    print(f"decoder forward (4,096 units): {decoder:,.0f} images/s")


if __name__ == "__main__":
    main()
