"""pgmpy as a peer: rung-1 and rung-2 questions on dSprites' labels, answered exactly by both.

    python benchmarks/peer_pgmpy.py            # the table (pip install pgmpy, or '.[pgmpy]')
    python benchmarks/peer_pgmpy.py --json     # the same numbers as JSON

The peer is the label part of ``dags/dsprites.yaml`` written as a pgmpy
``DiscreteBayesianNetwork``: one ``TabularCPD`` per node, read off the engine's own mechanisms
(``log_prob`` over every parent configuration, ``engine.causal.exact``), so both sides answer on
the same tables. pgmpy answers with ``VariableElimination``; ``do`` is ``model.do([...])`` (the
node loses its parents) followed by a query with the intervened value as evidence. Events that
are not point evidence (``y > 0.5``) are summed from pgmpy's joint over the nodes they mention.

The engine answers each statement through ``engine.api`` (parse, resolve, enumerate). The
answers must agree to 1e-9; where they do not, a brute-force product of all five tables over
the 737,280 label states decides, and the script says which side was right. Speeds are the
median wall time of one query, each side timed in this process after a warm-up call.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgmpy.factors.discrete import TabularCPD
        from pgmpy.inference import VariableElimination
        from pgmpy.models import DiscreteBayesianNetwork
except ImportError:  # an optional peer
    print("peer_pgmpy: skipped, pgmpy is not installed (pip install pgmpy, or pip install -e '.[pgmpy]')")
    sys.exit(0)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.api import load  # noqa: E402

TOLERANCE = 1e-9
PI = np.pi

# (statement, do {node: class index}, point evidence {node: class index}, nodes the event reads,
#  the event, the condition beyond point evidence (None: none), or for E[...] the value instead of the event)
# Values are read off each node's grid: shape 0..2 (square, ellipse, heart), scale 6, orientation 40, x and y 32.
QUERIES = [
    ("P(y > 0.5)", {}, {}, ["y"], lambda v: v["y"] > 0.5, None),
    ("P(y > 0.5 | do(scale=1.0))", {"scale": 5}, {}, ["y"], lambda v: v["y"] > 0.5, None),
    ("P(shape=heart | y=0.5)", {}, {"y": 15}, ["shape"], lambda v: v["shape"] == 2, None),
    ("P(x < 0.3 | shape=heart)", {}, {"shape": 2}, ["x"], lambda v: v["x"] < 0.3, None),
    ("P(shape=square | x=0.8, y=0.2)", {}, {"x": 25, "y": 6}, ["shape"], lambda v: v["shape"] == 0, None),
    ("P(y > 0.5 | do(orientation=90deg))", {"orientation": 10}, {}, ["y"], lambda v: v["y"] > 0.5, None),
    ("P(x > 0.5 | do(shape=heart))", {"shape": 2}, {}, ["x"], lambda v: v["x"] > 0.5, None),
    ("P(scale=1.0, x < 0.5 | y > 0.6)", {}, {}, ["scale", "x", "y"], lambda v: (v["scale"] == 1.0) & (v["x"] < 0.5), lambda v: v["y"] > 0.6),
    ("P(shape=ellipse | do(x=0.2), orientation > 3.14)", {"x": 6}, {}, ["shape", "orientation"], lambda v: v["shape"] == 1, lambda v: v["orientation"] > 3.14),
    ("P(orientation > 3.14 | x=0.9)", {}, {"x": 28}, ["orientation"], lambda v: v["orientation"] > 3.14, None),
    ("E[y | do(scale=0.5)]", {"scale": 0}, {}, ["y"], "E", lambda v: v["y"]),
    ("E[x - y | shape=ellipse]", {}, {"shape": 1}, ["x", "y"], "E", lambda v: v["x"] - v["y"]),
]


def peer_network(model) -> DiscreteBayesianNetwork:
    """The engine's label tables as pgmpy CPDs (states are class indices)."""
    dag = model.dag
    network = DiscreteBayesianNetwork([(p, n) for n in dag.labels for p in dag.nodes[n].parents])
    network.add_nodes_from(dag.labels)
    for n in dag.labels:
        table = model.enumeration.table(n).table  # axes (*parents, n)
        parents = list(dag.nodes[n].parents)
        k = dag.nodes[n].domain.size
        values = table.permute(-1, *range(len(parents))).reshape(k, -1).numpy()
        cards = [dag.nodes[p].domain.size for p in parents]
        network.add_cpds(TabularCPD(n, k, values, evidence=parents or None, evidence_card=cards or None))
    network.check_model()
    return network


def grid_values(model, nodes: list[str]) -> dict[str, np.ndarray]:
    """Each node's values, broadcast over a joint with one axis per node (in ``nodes``' order)."""
    out = {}
    for i, n in enumerate(nodes):
        domain = model.dag.nodes[n].domain
        shape = [1] * len(nodes)
        shape[i] = domain.size
        values = np.arange(domain.size) if domain.kind == "names" else np.asarray(domain.values)  # names by class index
        out[n] = values.reshape(shape)
    return out


