"""GrayImage: discretised normal pixels on 0..255; exact truncated-normal pixel noise; the learned sigma."""

import math

import pytest
import torch
from torch.special import log_ndtr

from plugins.gray_image import GrayImage, PixelScale, gray_assign, gray_noise


def Phi(x):
    """The standard normal CDF, by erfc: accurate far in the lower tail (torch.special.ndtr is not)."""
    return 0.5 * torch.erfc(-x / math.sqrt(2)) if isinstance(x, torch.Tensor) else 0.5 * math.erfc(-x / math.sqrt(2))


def direct(level: torch.Tensor, mu: torch.Tensor, sigma: float) -> torch.Tensor:
    """log(Phi(b) - Phi(a)) from the definition in float64 (edge bins open), as Phi(-a) - Phi(-b) above the mean."""
    a = torch.where(level == 0, -math.inf, (level - 0.5 - mu) / sigma)
    b = torch.where(level == 255, math.inf, (level + 0.5 - mu) / sigma)
    return torch.where(a + b < 0, torch.log(Phi(b) - Phi(a)), torch.log(Phi(-a) - Phi(-b)))


def log_survival(x: float) -> float:
    """log(1 - Phi(x)) for large x, by its asymptotic series (error ~ 105 / x^8)."""
    return -x * x / 2 - math.log(x) - 0.5 * math.log(2 * math.pi) + math.log(1 - 1 / x**2 + 3 / x**4 - 15 / x**6)


def bits(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.int32)


