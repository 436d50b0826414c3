"""YAML DAG files: parsed into typed specs and checked with networkx.

A DAG file declares one node per variable::

    name: dsprites
    description: shape drives orientation and scale, which drive position.
    nodes:
      shape:
        mechanism: categorical
        domain: [square, ellipse, heart]
        params: {probs: [0.3, 0.3, 0.4]}
      scale:
        mechanism: categorical
        parents: [shape]
        domain: {linspace: [0.5, 1.0, 6]}
        params: {probs: {square: [...], ellipse: [...], heart: [...]}}

A domain is a list of names (categorical), ``{linspace: [start, stop, count]}`` (a numeric
grid; ``pi`` and ``2pi`` are accepted as numbers) or ``{image: [height, width]}``.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import yaml

from engine.errors import DagError

_PI = re.compile(r"^\s*([0-9.]*)\s*\*?\s*pi\s*$")


@dataclass(frozen=True)
class Domain:
    """The values a node takes: names, a numeric grid, or an image of a given size."""

    kind: str  # "categorical", "grid" or "image"
    values: tuple = ()  # names or floats; empty for images
    shape: tuple[int, ...] = ()  # image height and width

    @property
    def size(self) -> int:
        return len(self.values)

    def index(self, value: Any) -> int:
        """The class index of a name, or of the grid value nearest to a number."""
        if self.kind == "categorical":
            return self.values.index(value)
        return min(range(self.size), key=lambda i: abs(self.values[i] - float(value)))

    def describe(self) -> str:
        if self.kind == "image":
            return "image %dx%d" % self.shape
        if self.kind == "categorical":
            return "{" + ", ".join(self.values) + "}"
        lo, hi = self.values[0], self.values[-1]
        return f"grid of {self.size} from {lo:g} to {hi:g}"


@dataclass(frozen=True)
class NodeSpec:
    """One node of a DAG file: its mechanism, parents, domain and mechanism parameters."""

    name: str
    mechanism: str
    parents: tuple[str, ...]
    domain: Domain
    params: dict = field(default_factory=dict, hash=False, compare=False)
    line: int = 0  # 1-based line of the node in its file

    def where(self, path: str) -> str:
        return f"{path}:{self.line}: node '{self.name}'"


@dataclass(frozen=True)
class DagSpec:
    """A validated DAG file: nodes in topological order, the graph, and the text it came from."""

    name: str
    description: str
    nodes: dict[str, NodeSpec] = field(hash=False)
    order: tuple[str, ...]
    path: str
    text: str = field(repr=False)

    @property
    def graph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        g.add_nodes_from(self.order)
        g.add_edges_from((p, n) for n in self.order for p in self.nodes[n].parents)
        return g

    @property
    def hash(self) -> str:
        """SHA-256 of the file text: a checkpoint is valid for exactly this DAG."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def labels(self) -> tuple[str, ...]:
        """The nodes that are not images, in topological order."""
        return tuple(n for n in self.order if self.nodes[n].domain.kind != "image")

    def descendants(self, names) -> set[str]:
        g = self.graph
        return set().union(set(), *(nx.descendants(g, n) for n in names))

    def ancestors(self, names) -> set[str]:
        g = self.graph
        return set().union(set(), *(nx.ancestors(g, n) for n in names))

    def where(self, node: str) -> str:
        return self.nodes[node].where(self.path)


def load_dag(path: str | Path) -> DagSpec:
    """Read, parse and validate a DAG file; raise DagError naming the file, node and problem."""
    path = str(path)
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise DagError(f"{path}: cannot read the DAG file ({e.strerror})") from None
    return parse_dag(text, path)


