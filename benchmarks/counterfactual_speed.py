"""Counterfactual images/s on a batch of units, against a bare decoder forward pass, and single-query latency.

    python benchmarks/counterfactual_speed.py [--model runs/dsprites] [--units 4096] [--repeats 7] [--json]

Both rates are measured in the same run, alternating, on the same batch; the ratio is the
figure to read (the machine is shared), taken round by round, each round timing the three back
to back, and its median and range over the rounds printed. An exact counterfactual cannot cost less than the
encoder pass plus two decoder passes (the factual probability map, which the pixel-noise
posterior needs, and the counterfactual one): that floor is timed from the bare networks too,
and the executor's share of it printed, with a check that it is still exact (the null
intervention gives every image back bit for bit). Without a trained model the DAG's untrained
image mechanism is used: the network, and so the cost, is the same.
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

import torch  # noqa: E402

from engine.worlds.dsprites import data  # noqa: E402
from engine.causal import inference  # noqa: E402
from engine.learn.checkpoint import checkpoint_path, load_model  # noqa: E402
from engine.model.dag import load_dag  # noqa: E402
from engine.lang import parse  # noqa: E402
from engine.query.runner import Runner  # noqa: E402
from engine.model.scm import build_scm  # noqa: E402


def model(run: str, dag: str):
    if checkpoint_path(run).exists():
        return load_model(run)[1], f"trained model {run}"
    scm = build_scm(load_dag(dag))
    for m in scm.mechanisms.values():
        if isinstance(m, torch.nn.Module):
            m.eval()
    return scm, f"untrained {dag} (no checkpoint at {run})"


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


@torch.no_grad()
def measure(scm, units: int, repeats: int) -> dict:
    """Counterfactual and bare-decoder images/s on one batch, and one-statement query latency."""
    image = next(n for n in scm.order if scm.dag.nodes[n].domain.is_image)
    labels = data.resample(scm.dag, units, seed=0)
    factual = {n: torch.as_tensor(labels.labels[n]) for n in scm.dag.labels}
    factual[image] = torch.as_tensor(data.images(labels.index), dtype=torch.float32)
    act = {"shape": (factual["shape"] + 1) % 3}
    decoder = scm.mechanisms[image]
    parents = scm.parents(image, factual)
    z = torch.zeros(units, decoder.latent_dim)
    counterfactual = lambda: inference.counterfactual(scm, factual, act)
    bare = lambda: decoder.probs(parents, z)
    encoder = lambda: decoder.posterior(factual[image], parents)
    null = inference.counterfactual(scm, factual, {}).values[image]  # also the warm-up
    bare(), encoder()
    cf_times, bare_times, encoder_times = [], [], []
    for _ in range(repeats):  # alternate, so all see the same machine
        cf_times += timed(counterfactual, 1)
        bare_times += timed(bare, 1)
        encoder_times += timed(encoder, 1)
    program = parse(f"given dsprites[{int(labels.index[0])}], do(shape=square)")
    Runner(scm, program).run()
    latency = timed(lambda: Runner(scm, program).run(), max(repeats, 10))
    to_floor = [(e + 2 * b) / c for c, b, e in zip(cf_times, bare_times, encoder_times)]
    return {
        "units": units,
        "counterfactual_images_per_s": units / statistics.median(cf_times),
        "decoder_images_per_s": units / statistics.median(bare_times),
        "ratio_counterfactual_to_decoder": statistics.median(b / c for c, b in zip(cf_times, bare_times)),
        "exact_floor_images_per_s": units / statistics.median(e + 2 * b for b, e in zip(bare_times, encoder_times)),
        "ratio_counterfactual_to_exact_floor": statistics.median(to_floor),
        "ratio_counterfactual_to_exact_floor_range": [min(to_floor), max(to_floor)],
        "null_intervention_bit_for_bit": torch.equal(null, factual[image]),
        "single_query_ms": 1000 * statistics.median(latency),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/dsprites")
    parser.add_argument("--dag", default="dags/dsprites.yaml", help="used when there is no trained model")
    parser.add_argument("--units", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    inference.seed(0)
    scm, which = model(args.model, args.dag)
    result = measure(scm, args.units, args.repeats) | {"model": which}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{which}; {args.units:,} units, median of {args.repeats}, {result['threads']} torch threads")
    print(f"  counterfactual (abduct, act, predict): {result['counterfactual_images_per_s']:>10,.0f} images/s")
    print(f"  bare decoder forward pass:             {result['decoder_images_per_s']:>10,.0f} images/s")
    print(f"  ratio counterfactual / decoder:        {result['ratio_counterfactual_to_decoder']:>10.2f}")
    print(f"  exact floor (encoder + 2 decoder):     {result['exact_floor_images_per_s']:>10,.0f} images/s")
    low, high = result["ratio_counterfactual_to_exact_floor_range"]
    print(f"  ratio counterfactual / exact floor:    {result['ratio_counterfactual_to_exact_floor']:>10.2f}   (rounds {low:.2f} to {high:.2f})")
    print(f"  null intervention gives the images back bit for bit: {'yes' if result['null_intervention_bit_for_bit'] else 'NO'}")
    print(f"  one-statement query, model loaded:     {result['single_query_ms']:>10.1f} ms")


if __name__ == "__main__":
    main()