def answer_from_joint(model, joint: np.ndarray, nodes: list[str], fixed: dict[str, int], event, condition, value) -> float:
    """The query from an (unnormalised) joint over ``nodes``, point-evidence nodes held at ``fixed``."""
    v = grid_values(model, nodes)
    for n, index in fixed.items():
        domain = model.dag.nodes[n].domain
        v[n] = index if domain.kind == "names" else domain.values[index]
    mass = joint * (condition(v) if condition else 1.0)
    if event == "E":
        return float((mass * value(v)).sum() / mass.sum())
    return float((mass * event(v)).sum() / mass.sum())


def pgmpy_answer(network, model, do, evidence, nodes, event, condition, value) -> float:
    base = network.do(list(do)) if do else network
    fixed = {**evidence, **do}
    asked = [n for n in nodes if n not in fixed]
    factor = VariableElimination(base).query(asked, evidence=fixed, show_progress=False, joint=True)
    joint = factor.values.transpose([factor.variables.index(n) for n in asked])
    return answer_from_joint(model, joint, asked, fixed, event, condition, value)


def brute_force(model, do, evidence, nodes, event, condition, value) -> float:
    """The full product of the five tables over every label state (no elimination order), then sums."""
    dag = model.dag
    order = list(dag.labels)
    joint = np.ones([dag.nodes[n].domain.size for n in order])
    for n in order:
        if n in do:
            table = np.zeros(dag.nodes[n].domain.size)
            table[do[n]] = 1.0
            axes = [n]
        else:
            table = model.enumeration.table(n).table.numpy()
            axes = [*dag.nodes[n].parents, n]
        shape = [dag.nodes[m].domain.size if m in axes else 1 for m in order]
        joint = joint * np.transpose(table, [axes.index(m) for m in order if m in axes]).reshape(shape)
    for n, index in evidence.items():
        keep = np.zeros(dag.nodes[n].domain.size)
        keep[index] = 1.0
        shape = [dag.nodes[m].domain.size if m == n else 1 for m in order]
        joint = joint * keep.reshape(shape)
    return answer_from_joint(model, joint, order, {}, event, condition, value)


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load(ROOT / "dags" / "dsprites.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        network = peer_network(model)
        rows = []
        for text, do, evidence, nodes, event, rest in QUERIES:
            condition, value = (None, rest) if event == "E" else (rest, None)
            ours = model.ask(text)
            theirs = pgmpy_answer(network, model, do, evidence, nodes, event, condition, value)
            row = {"query": text, "engine": ours.value, "pgmpy": theirs, "difference": abs(ours.value - theirs), "method": ours.method}
            if row["difference"] > TOLERANCE:
                truth = brute_force(model, do, evidence, nodes, event, condition, value)
                row["brute_force"] = truth
                row["right"] = "engine" if abs(ours.value - truth) <= TOLERANCE else "pgmpy" if abs(theirs - truth) <= TOLERANCE else "neither"
            row["engine_ms"] = 1000 * timed(lambda: model.ask(text), args.repeats)
            row["pgmpy_ms"] = 1000 * timed(lambda: pgmpy_answer(network, model, do, evidence, nodes, event, condition, value), max(3, args.repeats // 4))
            row["speed_ratio"] = row["pgmpy_ms"] / row["engine_ms"]
            rows.append(row)
    agree = sum(r["difference"] <= TOLERANCE for r in rows)
    if args.json:
        print(json.dumps({"rows": rows, "agree": agree, "queries": len(rows), "tolerance": TOLERANCE}, indent=2))
        return
    print(f"{'query':<52} {'engine':>14} {'pgmpy':>14} {'|diff|':>9} {'engine ms':>10} {'pgmpy ms':>9} {'ratio':>7}")
    for r in rows:
        print(f"{r['query']:<52} {r['engine']:>14.10f} {r['pgmpy']:>14.10f} {r['difference']:>9.1e} {r['engine_ms']:>10.2f} {r['pgmpy_ms']:>9.1f} {r['speed_ratio']:>6.1f}x")
        if "right" in r:
            print(f"    disagree: brute force gives {r['brute_force']:.12f}: {r['right']} is right")
    ratios = [r["speed_ratio"] for r in rows]
    print(f"\n{agree} of {len(rows)} answers agree to {TOLERANCE:g}; speed ratio pgmpy time / engine time: median {statistics.median(ratios):.1f}x "
          f"({min(ratios):.1f}x to {max(ratios):.1f}x); the engine's time includes parsing the statement; {args.threads} torch thread(s)")


if __name__ == "__main__":
    main()
