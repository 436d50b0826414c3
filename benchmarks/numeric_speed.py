"""How long numeric statements take: exact rung-1/2 answers, a rung-3 population, an image statistic.

    python benchmarks/numeric_speed.py [--model runs/dsprites] [--threads 1] [--json]

Each figure is the median wall time of one ``model.ask(...)`` (parse, resolve, answer), after a
warm-up call, against its target:

- exact rung-1/2 queries on dSprites' labels by enumeration: < 20 ms each;
- a rung-3 population probability, 100,000 draws over exact noise posteriors: < 0.5 s;
- a unit-level image statistic, 1,000 draws (the decoder runs in each world): < 1 s.

The label figures use the DAG alone (``engine.api.load("dags/dsprites.yaml")``). The image
figure uses the trained model at ``--model`` if there is one, else the DAG with an untrained
decoder (the same network, so the same time); the output says which.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine.api import Model, load  # noqa: E402
from engine.model.dag import load_dag  # noqa: E402
from engine.model.scm import build_scm  # noqa: E402

EXACT = [
    "P(y > 0.5 | do(scale=1.0))",
    "P(shape=heart | x > 0.7, y < 0.4)",
    "E[y | do(scale=1.0)] - E[y | do(scale=0.5)]",
    "P(orientation)",
    "P(shape, scale | y > 0.8)",
]
POPULATION = "P(y@do(shape=square) > 0.5 | shape=heart, scale=1.0) draws 100000"
IMAGE = "E[area(img@do(scale=1.0)) - area(img) | u] draws 1000"
UNIT = "u = dsprites[500000]"
TARGETS = {"exact": 0.020, "population": 0.5, "image": 1.0}


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def image_model(run: str) -> tuple[Model, str]:
    if (Path(run) / "model.pt").exists() or Path(run).suffix == ".pt":
        return load(run), f"trained model {run}"
    torch.manual_seed(0)
    dag = load_dag(ROOT / "dags" / "dsprites.yaml")
    return Model(dag, build_scm(dag)), "untrained decoder (no model at --model)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/dsprites")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    labels = load(ROOT / "dags" / "dsprites.yaml")
    rows = []
    for text in EXACT:
        method = labels.ask(text).method
        rows.append({"figure": text, "kind": "exact", "seconds": timed(lambda: labels.ask(text), 4 * args.repeats), "method": method})
    method = labels.ask(POPULATION).method
    rows.append({"figure": POPULATION, "kind": "population", "seconds": timed(lambda: labels.ask(POPULATION), args.repeats), "method": method})
    images, which = image_model(args.model)
    images.ask(UNIT)
    method = images.ask(IMAGE).method
    rows.append({"figure": f"{IMAGE}  ({UNIT}; {which})", "kind": "image", "seconds": timed(lambda: images.ask(IMAGE), args.repeats), "method": method})
    for r in rows:
        r["target_seconds"] = TARGETS[r["kind"]]
        r["met"] = r["seconds"] < r["target_seconds"]
    if args.json:
        print(json.dumps({"threads": args.threads, "rows": rows}, indent=2))
        return
    print(f"{'statement':<78} {'time':>10} {'target':>9}  met")
    for r in rows:
        shown = f"{r['seconds'] * 1000:.1f} ms" if r["seconds"] < 1 else f"{r['seconds']:.2f} s"
        target = f"< {r['target_seconds'] * 1000:.0f} ms" if r["target_seconds"] < 1 else f"< {r['target_seconds']:g} s"
        print(f"{r['figure']:<78} {shown:>10} {target:>9}  {'yes' if r['met'] else 'NO'}")
        print(f"    {r['method']}")
    print(f"\n{sum(r['met'] for r in rows)} of {len(rows)} within target; {args.threads} torch thread(s), median of repeated calls after a warm-up")


if __name__ == "__main__":
    main()
