"""Data-parallel training speed: images/s of the trainer's SVI step in 1 and 2 processes, and the scaling efficiency.

    python benchmarks/train_scaling.py [--dag dags/dsprites.yaml] [--batch-size N: the trainer's default]
                                       [--steps 20] [--rounds 3] [--procs 1,2] [--json]

Each process count runs through torchrun's own agent (torch.distributed.run's elastic_launch,
gloo, one torch thread a process), forked from this process; every rank builds the DAG's SCM
from the same seed, draws the same global batch from it and steps (engine.learn.svi, the
gradients summed over the ranks) on its part of it: the trainer's step, without its data
loader. Two ways of growing, both measured in the same run:

- ``split`` (strong scaling, what ``cq train --nproc N`` does): the global batch of
  ``--batch-size`` units is split over the processes, so the step is the one-process step;
- ``per-process`` (weak scaling, DistributedDataParallel's usual convention): each process
  steps on a whole batch of ``--batch-size`` units, so the global batch grows with them.

Rounds alternate the runs so that other load on the machine hits each alike; each figure is
the median over rounds of the global images/s (rank 0's clock, the ranks meeting at a barrier
before and after the timed steps). The efficiency is N-process images/s / (N x 1-process
images/s); on a machine with fewer free cores than processes it cannot reach 1. "gradient
sum" is the share of the timed steps that rank 0 spent in the all-reduce of the gradients,
waiting for the slower rank included. "split ceiling" is what splitting alone allows, with
free communication and free cores: one process's images/s on a 1/N batch over its images/s on
the whole batch (the per-step costs that do not shrink with the batch: the optimizer, the
passes over the weights, Pyro's tracing). "machine ceiling" is what the cores allow: N
processes stepping side by side on a whole batch each, summing nothing, over N x one
process alone (shared caches and memory bandwidth, and a clock that drops when every core
is busy); no data-parallel scheme on this machine does better than it.
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
os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread a process (torchrun would set it, with a banner)

import pyro  # noqa: E402
import torch  # noqa: E402

from engine.device import tune_cpu  # noqa: E402
from engine.distributed import Ranks, fork_ranks, join  # noqa: E402
from engine.learn.svi import SVI  # noqa: E402
from engine.learn.train import TrainConfig, learnable  # noqa: E402
from engine.model.dag import load_dag  # noqa: E402
from engine.model.scm import build_scm  # noqa: E402


def rate(dag_path: str, batch: int, steps: int, warmup: int, together: bool = True) -> tuple[float, float]:
    """Global images/s of ``steps`` SVI steps on this rank's slice of one global batch, and the share of their time
    spent summing the gradients (sending, and waiting for the slower rank). ``together=False``: each rank steps
    alone on its slice, summing nothing (the ranks only meet to start and stop the clock)."""
    tune_cpu(1)
    summing, sum_gradients = [0.0], Ranks.sum_gradients

    def timed(self, *args):
        start = time.perf_counter()
        try:
            return sum_gradients(self, *args)
        finally:
            summing[0] += time.perf_counter() - start

    ranks, device = join(torch.device("cpu"))
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    scm = build_scm(load_dag(dag_path))
    with torch.no_grad():
        values = scm(batch)  # the same global batch on every rank
    rows = torch.as_tensor(next(iter(ranks.shard([list(range(batch))]))), dtype=torch.long)
    part = {k: v[rows] for k, v in values.items()}
    mechanisms = learnable(scm)
    for m in mechanisms.values():
        m.train()
    args = {name: (part[name], scm.parents(name, part)) for name in mechanisms}
    svi = SVI({name: (m.model, m.guide) for name, m in mechanisms.items()}, lr=1e-3, ranks=ranks if together else Ranks())
    pyro.set_rng_seed(ranks.seed(1))
    with pyro.validation_enabled(False):
        for _ in range(warmup):
            svi.step(args)
        ranks.barrier()
        Ranks.sum_gradients, start = timed, time.perf_counter()
        try:
            for _ in range(steps):
                svi.step(args)
        finally:
            Ranks.sum_gradients = sum_gradients
        ranks.barrier()
        took = ranks.agree(time.perf_counter() - start)
    ranks.leave()
    return steps * batch / took, summing[0] / took


def launch(nproc: int, *args) -> tuple[float, float]:
    """``rate(*args)`` in ``nproc`` ranks forked by torchrun's agent; rank 0's figures."""
    if nproc == 1:  # one rank: no process group, the plain trainer's step
        return rate(*args)
    return fork_ranks(rate, *args, nproc=nproc)[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dag", default="dags/dsprites.yaml")
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="units per step (default: the trainer's)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--procs", default="1,2", help="process counts, comma-separated; the first is the baseline")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = p.parse_args()
    procs = [int(n) for n in args.procs.split(",")]
    base, batch = procs[0], args.batch_size
    tune_cpu(1)
    rate(args.dag, batch, 2, 1)  # warms this process's imports before the ranks are forked from it

    load = os.getloadavg()[0]  # other jobs' share of the CPUs, before this benchmark's ranks
    runs = {("split", n): (n, batch) for n in procs} | {("per-process", n): (n, batch * n // base) for n in procs[1:]}
    runs |= {("alone", n): (base, batch * base // n) for n in procs[1:]}  # one process on a 1/N part of the batch
    runs |= {("apart", n): (n, batch * n // base, False) for n in procs[1:]}  # N processes side by side, no sum
    rates, summing = {key: [] for key in runs}, {key: [] for key in runs}
    for _ in range(args.rounds):
        for key, (n, units, *together) in runs.items():
            r, share = launch(n, args.dag, units, args.steps, args.warmup, *together)
            rates[key].append(r)
            summing[key].append(share)
    medians = {key: statistics.median(r) for key, r in rates.items()}
    shares = {key: statistics.median(s) for key, s in summing.items()}
    one = medians["split", base]
    result = {"dag": args.dag, "batch_size": batch, "steps": args.steps, "rounds": args.rounds, "threads_per_process": 1,
              "cpus": os.cpu_count(), "load_average_before": load}
    for mode in ("split", "per-process"):
        ns = [n for n in procs if (mode, n) in medians or n == base]
        rate_of = {n: medians["split", base] if n == base else medians[mode, n] for n in ns}
        result[mode] = {"images_per_s": {str(n): rate_of[n] for n in ns},
                        "efficiency": {str(n): rate_of[n] / (n / base * one) for n in ns},
                        "gradient_sum_share": {str(n): shares["split", base] if n == base else shares[mode, n] for n in ns},
                        "all_rounds": {str(n): rates["split", base] if n == base else rates[mode, n] for n in ns}}
    result["split_ceiling"] = {str(n): medians["alone", n] / one for n in procs[1:]}
    result["machine_ceiling"] = {str(n): medians["apart", n] / (n / base * one) for n in procs[1:]}
    result["images_per_s"], result["efficiency"] = result["split"]["images_per_s"], result["split"]["efficiency"]
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.dag}: {args.rounds} rounds of {args.steps} steps (medians), one torch thread a process, "
          f"{os.cpu_count()} CPUs (load average {load:.1f} before the run)")
    print(f"{'scaling':<36} {'processes':>9} {'images/s':>10} {'efficiency':>11} {'gradient sum':>13}")
    for mode, what in (("split", f"split: global batch {batch} split"), ("per-process", f"per-process: {batch} units a process")):
        for n, r in result[mode]["images_per_s"].items():
            print(f"{what:<36} {n:>9} {r:>10,.0f} {result[mode]['efficiency'][n]:>11.2f} "
                  f"{result[mode]['gradient_sum_share'][n]:>12.0%}")
    for n, ceiling in result["split_ceiling"].items():
        print(f"split ceiling {n} processes: {ceiling:.2f} (one process: {medians['alone', int(n)]:,.0f} images/s on "
              f"{batch * base // int(n)} units a step, {one:,.0f} on {batch})")
    for n, ceiling in result["machine_ceiling"].items():
        print(f"machine ceiling {n} processes: {ceiling:.2f} ({n} processes side by side, {batch} units each and no "
              f"gradient sum: {medians['apart', int(n)]:,.0f} images/s)")
    n = str(procs[-1])
    if len(procs) > 1:
        print(f"scaling efficiency {n} processes: split {result['split']['efficiency'][n]:.2f}, "
              f"per-process {result['per-process']['efficiency'][n]:.2f} (target >= 0.8)")


if __name__ == "__main__":
    main()
