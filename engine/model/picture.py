"""A picture of a DAG: nodes in topological layers, each labelled with its mechanism."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402

from engine.model.dag import DagSpec  # noqa: E402


def draw(dag: DagSpec, path: str | Path) -> Path:
    """Write a PNG of the DAG: roots on the left, each node's children further right."""
    graph = dag.graph
    for layer, names in enumerate(nx.topological_generations(graph)):
        for name in names:
            graph.nodes[name]["layer"] = layer
    position = nx.multipartite_layout(graph, subset_key="layer")
    figure, axes = plt.subplots(figsize=(2.2 * (max(graph.nodes[n]["layer"] for n in graph) + 1) + 1, 4))
    labels = {n: f"{n}\n{dag.nodes[n].mechanism}" for n in graph}
    colors = ["#f4d6a0" if dag.nodes[n].domain.is_image else "#b9d3ee" for n in graph]
    nx.draw_networkx_edges(graph, position, ax=axes, arrows=True, arrowsize=16, node_size=3200, edge_color="#555555")
    nx.draw_networkx_nodes(graph, position, ax=axes, node_size=3200, node_color=colors, edgecolors="#333333")
    nx.draw_networkx_labels(graph, position, labels=labels, ax=axes, font_size=8)
    axes.set_title(f"{dag.name}  ({Path(dag.path).name})", fontsize=10)
    axes.axis("off")
    axes.margins(0.12)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path
