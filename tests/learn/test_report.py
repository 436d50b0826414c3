"""The training report's figures of a learned image mechanism: the latent turn's ambiguity."""

import pyro
import torch

from engine.learn.report import ambiguity_lines, evaluate
from engine.model.scm import build_scm
from tests.plugins.test_vae_decoder import drawn_shapes, latent_turn_dag


def test_the_turn_ambiguity_counts_the_turns_an_image_leaves_open():
    """Exactly drawn: a square leaves all four quarter turns open, a flag one."""
    pyro.set_rng_seed(0)
    m = build_scm(latent_turn_dag()).mechanisms["img"]
    drawn_shapes(m)
    parents = {"shape": torch.tensor([0, 0, 1, 1]), "x": torch.full((4,), 2), "y": torch.full((4,), 2)}
    with torch.no_grad():
        images = m.probs(parents, torch.zeros(4, 2), torch.tensor([0, 3, 1, 2])).round()
        m.encoder[-1].weight.zero_()  # z's mean 0 for every image: the templates ignore it anyway
    report = evaluate(m, images, parents, batch=3)
    assert report["iou"] == 1.0  # each reconstructed at its most likely turn
    out = report["turn_ambiguity"]
    assert out["turns"] == 4 and abs(out["mean"] - 2.5) < 1e-4
    assert abs(out["shape"]["square"] - 4) < 1e-4 and abs(out["shape"]["flag"] - 1) < 1e-4
    assert out["units"] == 4
    assert ambiguity_lines(out) == ["- latent turn: the posterior leaves 2.50 of 4 turns open (exp of its entropy at the encoder's mean z, on 4 units); "
                                    "by shape: square 4.00, flag 1.00"]
    assert ambiguity_lines(None) == []
