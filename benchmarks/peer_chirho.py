"""ChiRho as a peer: the same label-level counterfactuals through ChiRho and through this engine.

    python benchmarks/peer_chirho.py            # the default run (a few minutes on 2 busy CPU cores)
    python benchmarks/peer_chirho.py --quick    # a small run (under a minute)
    python benchmarks/peer_chirho.py --json     # the same numbers as JSON ("rows", "rung3")

The peer program is the engine's SCM written out for ChiRho, node by node, with the engine's own
mechanism objects, so both sides answer on literally the same model::

    U_<node> ~ mechanism.noise(n)                  (explicit exogenous sites)
    <node>   ~ Assigned(mechanism.assign(parents, U))   (engine.model.scm's point mass)

It runs under ``MultiWorldCounterfactual() + do(actions) + condition(evidence)``: the noise sites
are upstream of every intervention, so both worlds share them, and the counterfactual world is
read with ``gather(value, IndexSet(<intervened>={1}))``. The noise is inferred by likelihood
weighting with the prior as proposal; each particle's weight is the factual world's density of the
evidence, ``gather(log_prob, factual world)``, a point mass, so weights are 0 or 1: conditioning is
rejection of noise draws, and the effective sample size is the number accepted.

**Distributions (the first table).** The naive peer writes each node as a plain
``Categorical(p(. | parents))`` site (the mechanism's table, no explicit noise). ChiRho then draws
every descendant of the intervention afresh in the counterfactual world, which gives an
interventional answer; its distance from the engine's counterfactual is the last column of the table.

The engine answers by ``inference.counterfactual`` (exact abduction of each mechanism's noise).
With partial evidence, which ``counterfactual`` does not take, the benchmark draws the unobserved
nodes under ``do(evidence)``, weights each particle by ``prod_e p(e | parents)`` (likelihood
weighting) and answers every particle by ``counterfactual``.

TV is the total-variation distance between the two counterfactual distributions, joint over the
reported nodes; ``floor`` is the mean TV between the engine's distribution and as many draws from
it as ChiRho accepted (what sampling noise alone gives); ``nodeTV`` is the worst single reported
node. Speeds are counterfactuals per second: effective samples (accepted draws for ChiRho) over
the seconds each side took, measured in the same run after a warm-up call.

**Rung-3 probabilities (the second table).** Seven numeric statements that the engine answers
through its query language (``engine.api``, ``Model.ask``, its default Monte Carlo over exact noise
posteriors): population probabilities with evidence, two-world ones (an explicit one and PNS), PN,
PS, and one unit, ``u = dsprites[724630]``, whose five labels are all observed. ChiRho answers
the same event on the same noise program: every counterfactual world is one value of a tuple
intervention, ``do(actions={x: (x_1, x_2)})``, read with ``gather(value, IndexSet(x={k}))``;
point evidence is ``condition``, any other evidence (``y > 0.5`` in PN and PS) an indicator
weight on the factual world. The estimate is the weighted share of particles in which the event
holds, its standard error ``sqrt(p (1 - p) / ESS)``, ESS the number accepted. The engine reports
its own value and standard error. ``z = |diff| / sqrt(se_engine^2 + se_chirho^2)``; the two
agree when ``z < 3``. Speeds are effective samples per second on each side (the engine's statement
parsed and answered by ``ask``, after a warm-up ``ask``); as both standard errors are
``sqrt(p (1 - p) / ESS)``, their ratio is also the ratio of seconds each needs for the same error.
ChiRho rejects every noise draw that misses the evidence, so its cost grows as the evidence's
probability falls: 1 draw in 27,500 survives the fully observed unit (its labels' probability, 3.6e-5).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import operator
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import chirho  # noqa: E402
import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import pyro.poutine as poutine  # noqa: E402
import torch  # noqa: E402
from chirho.counterfactual.handlers import MultiWorldCounterfactual  # noqa: E402
from chirho.counterfactual.handlers.selection import get_factual_indices  # noqa: E402
from chirho.indexed.ops import IndexSet, gather  # noqa: E402
from chirho.interventional.handlers import do  # noqa: E402
from chirho.observational.handlers import condition  # noqa: E402

from engine.api import Model, load  # noqa: E402
from engine.causal import inference  # noqa: E402
from engine.model.dag import DagSpec, load_dag  # noqa: E402
from engine.model.mechanism import Mechanism  # noqa: E402
from engine.model.scm import SCM, Assigned, build_scm  # noqa: E402
from engine.query.answers import NumericAnswer  # noqa: E402
from plugins.tables import flat_index  # noqa: E402

DAG = Path(__file__).resolve().parents[1] / "dags" / "dsprites.yaml"
CHUNK = 2**15  # units per batch on both sides (larger batches spend their time in page faults)


@dataclass(frozen=True)
class Query:
    """A counterfactual on a unit: evidence and actions as DAG values (names or numbers), the nodes to compare."""

    name: str
    nodes: tuple[str, ...]  # the SCM: these label nodes and their ancestors
    evidence: dict = field(hash=False)
    action: dict = field(hash=False)
    report: tuple[str, ...]
    particles: int  # ChiRho prior draws in the default run


UNIT = {"shape": "heart", "orientation": 4.4, "scale": 1.0, "x": 0.65, "y": 0.7}
QUERIES = (
    Query("shape->scale", ("scale",), {"shape": "heart", "scale": 1.0}, {"shape": "square"}, ("scale",), 200_000),
    Query("shape->scale->y", ("y",), {"shape": "heart", "scale": 1.0, "y": 0.7}, {"shape": "square"}, ("scale", "y"), 1_000_000),
    Query("full unit", ("x", "y"), UNIT, {"shape": "square"}, ("orientation", "scale", "x", "y"), 5_000_000),
    Query("shape,y seen", ("x", "y"), {"shape": "heart", "y": 0.7}, {"scale": 0.5}, ("y",), 400_000),
    Query("x seen", ("x", "y"), {"x": 0.65}, {"orientation": 1.6}, ("x",), 200_000),
)


@dataclass(frozen=True)
class Rung3:
    """A rung-3 probability: the engine's .cq statement, and the same event as ChiRho reads it in its worlds."""

    name: str
    statement: str  # what the engine is asked (``draws N`` is appended)
    nodes: tuple[str, ...]  # ChiRho's SCM: these label nodes and their ancestors
    evidence: tuple[tuple, ...]  # factual (node, op, value): '=' is ChiRho's condition, any other op an indicator weight
    worlds: tuple[dict, ...]  # the counterfactual worlds' interventions, all on the same nodes
    event: tuple[tuple, ...]  # (world, node, op, value): world k is worlds[k - 1]
    particles: int  # ChiRho prior draws in the default run
    bind: str = ""  # a statement asked first (a unit's name)