def parse_dag(text: str, path: str = "<dag>") -> DagSpec:
    """Parse DAG text (see the module docstring) into a validated DagSpec."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise DagError(f"{where}: malformed YAML: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict) or not data["nodes"]:
        raise DagError(f"{path}: a DAG file needs a top-level 'nodes:' mapping of node name to declaration")
    lines = _node_lines(root)
    nodes = {}
    for name, decl in data["nodes"].items():
        nodes[str(name)] = _node(str(name), decl, path, lines.get(str(name), 0))
    order = _check_graph(nodes, path)
    return DagSpec(
        name=str(data.get("name", Path(path).stem)),
        description=str(data.get("description", "")).strip(),
        nodes=nodes,
        order=order,
        path=path,
        text=text,
    )


def _node_lines(root) -> dict[str, int]:
    """Line of each node's key under 'nodes:', for error messages."""
    for key, value in getattr(root, "value", []):
        if getattr(key, "value", None) == "nodes" and isinstance(value, yaml.MappingNode):
            return {k.value: k.start_mark.line + 1 for k, _ in value.value}
    return {}


def _node(name: str, decl: Any, path: str, line: int) -> NodeSpec:
    where = f"{path}:{line}: node '{name}'"
    if not isinstance(decl, dict):
        raise DagError(f"{where}: expected a mapping with 'mechanism', 'parents', 'domain' and 'params'")
    unknown = set(decl) - {"mechanism", "parents", "domain", "params", "description"}
    if unknown:
        raise DagError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys are mechanism, parents, domain, params, description")
    if not isinstance(decl.get("mechanism"), str):
        raise DagError(f"{where}: 'mechanism' must name a registered mechanism")
    parents = decl.get("parents") or []
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise DagError(f"{where}: 'parents' must be a list of node names")
    if len(set(parents)) != len(parents):
        raise DagError(f"{where}: 'parents' lists a node twice: {parents}")
    params = decl.get("params") or {}
    if not isinstance(params, dict):
        raise DagError(f"{where}: 'params' must be a mapping of parameter name to value")
    return NodeSpec(name, decl["mechanism"], tuple(parents), _domain(decl.get("domain"), where), params, line)


def _domain(spec: Any, where: str) -> Domain:
    valid = "a list of names, {linspace: [start, stop, count]} or {image: [height, width]}"
    if isinstance(spec, list) and spec and all(isinstance(v, str) for v in spec):
        if len(set(spec)) != len(spec):
            raise DagError(f"{where}: domain names must be distinct: {spec}")
        return Domain("categorical", tuple(spec))
    if isinstance(spec, dict) and len(spec) == 1 and "linspace" in spec:
        args = spec["linspace"]
        if isinstance(args, list) and len(args) == 3 and isinstance(args[2], int) and args[2] >= 2:
            lo, hi = number(args[0], where), number(args[1], where)
            if hi > lo:
                step = (hi - lo) / (args[2] - 1)
                return Domain("grid", tuple(lo + i * step for i in range(args[2])))
        raise DagError(f"{where}: linspace needs [start, stop, count] with stop > start and an integer count >= 2, got {args}")
    if isinstance(spec, dict) and len(spec) == 1 and "image" in spec:
        hw = spec["image"]
        if isinstance(hw, list) and len(hw) == 2 and all(isinstance(v, int) and v > 0 for v in hw):
            return Domain("image", (), tuple(hw))
        raise DagError(f"{where}: image needs [height, width] as positive integers, got {hw}")
    hint = " (YAML reads yes/no/on/off as booleans: quote such names)" if "False" in repr(spec) or "True" in repr(spec) else ""
    raise DagError(f"{where}: domain must be {valid}, got {spec!r}{hint}")


def number(value: Any, where: str) -> float:
    """A YAML number, also accepting 'pi', '2pi' and '2*pi'."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = _PI.match(str(value))
    if m:
        return float(m.group(1) or 1) * math.pi
    raise DagError(f"{where}: expected a number, got {value!r}")


def _check_graph(nodes: dict[str, NodeSpec], path: str) -> tuple[str, ...]:
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    for node in nodes.values():
        for p in node.parents:
            if p not in nodes:
                raise DagError(f"{node.where(path)}: unknown parent '{p}'; nodes are {', '.join(nodes)}")
            g.add_edge(p, node.name)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return tuple(nx.lexicographical_topological_sort(g, key=list(nodes).index))
    names = [u for u, _ in cycle] + [cycle[0][0]]
    raise DagError(f"{path}: the graph has a cycle: {' -> '.join(names)}; a DAG file must be acyclic")
