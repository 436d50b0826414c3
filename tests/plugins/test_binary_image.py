"""BinaryImage: Bernoulli(logits).to_event(2) with a one-node log-density; its pixel noise and counterfactual pixels."""

import math

import pyro.distributions as dist
import pytest
import torch

from plugins.binary_image import BinaryImage, below_one, pixel_counterfactual, pixel_noise


@pytest.mark.parametrize("batch", [(5,), (2, 3), ()])
def test_log_prob_and_gradient_match_independent_bernoulli_pixels(batch):
    torch.manual_seed(0)
    logits = (torch.randn(*batch, 7, 6) * 8).requires_grad_()
    image = (torch.rand(*batch, 7, 6) < 0.3).float()
    mine = BinaryImage(logits).log_prob(image)
    (grad_mine,) = torch.autograd.grad(mine.sum() * 1.5, logits)
    theirs = dist.Bernoulli(logits=logits).to_event(2).log_prob(image)
    (grad_theirs,) = torch.autograd.grad(theirs.sum() * 1.5, logits)
    assert mine.shape == theirs.shape == batch
    torch.testing.assert_close(mine, theirs)
    torch.testing.assert_close(grad_mine, grad_theirs)


def test_log_prob_broadcasts_one_image_against_a_batch_of_logits():
    logits = torch.randn(4, 3, 3)
    image = (torch.rand(3, 3) < 0.5).float()
    torch.testing.assert_close(BinaryImage(logits).log_prob(image), dist.Bernoulli(logits=logits).to_event(2).log_prob(image))


def test_shapes_samples_mean_and_expand():
    logits = torch.tensor([[[-30.0, 30.0], [30.0, -30.0]]])
    d = BinaryImage(logits)
    assert d.batch_shape == (1,) and d.event_shape == (2, 2)
    assert torch.equal(d.sample(), torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]))
    assert d.sample((3,)).shape == (3, 1, 2, 2)
    torch.testing.assert_close(d.mean, torch.sigmoid(logits))
    e = d.expand((4,))
    assert e.batch_shape == (4,) and e.log_prob(d.sample()).shape == (4,)


def test_validation_refuses_images_that_are_not_binary():
    with pytest.raises(ValueError):
        BinaryImage(torch.zeros(1, 2, 2), validate_args=True).log_prob(torch.full((1, 2, 2), 0.5))


def test_the_gradient_with_respect_to_the_image_matches_too():
    logits = torch.randn(3, 4, 4)
    image = torch.rand(3, 4, 4).round().requires_grad_()
    (mine,) = torch.autograd.grad(BinaryImage(logits).log_prob(image).sum(), image)
    (theirs,) = torch.autograd.grad(dist.Bernoulli(logits=logits).to_event(2).log_prob(image).sum(), image)
    torch.testing.assert_close(mine, theirs)


def test_logits_without_two_image_dims_are_refused():
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W\)"):
        BinaryImage(torch.zeros(5))


# ---- the pixel noise, and a counterfactual pixel under its posterior -------------------------
# U ──► pixel = 1[U < p]          (counterfactually 1[U < q], U from its posterior given the pixel)

TINY = torch.finfo(torch.float32).tiny
TOP = below_one(torch.float32)
# (value, p, q, probability that 1[U < q] is on), None where the pixel is decided: it keeps its value
CASES = [
    (1.0, 0.3, 0.5, None), (1.0, 0.3, 0.3, None), (1.0, TINY, TOP, None),  # on, q >= p: on
    (0.0, 0.3, 0.1, None), (0.0, 0.3, 0.3, None), (0.0, TOP, TINY, None),  # off, q <= p: off
    (1.0, 0.6, 0.15, 0.25), (1.0, 0.8, 0.6, 0.75), (1.0, TOP, 0.5, 0.5),  # on, q < p: on with probability q / p
    (0.0, 0.2, 0.6, 0.5), (0.0, 0.5, 0.9, 0.8), (0.0, TINY, 0.25, 0.25),  # off, q > p: on with probability (q - p) / (1 - p)
]


def test_a_decided_pixel_keeps_its_value_and_an_undecided_one_is_on_with_the_closed_form_probability():
    torch.manual_seed(0)
    n = 100_000
    value, p, q = (torch.tensor([c[i] for c in CASES]).expand(n, -1) for i in range(3))
    out = pixel_counterfactual(value, p, q)
    assert out.dtype == torch.float32 and set(out.unique().tolist()) <= {0.0, 1.0}
    for i, (v, _, _, on) in enumerate(CASES):
        if on is None:
            assert (out[:, i] == v).all()
        else:
            assert abs(out[:, i].mean().item() - on) < 5 * math.sqrt(on * (1 - on) / n)


def test_it_is_the_drawn_noise_compared_with_q_given_the_same_uniforms():
    """The same pixel as pixel_noise(value, p) < q, draw for draw: the same distribution, the noise never held."""
    torch.manual_seed(0)
    p = torch.rand(64, 16, 16).clamp_(TINY, TOP)
    p[0, 0, :4] = torch.tensor([TINY, TOP, TINY, TOP])
    q = torch.rand(64, 16, 16).clamp_(TINY, TOP)
    q[0, 0, :4] = torch.tensor([TOP, TINY, TINY, TOP])
    for value in ((torch.rand_like(p) < p).float(), torch.bernoulli(torch.full_like(p, 0.5))):  # the model's, and foreign
        torch.manual_seed(1)
        mine = pixel_counterfactual(value, p, q)
        torch.manual_seed(1)
        assert torch.equal(mine, (pixel_noise(value, p) < q).float())
        assert torch.equal(pixel_counterfactual(value, p, p), value)  # q = p: every pixel decided, the value bit for bit