UNIT_INDEX = 724630  # dsprites[724630] has UNIT's labels: ((shape * 6 + scale) * 40 + orientation) * 1024 + x * 32 + y
SQUARE, SCALE_1, SCALE_05 = {"shape": "square"}, {"scale": 1.0}, {"scale": 0.5}
RUNG3 = (
    Rung3("heart, scale 1", "P(y@do(shape=square) > 0.5 | shape=heart, scale=1.0)", ("y",),
          (("shape", "=", "heart"), ("scale", "=", 1.0)), (SQUARE,), ((1, "y", ">", 0.5),), 400_000),
    Rung3("x seen", "P(x@do(shape=square) < 0.5 | x = 0.65)", ("x",),
          (("x", "=", 0.65),), (SQUARE,), ((1, "x", "<", 0.5),), 400_000),
    Rung3("two worlds", "P(scale@do(shape=heart) = 1.0, scale@do(shape=square) < 1.0)", ("scale",),
          (), ({"shape": "heart"}, SQUARE), ((1, "scale", "=", 1.0), (2, "scale", "<", 1.0)), 100_000),
    Rung3("PNS", "PNS(y > 0.5, do(scale=1.0), do(scale=0.5))", ("y",),
          (), (SCALE_1, SCALE_05), ((1, "y", ">", 0.5), (2, "y", "<=", 0.5)), 100_000),
    Rung3("PN | heart", "PN(y > 0.5, do(scale=1.0), do(scale=0.5) | shape=heart)", ("y",),
          (("shape", "=", "heart"), ("scale", "=", 1.0), ("y", ">", 0.5)), (SCALE_05,), ((1, "y", "<=", 0.5),), 400_000),
    Rung3("PS", "PS(y > 0.5, do(scale=1.0), do(scale=0.5))", ("y",),
          (("scale", "=", 0.5), ("y", "<=", 0.5)), (SCALE_1,), ((1, "y", ">", 0.5),), 200_000),
    Rung3("unit", "P(x@do(shape=square) < 0.37, y@do(shape=square) < 0.5 | u)", ("x", "y"),
          tuple((k, "=", v) for k, v in UNIT.items()), (SQUARE,), ((1, "x", "<", 0.37), (1, "y", "<", 0.5)), 5_000_000,
          bind=f"u = dsprites[{UNIT_INDEX}]"),
)
OPS = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _flat(fn, parents: dict, noise: dict, events: dict):
    """Call a mechanism function written for flat batches on values that carry ChiRho's world dimensions."""
    shapes = [p.shape for p in parents.values()] + [u.shape[: u.dim() - len(events[s])] for s, u in noise.items()]
    batch = torch.broadcast_shapes(*shapes)
    parents = {p: v.expand(batch).reshape(-1) for p, v in parents.items()}
    noise = {s: u.expand(batch + events[s]).reshape((-1,) + events[s]) for s, u in noise.items()}
    return fn(parents, noise).reshape(batch)


