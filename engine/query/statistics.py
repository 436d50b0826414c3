"""Image statistics: numbers read off an image node's value, by name (``area(img)``, ``cx(img)``).

A statistic is a function of a batch of images ``(N, H, W)`` (binary 0/1, or gray levels
0..255) and the image's Domain, returning one float64 per image. The registry is a dict filled
by a decorator; other packages add theirs through the entry-point group
``causal_query.statistics``::

    @register_statistic("area")
    def area(images, domain): ...

    [project.entry-points."causal_query.statistics"]
    perimeter = "my_package.stats:perimeter"

Built in (``ink`` = the pixel's level / 255 for gray images, the pixel itself for binary ones):

- ``area``: the number of pixels on, sum of ink;
- ``cx``, ``cy``: the centroid's column and row in pixels (0 at the left and top edges' pixel
  centres), ink-weighted; the image centre for an empty image.
"""

from __future__ import annotations

from typing import Callable

import torch

from engine.model.domains import Image
from engine.model.registry import Registry

ENTRY_POINT_GROUP = "causal_query.statistics"
STATISTICS = Registry("statistic", ENTRY_POINT_GROUP, ())

Statistic = Callable[[torch.Tensor, Image], torch.Tensor]


def register_statistic(name: str):
    """Decorator: make ``fn(images, domain) -> (N,) float64`` available as ``name(img)`` in .cq files."""
    return STATISTICS.register(name)


def statistic(name: str) -> Statistic | None:
    """The statistic registered as ``name`` (built-in or entry point), or None."""
    STATISTICS.load()
    return STATISTICS.entries.get(name)


def names() -> list[str]:
    """Every registered statistic's name, sorted."""
    STATISTICS.load()
    return sorted(STATISTICS.entries)


def ink(images: torch.Tensor, domain: Image) -> torch.Tensor:
    """Each pixel's share of full intensity, float64: binary as it is, gray levels / 255."""
    images = images.double()
    return images / 255 if domain.levels() > 2 else images


@register_statistic("area")
def area(images: torch.Tensor, domain: Image) -> torch.Tensor:
    """Pixels on (binary), or summed intensity / 255 (gray)."""
    return ink(images, domain).sum((-2, -1))


def _centroid(images: torch.Tensor, domain: Image, axis: int) -> torch.Tensor:
    weight = ink(images, domain)
    total = weight.sum((-2, -1))
    size = images.shape[axis]
    coords = torch.arange(size, dtype=torch.float64, device=images.device)
    marginal = weight.sum(-1 if axis == -2 else -2)
    moment = (marginal * coords).sum(-1)
    return torch.where(total > 0, moment / total.clamp_min(1e-300), torch.full_like(total, (size - 1) / 2))


@register_statistic("cx")
def cx(images: torch.Tensor, domain: Image) -> torch.Tensor:
    """The ink-weighted mean column, in pixels from the left (the centre for an empty image)."""
    return _centroid(images, domain, -1)


@register_statistic("cy")
def cy(images: torch.Tensor, domain: Image) -> torch.Tensor:
    """The ink-weighted mean row, in pixels from the top (the centre for an empty image)."""
    return _centroid(images, domain, -2)
