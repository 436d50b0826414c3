"""Reading parameter tables keyed by parent values, shared by the label mechanisms."""

from __future__ import annotations

from typing import Any, Callable

import torch

from engine.model.domains import Domain, DomainError


def key_index(domain: Domain, key: Any) -> int | None:
    """The class index a YAML key names (a name, or a grid value within half a step), else None."""
    if domain.kind == "grid" and (isinstance(key, bool) or not isinstance(key, (int, float))):
        return None
    try:
        return domain.encode(key)
    except DomainError:
        return None


def parent_table(
    spec: Any,
    parents: list[tuple[str, Domain]],
    leaf: Callable[[Any, str], torch.Tensor],
    error: Callable[[str], Exception],
    where: str = "",
) -> torch.Tensor:
    """Build a tensor of shape (*parent sizes, ...) from nested mappings or lists keyed by parent value.

    Each level is a mapping from every value of the next parent to the level below (or a list
    in domain order); ``leaf(spec, where)`` turns the innermost entry into a tensor.
    """
    if not parents:
        return leaf(spec, where)
    (name, domain), rest = parents[0], parents[1:]
    if isinstance(spec, list):
        if len(spec) != domain.size:
            raise error(f"{where}{name}: expected {domain.size} entries (one per value of '{name}'), got {len(spec)}")
        items = list(enumerate(spec))
    elif isinstance(spec, dict):
        items = []
        for key, sub in spec.items():
            i = key_index(domain, key)
            if i is None:
                raise error(f"{where}{name}: '{key}' is not a value of '{name}'; valid: {domain.describe()}")
            items.append((i, sub))
        missing = set(range(domain.size)) - {i for i, _ in items}
        if missing:
            names = ", ".join(str(domain.values[i]) for i in sorted(missing))
            raise error(f"{where}{name}: no entry for {names}")
    else:
        raise error(f"{where}{name}: expected a mapping from each value of '{name}' to its entry")
    rows = dict((i, parent_table(sub, rest, leaf, error, f"{where}{name}={domain.values[i]}: ")) for i, sub in items)
    return torch.stack([rows[i] for i in range(domain.size)])


def flat_index(parents: dict[str, torch.Tensor], sizes: list[tuple[str, int]]) -> torch.Tensor:
    """Row-major index of each unit's parent configuration (0 for a root)."""
    index = None
    for name, size in sizes:
        index = parents[name] if index is None else index * size + parents[name]
    return index
