"""YAML DAG files: parsed into typed specs and checked with networkx.

A DAG file declares one node per variable::

    name: story
    description: a drives b.
    nodes:
      a:
        mechanism: categorical
        domain: [low, high]
        params: {probs: [0.3, 0.7]}
      b:
        mechanism: categorical
        parents: [a]
        domain: {linspace: [0.5, 1.0, 6]}
        params: {probs: {low: [...], high: [...]}}

A domain is a list of names, a grid, real numbers or an image (``engine.model.domains``).
``world:`` names where the data come from: a registered world (``world: NAME``), or a mapping
``{NAME: options}`` for a world with options; when absent, the name is None and
``engine.worlds.world`` gives the world registered as the default.

The file is read by ``engine.model.yamlfile`` (duplicate keys, alias bombs, non-finite
numbers and files that are not UTF-8 are errors with a line and column).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import yaml

from engine.errors import DagError
from engine.model import domains
from engine.model.domains import Domain, DomainError
from engine.model.yamlfile import MAX_BYTES, number, read_yaml

TOP_KEYS = ("name", "description", "world", "nodes")


@dataclass(frozen=True)
class WorldSpec:
    """The world a DAG's data come from: a registered name (None: the default world) and its options."""

    name: str | None = None
    options: Any = None
    line: int = 0


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
    world: WorldSpec = WorldSpec()

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
        return tuple(n for n in self.order if not self.nodes[n].domain.is_image)

    @property
    def images(self) -> tuple[str, ...]:
        """The image nodes, in topological order."""
        return tuple(n for n in self.order if self.nodes[n].domain.is_image)

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
    file = Path(path)
    try:
        if not file.is_file():
            raise DagError(f"{path}: no such DAG file" if not file.exists() else f"{path}: not a regular file; a DAG file is YAML text")
        if file.stat().st_size > MAX_BYTES:
            raise DagError(f"{path}: the file is larger than {MAX_BYTES:,} bytes; DAG files must be smaller")
        raw = file.read_bytes()
    except OSError as e:
        raise DagError(f"{path}: cannot read the DAG file ({e.strerror})") from None
    return parse_dag(raw, path)


def parse_dag(text: str | bytes, path: str = "<dag>") -> DagSpec:
    """Parse DAG text (see the module docstring) into a validated DagSpec."""
    data, root = read_yaml(text, path)
    text = text.decode("utf-8-sig", errors="replace") if isinstance(text, bytes) else text
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict) or not data["nodes"]:
        raise DagError(f"{path}: a DAG file needs a top-level 'nodes:' mapping of node name to declaration")
    unknown = [str(k) for k in data if k not in TOP_KEYS]
    if unknown:
        raise DagError(f"{path}:{_key_lines(root).get(unknown[0], 0)}: unknown top-level key(s) {unknown}; valid: {', '.join(TOP_KEYS)}")
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
        world=_world(data["world"], path, _key_lines(root).get("world", 0)) if "world" in data else WorldSpec(),
    )


def _world(spec: Any, path: str, line: int) -> WorldSpec:
    """``world: NAME`` or ``world: {NAME: options}``."""
    if isinstance(spec, str) and spec:
        return WorldSpec(spec, None, line)
    if isinstance(spec, dict) and len(spec) == 1 and isinstance(next(iter(spec)), str):
        name, options = next(iter(spec.items()))
        return WorldSpec(name, options, line)
    raise DagError(f"{path}:{line}: world must name a registered world (world: NAME) or give one with options (world: {{NAME: OPTIONS}}), got {spec!r}")


def _key_lines(root) -> dict[str, int]:
    """Line of each top-level key, for error messages."""
    if not isinstance(root, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in root.value if isinstance(k, yaml.ScalarNode)}


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
    try:
        domain = domains.parse(decl.get("domain"), lambda v: number(v, where))
    except DomainError as e:
        raise DagError(f"{where}: {e}") from None
    return NodeSpec(name, decl["mechanism"], tuple(parents), domain, params, line)


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
