"""Is a label sample faithful to its DAG? G-tests of what the graph implies.

Three kinds of statement, each with a G statistic and a chi-square p-value:

- independence: for every non-adjacent pair, the later node X (topological order) is
  independent of the other Y given X's parents (local Markov; checked as a d-separation);
- dependence: for every edge P -> C, C depends on P given C's other parents;
- fit: each node's empirical conditional matches its declared p(value | parents).

Tested variables may be coarsened into a few bins (that keeps an independence true); the
conditioning set is never coarsened (that would not). Real-valued nodes are cut into BINS
quantile bins; an independence whose later node X is real is tested through X's exogenous
noise, abducted from the data by X's declared mechanism: with X = f(parents, U),
X _||_ Y | parents holds iff U _||_ Y (and the parents), so no conditioning set is binned.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np
import torch

from engine.model.scm import SCM

ALPHA = 1e-3
BINS = 8
MIN_EXPECTED = 5.0


@dataclass(frozen=True)
class Statement:
    """One tested statement and its outcome."""

    kind: str  # "independence", "dependence" or "fit"
    text: str
    g: float
    df: int
    p_value: float

    @property
    def passed(self) -> bool:
        return self.p_value < ALPHA if self.kind == "dependence" else self.p_value >= ALPHA


def check(scm: SCM, labels: dict[str, np.ndarray]) -> list[Statement]:
    """Every statement the SCM's graph implies about ``labels`` (class indices by node)."""
    dag, graph = scm.dag, scm.dag.graph.subgraph(scm.order)
    noise = {n: residual(scm, labels, n) for n in scm.order if not dag.nodes[n].domain.is_discrete}
    labels = {n: discrete(labels[n], dag.nodes[n].domain) for n in scm.order}
    sizes = {n: dag.nodes[n].domain.size if dag.nodes[n].domain.is_discrete else BINS for n in scm.order}
    statements = []
    order = list(scm.order)
    for i, y in enumerate(order):
        for x in order[i + 1:]:
            if graph.has_edge(x, y) or graph.has_edge(y, x):
                continue
            given = list(dag.nodes[x].parents)
            assert nx.is_d_separator(graph, {x}, {y}, set(given)), (x, y, given)
            if x in noise:  # x = f(parents, U): x _||_ y | parents  iff  U_x _||_ (y, parents); tested against y
                g, df = _conditional_g(labels | {x: noise[x]}, sizes, x, y, [])
            else:
                g, df = _conditional_g(labels, sizes, x, y, given)
            statements.append(Statement("independence", f"{x} _||_ {y}{_given(given)}", g, df, _p(g, df)))
    for child in order:
        parents = list(dag.nodes[child].parents)
        for p in parents:
            given = [q for q in parents if q != p]
            g, df = _conditional_g(labels, sizes, child, p, given)
            statements.append(Statement("dependence", f"{child} depends on {p}{_given(given)}", g, df, _p(g, df)))
    for node in (n for n in order if dag.nodes[n].domain.is_discrete and all(dag.nodes[p].domain.is_discrete for p in dag.nodes[n].parents)):
        g, df = _fit_g(scm, labels, node)
        statements.append(Statement("fit", f"p({node}{_given(list(dag.nodes[node].parents), ' | ')}) as declared", g, df, _p(g, df)))
    return statements


def residual(scm: SCM, labels: dict[str, np.ndarray], node: str) -> np.ndarray:
    """The node's exogenous noise abducted from the data by its declared mechanism, in quantile bins."""
    dag = scm.dag
    tensor = lambda n: torch.as_tensor(labels[n], dtype=dag.nodes[n].domain.dtype)  # noqa: E731
    noise = scm.mechanisms[node].abduct(tensor(node), {p: tensor(p) for p in dag.nodes[node].parents})
    u = next(iter(noise.values())).reshape(len(labels[node]), -1)[:, 0].numpy()
    return np.digitize(u, np.quantile(u, np.linspace(0, 1, BINS + 1)[1:-1])).astype(np.int64)