def noise_program(scm: SCM):
    """The SCM with explicit noise: ``U_<node> ~ prior``, ``<node> = assign(parents, U)`` as a point mass."""
    events = {n: {s: d.event_shape for s, d in m.noise(1).items()} for n, m in scm.mechanisms.items()}

    def program(n: int) -> dict[str, torch.Tensor]:
        values = {}
        with pyro.plate("units", n, dim=-1):
            for name in scm.order:
                mechanism = scm.mechanisms[name]
                noise = {site: pyro.sample(site, prior) for site, prior in mechanism.noise(n).items()}
                value = _flat(mechanism.assign, scm.parents(name, values), noise, events[name])
                values[name] = pyro.sample(name, Assigned(value))
        return values

    return program


def _table(mechanism: Mechanism) -> torch.Tensor:
    """p(value | parents) for every parent configuration in ``flat_index`` order, shape (configs, K)."""
    names = list(mechanism.parents)
    configs = list(itertools.product(*(range(d.size) for d in mechanism.parents.values()))) or [()]
    parents = {p: torch.tensor([c[i] for c in configs]) for i, p in enumerate(names)}
    k = mechanism.domain.size
    logp = [mechanism.log_prob(torch.full((len(configs),), v), parents) for v in range(k)]
    return torch.stack(logp, -1).exp()


def table_program(scm: SCM):
    """The naive peer: ``<node> ~ Categorical(p(. | parents))`` from each mechanism's table, no explicit noise."""
    tables = {name: _table(m) for name, m in scm.mechanisms.items()}
    sizes = {name: [(p, d.size) for p, d in m.parents.items()] for name, m in scm.mechanisms.items()}

    def program(n: int) -> dict[str, torch.Tensor]:
        values = {}
        with pyro.plate("units", n, dim=-1):
            for name in scm.order:
                index = flat_index(scm.parents(name, values), sizes[name])
                probs = tables[name][0].expand(n, -1) if index is None else tables[name][index]
                values[name] = pyro.sample(name, dist.Categorical(probs=probs))
        return values

    return program