def random_pixels(n: int, seed: int = 0):
    """mu (float32) anywhere in [0, 255] and at its ends; levels anywhere, 0 and 255 included."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.rand(n, 8, 8, generator=g) * 255
    mu[:, 0] = torch.tensor([0.0, 255.0, 1e-9, 254.99998, 0.0, 255.0, 127.5, 0.5])  # extremes, edges and ties
    level = torch.randint(0, 256, (n, 8, 8), generator=g).float()
    level[:, 0] = torch.tensor([255.0, 0.0, 255.0, 0.0, 0.0, 255.0, 128.0, 1.0])  # the far edge bins
    level[:, 1, :4] = torch.tensor([0.0, 255.0, 0.0, 255.0])
    return mu, level


@pytest.mark.parametrize("sigma", [0.5, 3.7, 40.0])
def test_log_prob_is_the_direct_float64_computation(sigma):
    mu, level = random_pixels(20)
    mu, level = mu.double(), level.double()
    mine = GrayImage(mu, sigma).pixel_log_prob(level)
    theirs = direct(level, mu, sigma)
    fine = theirs > -600  # where Phi(b) - Phi(a) is a normal float64 number: rounding costs it no digits
    assert fine.sum() > 30
    torch.testing.assert_close(mine[fine], theirs[fine], rtol=1e-9, atol=1e-12)
    assert torch.isfinite(mine).all()
    torch.testing.assert_close(GrayImage(mu, sigma).log_prob(level), mine.sum((-2, -1)))
    # float32 agrees with float64 to its precision
    torch.testing.assert_close(GrayImage(mu.float(), sigma).pixel_log_prob(level.float()).double(), mine, rtol=2e-5, atol=2e-5)


def test_log_prob_far_in_the_tails_matches_the_asymptotic_series():
    # mu = 0, sigma = 0.5: level 255 is 509 sigmas up; an inner level 200 (mu = 0, sigma 1) too
    lp = GrayImage(torch.zeros(1, 3, dtype=torch.float64), 0.5).pixel_log_prob(torch.tensor([[255.0, 100.0, 0.0]], dtype=torch.float64))
    assert lp[0, 0].item() == pytest.approx(log_survival(254.5 / 0.5), rel=1e-12)
    expected = log_survival(99.5 / 0.5) + math.log1p(-math.exp(log_survival(100.5 / 0.5) - log_survival(99.5 / 0.5)))
    assert lp[0, 1].item() == pytest.approx(expected, rel=1e-12)
    assert lp[0, 2].item() == pytest.approx(log_ndtr(torch.tensor(1.0, dtype=torch.float64)).item(), rel=1e-12)
    mirrored = GrayImage(torch.full((1, 1), 255.0, dtype=torch.float64), 0.5).pixel_log_prob(torch.zeros(1, 1, dtype=torch.float64))
    assert mirrored.item() == pytest.approx(lp[0, 0].item(), rel=1e-12)


@pytest.mark.parametrize("mu, sigma", [(37.2, 3.3), (0.0, 0.5), (255.0, 0.5), (254.7, 0.6), (128.0, 500.0), (3.0, 1e-2)])
def test_probabilities_sum_to_one_over_the_256_levels(mu, sigma):
    levels = torch.arange(256, dtype=torch.float64).view(256, 1, 1)
    p = GrayImage(torch.full((1, 1), mu, dtype=torch.float64), sigma).pixel_log_prob(levels).exp()
    assert p.sum().item() == pytest.approx(1.0, abs=1e-12)


def test_gradients_reach_mu_and_sigma_and_are_finite_everywhere():
    mu, level = random_pixels(4)
    raw = torch.logit(mu / 255, eps=1e-6).requires_grad_()
    sigma = torch.tensor(0.5, requires_grad=True)
    GrayImage(255 * torch.sigmoid(raw), sigma).log_prob(level).sum().backward()
    assert torch.isfinite(raw.grad).all() and raw.grad.abs().sum() > 0
    assert torch.isfinite(sigma.grad) and sigma.grad != 0
    # and they are the derivatives (float64, inner and edge bins, mu on both sides)
    m = torch.tensor([[3.2, 250.1, 120.0, 0.7]], dtype=torch.float64, requires_grad=True)
    s = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    x = torch.tensor([[0.0, 255.0, 131.0, 2.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda m, s: GrayImage(m, s).log_prob(x), (m, s))


def test_shapes_samples_and_expand():
    mu = torch.tensor([[[0.0, 255.0], [100.0, 100.0]]])
    d = GrayImage(mu, torch.tensor(1e-3))
    assert d.batch_shape == (1,) and d.event_shape == (2, 2)
    assert torch.equal(d.sample(), mu)
    draws = GrayImage(mu, 30.0).sample((500,))
    assert draws.shape == (500, 1, 2, 2) and torch.equal(draws, draws.round()) and draws.min() >= 0 and draws.max() <= 255
    e = d.expand((4,))
    assert e.batch_shape == (4,) and e.log_prob(d.sample()).shape == (4,)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 7.3, 200.0])
def test_abducted_noise_gives_every_level_back_bit_for_bit(sigma):
    """gray_assign(mu, sigma, gray_noise(level, mu, sigma)) == level, for any level and mu, far tails included."""
    torch.manual_seed(0)
    mu, level = random_pixels(300, seed=1)
    u = gray_noise(level, mu, torch.tensor(sigma))
    assert u.dtype == torch.float32 and torch.isfinite(u).all()
    assert torch.equal(bits(gray_assign(mu, torch.tensor(sigma), u)), bits(level))
    # inside the bin [(level - 0.5 - mu) / sigma, (level + 0.5 - mu) / sigma], up to float32 rounding
    t = (level.double() - mu.double()) / sigma
    lo = torch.where(level == 0, -math.inf, t - 0.5 / sigma)
    hi = torch.where(level == 255, math.inf, t + 0.5 / sigma)
    slack = 1e-6 * (1 + t.abs())
    assert ((u.double() >= lo - slack) & (u.double() <= hi + slack)).all()


def test_the_model_gives_its_own_draws_back_and_null_noise_is_a_no_op():
    mu = torch.rand(50, 8, 8) * 255
    sigma = torch.tensor(4.0)
    image = gray_assign(mu, sigma, torch.randn(50, 8, 8))
    assert torch.equal(bits(gray_assign(mu, sigma, gray_noise(image, mu, sigma))), bits(image))
    assert torch.equal(bits(gray_assign(torch.tensor([[-3.0, 0.2]]), sigma, torch.zeros(1, 2))), bits(torch.zeros(1, 2)))  # +0.0, never -0.0


def test_noise_is_the_truncated_normal():
    """Means of N(0, 1) truncated to a bin: -phi(b)/Phi(b) on (-inf, b]; about a + 1/a far up at [a, inf)."""
    torch.manual_seed(0)
    n = 200_000
    u = gray_noise(torch.zeros(n, 1), torch.full((n, 1), 10.0), 10.0)  # level 0: U <= b = (0.5 - 10) / 10
    b = -0.95
    phi = math.exp(-b * b / 2) / math.sqrt(2 * math.pi)
    assert u.max() <= b and u.mean().item() == pytest.approx(-phi / Phi(b), abs=5e-3)
    u = gray_noise(torch.full((n, 1), 255.0), torch.zeros(n, 1), 0.5)  # 509 sigmas up: U >= a = 509
    a = 254.5 / 0.5
    assert u.min() >= a and (u.double() - a).mean().item() == pytest.approx(1 / a, rel=0.05)
    u = gray_noise(torch.full((n, 1), 40.0), torch.zeros(n, 1), 1.0)  # an inner bin 40 sigmas up: [39.5, 40.5]
    assert u.min() >= 39.5 and u.max() <= 40.5 and (u.double() - 39.5).mean().item() == pytest.approx(1 / 39.5, rel=0.05)
    u = gray_noise(torch.full((n, 1), 100.0), torch.full((n, 1), 100.0), 10.0)  # the central bin: nearly uniform
    assert u.abs().max() <= 0.05 and u.mean().abs() < 1e-3 and u.std().item() == pytest.approx(0.1 / math.sqrt(12), rel=0.02)


def test_pixel_scale_starts_at_its_value_and_stays_above_its_floor():
    scale = PixelScale(16.0, 0.5)
    assert scale().item() == pytest.approx(16.0)
    with torch.no_grad():
        scale.log_excess.fill_(-200.0)
    assert scale().item() >= 0.5
    assert [name for name, _ in scale.named_parameters()] == ["log_excess"]
    with pytest.raises(ValueError, match="init > floor > 0"):
        PixelScale(0.5, 0.5)
