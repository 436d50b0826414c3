"""Data-parallel training speed: images/s of the trainer's SVI step in 1 and 2 processes, and the scaling efficiency.

    python benchmarks/train_scaling.py [--dag dags/dsprites.yaml] [--batch-size N: the trainer's default]
                                       [--steps 20] [--rounds 3] [--procs 1,2] [--weak] [--json]

Each process count runs through torchrun's own agent (torch.distributed.run's elastic_launch,
gloo, one torch thread a process), forked from this process; every rank builds the DAG's SCM
from the same seed, draws the same global batch from it and steps (engine.learn.svi, the
gradients summed over the ranks) on its slice of it: the trainer's step, without its data
loader. ``--weak`` gives each rank a whole batch instead (the global batch grows with the
processes). Rounds alternate the process counts so that other load on the machine hits each
alike; each figure is the median over rounds of the global images/s (rank 0's clock, the
ranks meeting at a barrier before and after the timed steps). The efficiency is
N-process images/s / (N x 1-process images/s); on a machine with fewer free cores than
processes it cannot reach 1. "gradient sum" is the share of the timed steps that rank 0 spent
in the all-reduce of the gradients, waiting for the slower rank included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # as cli.py does: huge pages for large CPU tensors
os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread a process (torchrun would set it, with a banner)

import pyro  # noqa: E402
import torch  # noqa: E402
from torch.distributed.launcher.api import elastic_launch  # noqa: E402
from torch.distributed.run import config_from_args, get_args_parser  # noqa: E402

from engine.device import tune_cpu  # noqa: E402
from engine.distributed import Ranks, join  # noqa: E402
from engine.learn.svi import SVI  # noqa: E402
from engine.learn.train import TrainConfig, learnable  # noqa: E402
from engine.model.dag import load_dag  # noqa: E402
from engine.model.scm import build_scm  # noqa: E402


def rate(dag_path: str, batch: int, steps: int, warmup: int) -> tuple[float, float]:
    """Global images/s of ``steps`` SVI steps on this rank's slice of one global batch, and the share of their time
    spent summing the gradients (sending, and waiting for the slower rank)."""
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
    svi = SVI({name: (m.model, m.guide) for name, m in mechanisms.items()}, lr=1e-3, ranks=ranks)
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
    """``rate(*args)`` in ``nproc`` ranks started by torchrun's agent; rank 0's figures."""
    if nproc == 1:  # one rank: no process group, the plain trainer's step
        return rate(*args)
    options = [f"--nproc-per-node={nproc}", "--rdzv-backend=c10d", "--rdzv-endpoint=localhost:0", f"--rdzv-id={uuid.uuid4()}",
               "--start-method=fork", "--monitor-interval=0.1", "unused"]  # --standalone's settings, for a function
    config, _, _ = config_from_args(get_args_parser().parse_args(options))
    return elastic_launch(config, rate)(*args)[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dag", default="dags/dsprites.yaml")
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="the global batch (default: the trainer's)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--procs", default="1,2", help="process counts, comma-separated; the first is the baseline")
    p.add_argument("--weak", action="store_true", help="a whole batch per process instead of a slice of one")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = p.parse_args()
    procs = [int(n) for n in args.procs.split(",")]
    tune_cpu(1)
    rate(args.dag, args.batch_size, 2, 1)  # warms this process's imports before the ranks are forked from it

    load = os.getloadavg()[0]  # other jobs' share of the CPUs, before this benchmark's ranks
    rates, summing = {n: [] for n in procs}, {n: [] for n in procs}
    for _ in range(args.rounds):
        for n in procs:
            batch = args.batch_size * n if args.weak else args.batch_size
            r, share = launch(n, args.dag, batch, args.steps, args.warmup)
            rates[n].append(r)
            summing[n].append(share)
    base = procs[0]
    medians = {n: statistics.median(r) for n, r in rates.items()}
    shares = {n: statistics.median(s) for n, s in summing.items()}
    efficiency = {n: medians[n] / (n / base * medians[base]) for n in procs}
    result = {"dag": args.dag, "batch_size": args.batch_size, "weak": args.weak, "steps": args.steps, "rounds": args.rounds,
              "threads_per_process": 1, "cpus": os.cpu_count(), "load_average_before": load,
              "images_per_s": {str(n): medians[n] for n in procs}, "efficiency": {str(n): efficiency[n] for n in procs},
              "gradient_sum_share": {str(n): shares[n] for n in procs}, "all_rounds": {str(n): rates[n] for n in procs}}
    if args.json:
        print(json.dumps(result))
        return
    kind = f"{args.batch_size} units a process" if args.weak else f"global batch {args.batch_size}, split over the processes"
    print(f"{args.dag}: {kind}; {args.rounds} rounds of {args.steps} steps (medians), one torch thread a process, "
          f"{os.cpu_count()} CPUs (load average {load:.1f} before the run)")
    print(f"{'processes':>9} {'images/s':>10} {'efficiency':>11} {'gradient sum':>13}")
    for n in procs:
        print(f"{n:>9} {medians[n]:>10,.0f} {efficiency[n]:>11.2f} {shares[n]:>12.0%}")
    if len(procs) > 1:
        n = procs[-1]
        print(f"scaling efficiency {n} processes: {efficiency[n]:.2f} = {medians[n]:,.0f} / ({n // base} x {medians[base]:,.0f}) "
              f"(target >= 0.8)")


if __name__ == "__main__":
    main()