def chunks(n: int) -> list[int]:
    """Batch sizes covering n units, at most CHUNK at a time (both sides run in the same batches)."""
    return [CHUNK] * (n // CHUNK) + [n % CHUNK] * bool(n % CHUNK)


def _joined(parts) -> tuple[dict, torch.Tensor]:
    parts = list(parts)
    return {k: torch.cat([v[k] for v, _ in parts]) for k in parts[0][0]}, torch.cat([w for _, w in parts])


def chirho_counterfactual(program, evidence: dict, actions: dict, report, n: int) -> tuple[dict, torch.Tensor]:
    """n likelihood-weighted multi-world particles: the counterfactual world's ``report`` values and log-weights."""
    return _joined(_chirho_batch(program, evidence, actions, report, size) for size in chunks(n))


def _chirho_batch(program, evidence, actions, report, n):
    data = {k: v.expand(n) for k, v in evidence.items()}
    with MultiWorldCounterfactual(first_available_dim=-2), do(actions={k: v.expand(n) for k, v in actions.items()}), condition(data=data):
        trace = poutine.trace(program).get_trace(n)
        trace.compute_log_prob(site_filter=lambda name, site: site["is_observed"])
        factual, world = get_factual_indices(), IndexSet(**{a: {1} for a in actions})
        observed = [s["log_prob"] for s in trace.nodes.values() if s["type"] == "sample" and s["is_observed"]]
        log_w = sum(gather(lp, factual).reshape(-1) for lp in observed)
        out = trace.nodes["_RETURN"]["value"]
        return {k: gather(out[k], world).reshape(-1) for k in report}, log_w


def engine_counterfactual(scm: SCM, evidence: dict, actions: dict, n: int) -> tuple[dict, torch.Tensor]:
    """n counterfactual draws of every node, with log-weights: partial evidence by likelihood weighting.

    A fully observed unit is abducted exactly (weights 1). Otherwise the unobserved nodes are drawn
    from the model under ``do(evidence)``, each particle weighted by ``prod_e p(e | parents)``, and
    every particle is then answered by ``inference.counterfactual`` (no resampling).
    """
    return _joined(_engine_batch(scm, evidence, actions, size) for size in chunks(n))


def _engine_batch(scm, evidence, actions, n):
    clamped = {k: v.expand(n) for k, v in evidence.items() if k in scm.order}
    log_w = torch.zeros(n, dtype=torch.float64)
    if set(clamped) == set(scm.order):
        factual = clamped
    else:
        factual = poutine.do(scm, data=clamped)(n)
        for k, v in clamped.items():
            log_w = log_w + scm.mechanisms[k].log_prob(v, scm.parents(k, factual))
    return inference.counterfactual(scm, factual, {k: v.expand(n) for k, v in actions.items()}).values, log_w


def histogram(values: dict, report, sizes: dict, log_w: torch.Tensor | None = None) -> torch.Tensor:
    """The (weighted) empirical joint distribution of ``report``, flattened row-major."""
    code = torch.zeros_like(values[report[0]])
    for k in report:
        code = code * sizes[k] + values[k]
    w = None if log_w is None else torch.exp(log_w - log_w.max()).double()
    h = torch.bincount(code, weights=w, minlength=math.prod(sizes[k] for k in report)).double()
    return h / h.sum()


def tv(p: torch.Tensor, q: torch.Tensor) -> float:
    """Total-variation distance ``1/2 sum |p - q|``."""
    return 0.5 * float((p - q).abs().sum())


def ess(log_w: torch.Tensor) -> float:
    """Effective sample size ``(sum w)^2 / sum w^2`` (the number accepted when weights are 0 or 1)."""
    if not torch.isfinite(log_w).any():
        return 0.0
    w = torch.softmax(log_w.double(), 0)
    return float(1 / (w**2).sum())


def encode(dag: DagSpec, values: dict) -> dict[str, torch.Tensor]:
    """DAG values (names or numbers) as class-index tensors of shape (1,)."""
    return {k: torch.tensor([dag.nodes[k].domain.encode(v)]) for k, v in values.items()}


def floor(p: torch.Tensor, m: float, repeats: int = 5) -> float:
    """Mean TV between ``p`` and the empirical distribution of ``m`` draws from it: what sampling noise alone gives."""
    m = max(int(m), 1)
    draws = [torch.bincount(torch.multinomial(p, m, replacement=True), minlength=p.numel()).double() / m for _ in range(repeats)]
    return sum(tv(p, q) for q in draws) / repeats


def _timed(fn, *args):
    fn(*args[:-1], 64)  # warm up on a few units: the first call pays for Pyro's and torch's set-up
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def run_query(dag: DagSpec, query: Query, particles: int, n_engine: int, *, naive: int = 20_000) -> dict:
    """One query through ChiRho (explicit noise and naive) and the engine: distances, sample sizes, speeds."""
    scm = build_scm(dag, query.nodes)
    evidence, actions = encode(dag, query.evidence), encode(dag, query.action)
    sizes = {k: dag.nodes[k].domain.size for k in query.report}

    (engine, engine_w), engine_s = _timed(engine_counterfactual, scm, evidence, actions, n_engine)
    (peer, log_w), chirho_s = _timed(chirho_counterfactual, noise_program(scm), evidence, actions, query.report, particles)
    naive_values, naive_w = chirho_counterfactual(table_program(scm), evidence, actions, query.report, naive)
    engine_ess, accepted = ess(engine_w), ess(log_w)

    p = histogram(engine, query.report, sizes, engine_w)
    q = histogram(peer, query.report, sizes, log_w)
    node_tv = max(tv(histogram(engine, (k,), sizes, engine_w), histogram(peer, (k,), sizes, log_w)) for k in query.report)
    return {
        "query": query.name,
        "scm": " ".join(scm.order),
        "evidence": query.evidence,
        "action": query.action,
        "report": list(query.report),
        "chirho_particles": particles,
        "chirho_accepted": accepted,
        "chirho_s": chirho_s,
        "engine_draws": n_engine,
        "engine_ess": engine_ess,
        "engine_s": engine_s,
        "tv": tv(p, q),
        "tv_floor": floor(p, accepted),
        "node_tv": node_tv,
        "naive_tv": tv(p, histogram(naive_values, query.report, sizes, naive_w)),
        "naive_particles": naive,
        "naive_ess": ess(naive_w),
        "engine_cf_per_s": engine_ess / engine_s,
        "chirho_cf_per_s": accepted / chirho_s,
        "speed_ratio": (engine_ess / engine_s) / max(accepted / chirho_s, 1e-12),
    }


def table(rows: list[dict]) -> str:
    """The rows as a fixed-width text table."""
    head = f"{'query':<16} {'particles':>10} {'accepted':>9} {'TV':>6} {'floor':>6} {'nodeTV':>6} {'naiveTV':>7} {'engine cf/s':>12} {'chirho cf/s':>12} {'ratio':>9} {'s/10k':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['query']:<16} {r['chirho_particles']:>10,} {r['chirho_accepted']:>9,.0f} {r['tv']:>6.3f} {r['tv_floor']:>6.3f} "
            f"{r['node_tv']:>6.3f} {r['naive_tv']:>7.3f} {r['engine_cf_per_s']:>12,.0f} {r['chirho_cf_per_s']:>12,.1f} {r['speed_ratio']:>9,.0f} {1e4 / max(r['chirho_cf_per_s'], 1e-12):>7,.0f}"
        )
    return "\n".join(lines)


