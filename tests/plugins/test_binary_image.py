"""BinaryImage: Bernoulli(logits).to_event(2) with a one-node log-density; same values, same gradients."""

import pyro.distributions as dist
import pytest
import torch

from plugins.binary_image import BinaryImage


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