def discrete(values: np.ndarray, domain) -> np.ndarray:
    """Class indices as they are; real values in BINS quantile bins of their own (equal counts)."""
    if domain.is_discrete:
        return np.asarray(values, dtype=np.int64)
    edges = np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1])
    return np.digitize(values, edges).astype(np.int64)


def table(statements: list[Statement]) -> str:
    """A printable table of the statements."""
    rows = [f"{'kind':<13} {'statement':<44} {'G':>10} {'df':>6} {'p':>9}  result"]
    for s in statements:
        rows.append(f"{s.kind:<13} {s.text:<44} {s.g:>10.1f} {s.df:>6} {s.p_value:>9.2e}  {'ok' if s.passed else 'FAIL'}")
    return "\n".join(rows)


def _given(names, sep=" | ") -> str:
    return f"{sep}{', '.join(names)}" if names else ""


def _p(g: float, df: int) -> float:
    """Chi-square survival function: P(chi2_df >= g)."""
    if df <= 0:
        return 1.0
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), torch.tensor(g / 2, dtype=torch.float64)))


def _coarse(values: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    bins = min(size, BINS)
    return values * bins // size, bins


def _strata(labels, sizes, given) -> tuple[np.ndarray, int]:
    index, count = np.zeros(len(next(iter(labels.values()))), dtype=np.int64), 1
    for name in given:
        index, count = index * sizes[name] + labels[name], count * sizes[name]
    return index, count


def _conditional_g(labels, sizes, x, y, given) -> tuple[float, int]:
    """G statistic and degrees of freedom of x _||_ y | given, summed over the strata of given."""
    a, na = _coarse(labels[x], sizes[x])
    b, nb = _coarse(labels[y], sizes[y])
    z, nz = _strata(labels, sizes, given)
    counts = np.bincount((z * na + a) * nb + b, minlength=nz * na * nb).reshape(nz, na, nb).astype(float)
    row, col, total = counts.sum(2, keepdims=True), counts.sum(1, keepdims=True), counts.sum((1, 2), keepdims=True)
    expected = np.divide(row * col, total, out=np.zeros_like(counts), where=total > 0)
    hit = counts > 0
    g = 2 * float(np.sum(counts[hit] * np.log(counts[hit] / expected[hit])))
    df = int(np.sum(np.maximum((row[:, :, 0] > 0).sum(1) - 1, 0) * np.maximum((col[:, 0, :] > 0).sum(1) - 1, 0)))
    return g, df


def _fit_g(scm: SCM, labels, node) -> tuple[float, int]:
    """G statistic of the observed counts of node against its declared conditional, per parent configuration.

    Within each configuration, cells expected below 5 are pooled into one.
    """
    dag = scm.dag
    parents = list(dag.nodes[node].parents)
    sizes = {n: dag.nodes[n].domain.size for n in scm.order}
    z, nz = _strata(labels, sizes, parents)
    k = sizes[node]
    counts = np.bincount(z * k + labels[node], minlength=nz * k).reshape(nz, k).astype(float)
    configs = np.flatnonzero(counts.sum(1) > 0)
    parent_values = {p: torch.as_tensor(np.unravel_index(configs, [sizes[q] for q in parents])[i]) for i, p in enumerate(parents)}
    mechanism = scm.mechanisms[node]
    logp = torch.stack([mechanism.log_prob(torch.full((len(configs),), v), parent_values) for v in range(k)], 1)
    expected = logp.exp().numpy() * counts[configs].sum(1, keepdims=True)
    observed = counts[configs]
    g, df = 0.0, 0
    for o, e in zip(observed, expected):
        small = e < MIN_EXPECTED
        if small.any():
            o, e = np.append(o[~small], o[small].sum()), np.append(e[~small], e[small].sum())
        hit = o > 0
        g += 2 * float(np.sum(o[hit] * np.log(o[hit] / e[hit])))
        df += int((e > 0).sum()) - 1
    return g, df