# ---- rung 3: probabilities, population and unit ------------------------------------------------


def holds(dag: DagSpec, node: str, op: str, value, codes: torch.Tensor) -> torch.Tensor:
    """Where ``node op value`` holds for class indices ``codes``: = and != on the snapped grid value, the rest on numbers."""
    domain = dag.nodes[node].domain
    if op in ("=", "!="):
        return OPS[op](codes, domain.encode(value))
    return OPS[op](domain.values_of(codes), float(value))


def chirho_probability(program, dag: DagSpec, query: Rung3, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n likelihood-weighted multi-world particles: whether the event holds in each, and the log-weights."""
    parts = [_chirho_event_batch(program, dag, query, size) for size in chunks(n)]
    return torch.cat([h for h, _ in parts]), torch.cat([w for _, w in parts])


def _chirho_event_batch(program, dag, query, n):
    data = {k: torch.tensor(dag.nodes[k].domain.encode(v)).expand(n) for k, op, v in query.evidence if op == "="}
    moved = list(query.worlds[0])
    actions = {k: tuple(torch.tensor(dag.nodes[k].domain.encode(w[k])).expand(n) for w in query.worlds) for k in moved}
    with MultiWorldCounterfactual(first_available_dim=-2), do(actions=actions), condition(data=data):
        trace = poutine.trace(program).get_trace(n)
        trace.compute_log_prob(site_filter=lambda name, site: site["is_observed"])
        factual = get_factual_indices()
        out = trace.nodes["_RETURN"]["value"]

        def value(world: int, node: str) -> torch.Tensor:
            index = factual if world == 0 else IndexSet(**{k: {world} for k in moved})
            return gather(out[node], index).reshape(-1).expand(n)

        log_w = torch.zeros(n, dtype=torch.float64)
        for site in trace.nodes.values():
            if site["type"] == "sample" and site["is_observed"]:
                log_w = log_w + gather(site["log_prob"], factual).reshape(-1)
        for node, op, v in query.evidence:
            if op != "=":
                log_w = torch.where(holds(dag, node, op, v, value(0, node)), log_w, -torch.inf)
        hit = torch.ones(n, dtype=torch.bool)
        for world, node, op, v in query.event:
            hit = hit & holds(dag, node, op, v, value(world, node))
        return hit, log_w


def weighted_share(hit: torch.Tensor, log_w: torch.Tensor) -> tuple[float, float, float]:
    """The weighted share of particles where the event holds, its standard error ``sqrt(p (1 - p) / ESS)``, and ESS."""
    n = ess(log_w)
    if n == 0:
        return math.nan, math.inf, 0.0
    p = float((torch.softmax(log_w.double(), 0) * hit.double()).sum())
    return p, math.sqrt(max(p * (1 - p), 0.0) / n), n


def engine_probability(model: Model, query: Rung3, draws: int, *, seed: int = 0) -> tuple[NumericAnswer, float]:
    """The engine's answer to the statement with ``draws N`` (after a warm-up ask), and the seconds it took."""
    if query.bind:
        model.ask(query.bind)
    model.ask(f"{query.statement} draws 1000", seed=seed)
    start = time.perf_counter()
    answer = model.ask(f"{query.statement} draws {draws}", seed=seed)
    return answer, time.perf_counter() - start


def z_score(a: float, se_a: float, b: float, se_b: float) -> float:
    """``|a - b| / sqrt(se_a^2 + se_b^2)``: 0 for equal values, inf for different ones without error."""
    if a == b:
        return 0.0
    se = math.hypot(se_a, se_b)
    return abs(a - b) / se if se > 0 else math.inf


def run_rung3(dag: DagSpec, model: Model, query: Rung3, particles: int, draws: int, *, seed: int = 0) -> dict:
    """One rung-3 probability through the engine (``ask``) and ChiRho: both answers, z, agreement, speeds."""
    answer, engine_s = engine_probability(model, query, draws, seed=seed)
    if query.bind:  # the bound unit must be the unit ChiRho conditions on
        bound = model.bound[query.bind.split("=")[0].strip()].values
        assert all(int(bound[k]) == dag.nodes[k].domain.encode(v) for k, _, v in query.evidence), f"{query.bind} is not {query.evidence}"
    inference.seed(seed)
    (hit, log_w), chirho_s = _timed(chirho_probability, noise_program(build_scm(dag, query.nodes)), dag, query, particles)
    p, se, accepted = weighted_share(hit, log_w)
    engine_ess = float(answer.details.get("ess", answer.draws))
    z = z_score(answer.value, answer.stderr, p, se)
    return {
        "query": query.name,
        "statement": query.statement + (f" (with {query.bind})" if query.bind else ""),
        "engine": answer.value,
        "engine_se": answer.stderr,
        "engine_method": answer.method,
        "engine_draws": answer.draws,
        "engine_ess": engine_ess,
        "engine_s": engine_s,
        "chirho": p,
        "chirho_se": se,
        "chirho_particles": particles,
        "chirho_accepted": accepted,
        "chirho_s": chirho_s,
        "z": z,
        "agree": z < 3,
        "engine_ess_per_s": engine_ess / engine_s,
        "chirho_ess_per_s": accepted / chirho_s,
        "speed_ratio": (engine_ess / engine_s) / max(accepted / chirho_s, 1e-12),
    }


def rung3_table(rows: list[dict]) -> str:
    """The rung-3 rows as a fixed-width text table."""
    head = (f"{'query':<15} {'engine':>7} {'± se':>7} {'chirho':>7} {'± se':>7} {'z':>5} {'agree':>5} "
            f"{'engine s':>8} {'chirho s':>8} {'accepted':>9} {'engine ess/s':>12} {'chirho ess/s':>12} {'ratio':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['query']:<15} {r['engine']:>7.4f} {r['engine_se']:>7.4f} {r['chirho']:>7.4f} {r['chirho_se']:>7.4f} {r['z']:>5.2f} "
            f"{'yes' if r['agree'] else 'NO':>5} {r['engine_s']:>8.2f} {r['chirho_s']:>8.2f} {r['chirho_accepted']:>9,.0f} "
            f"{r['engine_ess_per_s']:>12,.0f} {r['chirho_ess_per_s']:>12,.0f} {r['speed_ratio']:>8,.0f}"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    """Run every query and print the two tables (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the ChiRho particles, a quarter (rung 3: half) of the engine draws")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # both sides on one thread: steadier timings on a shared machine
    dag = load_dag(DAG)
    n_engine = 50_000 if args.quick else 200_000
    rows = []
    for query in QUERIES:
        inference.seed(args.seed)
        rows.append(run_query(dag, query, query.particles // (10 if args.quick else 1), n_engine))
    model = load(DAG, seed=args.seed)  # the DAG alone: its label mechanisms
    draws = 50_000 if args.quick else 100_000
    rung3 = [run_rung3(dag, model, q, q.particles // (10 if args.quick else 1), draws, seed=args.seed) for q in RUNG3]
    meta = {"chirho": chirho.__version__, "pyro": pyro.__version__, "torch": torch.__version__, "seed": args.seed, "quick": args.quick}
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows, "rung3": rung3}, indent=2))
        return
    print(f"ChiRho {meta['chirho']} vs this engine, {DAG.name} label nodes, seed {args.seed}{' (quick)' if args.quick else ''}")
    for r in rows:
        print(f"  {r['query']}: on [{r['scm']}] given {r['evidence']} do {r['action']} -> {', '.join(r['report'])}")
    print(table(rows))
    print("TV: joint over the reported nodes; floor: TV of as many draws from the engine's answer as ChiRho accepted;")
    print("nodeTV: worst single node; naiveTV: ChiRho with plain Categorical sites (interventional) vs the engine;")
    print("cf/s: effective samples per second (ChiRho: accepted draws); ratio: engine cf/s over ChiRho cf/s;")
    print("s/10k: ChiRho seconds for 10,000 counterfactuals at that rate.")
    print()
    print(f"Rung-3 probabilities: engine ask(...) draws {draws:,} vs ChiRho multi-world likelihood weighting")
    for r in rung3:
        print(f"  {r['query']}: {r['statement']}")
    print(rung3_table(rung3))
    agree = sum(r["agree"] for r in rung3)
    print(f"{agree} of {len(rung3)} agree (z < 3); z: |engine - chirho| / sqrt(se_engine^2 + se_chirho^2); se: each side's own,")
    print("ChiRho's sqrt(p (1 - p) / accepted); ess/s: effective samples per second (engine: its ESS, every draw when")
    print("unweighted; ChiRho: accepted particles); ratio: engine ess/s over ChiRho ess/s, also ChiRho's seconds over the")
    print("engine's for the same standard error. Engine times are whole ask() calls, parsing included.")


if __name__ == "__main__":
    main()
