"""DoWhy as a peer: the same real-valued counterfactuals through DoWhy's gcm and through this engine.

    python benchmarks/peer_dowhy.py             # 200,000 units per query
    python benchmarks/peer_dowhy.py --n 10000   # a small run
    python benchmarks/peer_dowhy.py --json      # the same numbers as JSON

One linear additive-noise SCM, declared once in YAML (``DAG`` below)::

    a -> b -> d,  a -> c -> d,   every node  value = intercept + sum_p coef_p * p + sigma U

The engine builds it from the YAML (``normal`` and ``linear_gaussian`` mechanisms). The peer is
a ``gcm.InvertibleStructuralCausalModel`` on the same graph whose non-root nodes are
``AdditiveNoiseModel``s with a linear prediction model holding the YAML's coefficients and
intercept exactly (``create_linear_regressor_with_given_parameters``); roots are
``ScipyDistribution(norm)`` (only for sampling: a counterfactual keeps a root's observed value).

Both sides answer the same units (drawn once from the engine's SCM) under the same actions
by abduction, action and prediction: ``gcm.counterfactual_samples(scm, interventions,
observed_data=df)`` and ``inference.counterfactual(scm, factual, actions)``. In a linear SCM
the answer is exact (``d' = d + 0.7 (b' - b)`` under do(b)), so the two must agree to rounding;
the script exits 1 when any node differs by more than ``TOLERANCE``. Times include abduction,
the fastest of ``REPEATS`` calls after a warm-up one, in the same process; ratio = DoWhy seconds / engine seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.causal import inference  # noqa: E402
from engine.model.dag import DagSpec, parse_dag  # noqa: E402
from engine.model.scm import build_scm  # noqa: E402

TOLERANCE = 1e-6
REPEATS = 5  # timed calls per side and query; the fastest counts (a shared machine only ever slows a call down)
DAG = """
name: linear_diamond
description: a -> b -> d, a -> c -> d; linear with additive Gaussian noise.
nodes:
  a: {mechanism: normal, domain: real, params: {loc: 1.0, sigma: 1.0}}
  b: {mechanism: linear_gaussian, parents: [a], domain: real, params: {loc: {intercept: 0.5, a: 2.0}, sigma: 0.5}}
  c: {mechanism: linear_gaussian, parents: [a], domain: real, params: {loc: {intercept: -1.0, a: -1.5}, sigma: 0.3}}
  d: {mechanism: linear_gaussian, parents: [b, c], domain: real, params: {loc: {intercept: 0.2, b: 0.7, c: 1.3}, sigma: 0.8}}
"""
#: name -> actions; a value is do(node = value), a string "+x" shifts each unit's own value by x
QUERIES = {
    "do(b=2)": {"b": 2.0},
    "do(a=-1)": {"a": -1.0},
    "do(b=b+1)": {"b": "+1.0"},
    "do(b=2, c=0)": {"b": 2.0, "c": 0.0},
}


def dowhy_scm(dag: DagSpec, data):
    """The DAG as a DoWhy invertible SCM with the YAML's coefficients, intercepts and sigmas.

    ``gcm.fit`` on ``data`` only records each node's parents: every parameter was given, so it stays.
    """
    import networkx as nx
    from dowhy import gcm
    from scipy import stats

    scm = gcm.InvertibleStructuralCausalModel(nx.DiGraph(dag.graph))
    for name in dag.order:
        node = dag.nodes[name]
        loc, sigma = node.params.get("loc", 0.0), node.params.get("sigma", 1.0)
        if not node.parents:
            scm.set_causal_mechanism(name, gcm.ScipyDistribution(stats.norm, loc=loc, scale=sigma))
            continue
        parents = sorted(node.parents)  # DoWhy's column order (gcm.graph.get_ordered_predecessors)
        linear = gcm.ml.create_linear_regressor_with_given_parameters([loc[p] for p in parents], loc.get("intercept", 0.0))
        scm.set_causal_mechanism(name, gcm.AdditiveNoiseModel(linear, gcm.ScipyDistribution(stats.norm, loc=0.0, scale=sigma)))
    gcm.config.disable_progress_bars()
    gcm.fit(scm, data)
    return scm


def _values(actions: dict, factual: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Actions as per-unit tensors for the engine."""
    return {k: factual[k] + float(v) if isinstance(v, str) else torch.full_like(factual[k], v) for k, v in actions.items()}


def _functions(actions: dict) -> dict:
    """Actions as DoWhy's intervention functions of the unit's own value."""
    return {k: (lambda x, s=float(v): x + s) if isinstance(v, str) else (lambda x, c=v: c) for k, v in actions.items()}


def _timed(fn, repeats: int = REPEATS):
    """fn's result and its fastest of ``repeats`` timed calls, after one warm-up call."""
    out, best = fn(), float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def compare(n: int = 200_000, seed: int = 0) -> list[dict]:
    """Every query on the same n units through both: the worst difference per query and each side's seconds."""
    import pandas as pd
    from dowhy import gcm

    dag = parse_dag(DAG, "benchmarks/peer_dowhy.py:DAG")
    scm = build_scm(dag)
    inference.seed(seed)
    factual = scm(n)
    df = pd.DataFrame({k: v.numpy() for k, v in factual.items()})
    peer = dowhy_scm(dag, df)
    rows = []
    for name, actions in QUERIES.items():
        ours, engine_s = _timed(lambda: inference.counterfactual(scm, factual, _values(actions, factual)).values)
        theirs, dowhy_s = _timed(lambda: gcm.counterfactual_samples(peer, _functions(actions), observed_data=df))
        diff = {k: float(np.abs(ours[k].numpy() - theirs[k].to_numpy()).max()) for k in dag.order}
        rows.append({"query": name, "units": n, "max_abs_diff": max(diff.values()), "node_diff": diff,
                     "engine_s": engine_s, "dowhy_s": dowhy_s, "speed_ratio": dowhy_s / engine_s})
    return rows


def main(argv=None) -> int:
    """Run every query, print the table (or JSON); 1 when the two disagree beyond TOLERANCE."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="units per query")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    try:
        import dowhy
        from dowhy import gcm  # noqa: F401
    except ImportError as e:
        print(f"peer_dowhy: skipped, DoWhy is not importable ({e}); install it with pip install -e '.[dowhy]'")
        return 0
    torch.set_num_threads(1)  # both sides on one thread: steadier timings on a shared machine
    rows = compare(args.n, args.seed)
    worst = max(r["max_abs_diff"] for r in rows)
    if args.json:
        meta = {"dowhy": dowhy.__version__, "torch": torch.__version__, "seed": args.seed, "tolerance": TOLERANCE}
        print(json.dumps({"meta": meta, "rows": rows}, indent=2))
    else:
        print(f"DoWhy {dowhy.__version__} gcm vs this engine: counterfactuals on {args.n:,} units of a -> b -> d, a -> c -> d (linear Gaussian)")
        print(f"{'query':<14} {'max |diff|':>11} {'engine s':>9} {'dowhy s':>9} {'ratio':>7}")
        for r in rows:
            print(f"{r['query']:<14} {r['max_abs_diff']:>11.2e} {r['engine_s']:>9.4f} {r['dowhy_s']:>9.4f} {r['speed_ratio']:>7.1f}")
        print(f"max |diff| over every node and query: {worst:.2e} (tolerance {TOLERANCE:g}); ratio: DoWhy seconds / engine seconds")
    if worst > TOLERANCE:
        print(f"peer_dowhy: the engine and DoWhy disagree by {worst:.3g} > {TOLERANCE:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
