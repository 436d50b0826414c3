"""Image statistics: the registry, and area / cx / cy on images drawn by hand."""

import pytest
import torch

from engine.model.domains import Image
from engine.query import statistics
from engine.query.statistics import register_statistic

BINARY, GRAY = Image((4, 6)), Image((4, 6), "gray")


def test_area_and_centroid_of_a_binary_image():
    image = torch.zeros(1, 4, 6)
    image[0, 1:3, 4:6] = 1  # rows 1-2, columns 4-5
    assert statistics.area(image, BINARY).tolist() == [4.0]
    assert statistics.cx(image, BINARY).tolist() == [4.5]
    assert statistics.cy(image, BINARY).tolist() == [1.5]


def test_gray_images_count_intensity():
    image = torch.zeros(2, 4, 6)
    image[0, 0, 0] = 255
    image[0, 3, 5] = 51  # a fifth as bright: pulls the centroid a fifth of the way
    assert statistics.area(image, GRAY).tolist() == pytest.approx([1.2, 0.0])
    assert statistics.cx(image, GRAY)[0].item() == pytest.approx(5 * 0.2 / 1.2)
    assert statistics.cx(image, GRAY)[1].item() == 2.5  # an empty image: its centre


def test_the_registry():
    assert {"area", "cx", "cy"} <= set(statistics.names())
    assert statistics.statistic("nothing") is None
    assert statistics.ENTRY_POINT_GROUP == "causal_query.statistics"

    @register_statistic("test_top_row")
    def top_row(images, domain):
        return images[:, 0].double().sum(-1)

    try:
        assert statistics.statistic("test_top_row") is top_row
    finally:
        del statistics.STATISTICS.entries["test_top_row"]
