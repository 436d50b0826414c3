"""A gray image as one event of independent, discretised normal pixels, with exact pixel noise.

Each pixel is a normal variable rounded to a gray level and clipped to 0..255::

    U     ~ N(0, 1)                                  per pixel
    level = clamp(round(mu + sigma U), 0, 255)       gray_assign(mu, sigma, U)
    p(level) = Phi(b) - Phi(a),   a, b = (level -+ 0.5 - mu) / sigma

with the edge bins open: a = -inf for level 0, b = +inf for level 255. ``GrayImage(mu, sigma)``
is that likelihood, one event per (H, W) image; ``gray_noise(level, mu, sigma)`` draws U from
its exact posterior, N(0, 1) truncated to [a, b], so that ``gray_assign`` gives the level back
bit for bit. ``PixelScale`` is a learned sigma, bounded below::

    pyro.sample("img", GrayImage(mu, scale()), obs=image)       # image: float gray levels
    u = gray_noise(image, mu, scale())                           # gray_assign(mu, scale(), u) == image

Both work in log space on the side of the normal where the bin's mass sits: a bin above the
mean is mirrored, [a, b] -> [-b, -a], so that [lo, hi] = [min(a, -b), min(b, -a)] and
p = Phi(hi) (1 - exp(log Phi(lo) - log Phi(hi))) keeps its relative precision hundreds of
sigmas out (``log_ndtr``); an open edge bin needs no case of its own (Phi(-inf) = 0).
"""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution
from torch import nn
from torch.autograd.function import once_differentiable
from torch.distributions import constraints
from torch.special import log_ndtr, ndtri

TOP = 255  # the brightest gray level
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def gray_assign(mu: torch.Tensor, sigma: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """level = clamp(round(mu + sigma u), 0, 255), in the dtype of ``mu`` and ``u``."""
    return torch.round(mu + sigma * u).clamp_(0, TOP).add_(0.0)  # + 0: a level 0 is +0.0, never -0.0


def _bin(level: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor):
    """The level's bin in noise units, on its mass's side: (lo, hi, flip), U in [lo, hi], or in [-hi, -lo] where ``flip``."""
    inv = sigma.reciprocal()
    a = ((level - 0.5).masked_fill_(level <= 0, -math.inf) - mu) * inv
    b = ((level + 0.5).masked_fill_(level >= TOP, math.inf) - mu) * inv
    return torch.minimum(a, -b), torch.minimum(b, -a), (a + b) > 0


class _PixelLogProb(torch.autograd.Function):
    """log p(level | mu, sigma) per pixel; the backward pass is the closed-form derivative.

    With P = Phi(hi) - Phi(lo): d log P / d hi = phi(hi) / P, d log P / d lo = -phi(lo) / P, and
    d/d mu = -(d/da + d/db) / sigma, d/d sigma = -(a d/da + b d/db) / sigma.
    """

    @staticmethod
    def forward(ctx, mu: torch.Tensor, sigma: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        lo, hi, flip = _bin(level, mu, sigma)
        top = log_ndtr(hi)
        gap = (log_ndtr(lo) - top).clamp_(max=-torch.finfo(top.dtype).tiny)  # log(Phi(lo) / Phi(hi)) < 0
        lp = torch.log(torch.expm1(gap).neg_()).add_(top)  # lo = -inf: log(1 - 0) = 0
        ctx.save_for_backward(sigma, lo, hi, lp, flip)
        ctx.shapes = mu.shape, sigma.shape
        return lp

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        sigma, lo, hi, lp, flip = ctx.saved_tensors
        k = lp + LOG_SQRT_2PI
        d_hi = torch.exp(hi.square().mul_(-0.5).sub_(k)).mul_(grad)  # phi(hi) / P
        lo = lo.clamp(min=-1e4)  # an open bin's -inf: phi = 0, and lo * phi stays 0
        d_lo = torch.exp(lo.square().mul_(-0.5).sub_(k)).mul_(grad)  # phi(lo) / P
        inv = sigma.reciprocal()
        d_mu = d_sigma = None
        if ctx.needs_input_grad[0]:
            d_mu = (d_hi - d_lo).mul_(inv)
            d_mu = torch.where(flip, d_mu, d_mu.neg()).sum_to_size(ctx.shapes[0])
        if ctx.needs_input_grad[1]:
            d_sigma = (d_lo.mul_(lo).sub_(d_hi.mul_(hi))).mul_(inv).sum_to_size(ctx.shapes[1])
        return d_mu, d_sigma, None


class GrayImage(TorchDistribution):
    """Discretised N(mu, sigma^2) pixels on the gray levels 0..255; one event is a whole (H, W) image.

    ``mu`` has shape (..., H, W) in gray levels; ``sigma`` (gray levels, > 0) broadcasts against it
    (a scalar, or one per pixel). log p(x) = sum_ij log(Phi(b_ij) - Phi(a_ij)), computed from
    log_ndtr in the dtype of ``mu``; gradients flow to mu and sigma.
    """

    arg_constraints = {"mu": constraints.real, "sigma": constraints.positive}
    support = constraints.independent(constraints.integer_interval(0, TOP), 2)

    def __init__(self, mu: torch.Tensor, sigma: torch.Tensor | float, validate_args=None):
        if mu.dim() < 2:
            raise ValueError(f"GrayImage needs mu of shape (..., H, W), got {tuple(mu.shape)}")
        self.mu = mu
        self.sigma = torch.as_tensor(sigma, dtype=mu.dtype, device=mu.device)
        super().__init__(mu.shape[:-2], mu.shape[-2:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> "GrayImage":
        shape = torch.Size(batch_shape) + self.event_shape
        return GrayImage(self.mu.expand(shape), self.sigma, validate_args=self._validate_args)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            mu = self.mu.expand(self._extended_shape(sample_shape))
            return gray_assign(mu, self.sigma, torch.randn_like(mu))

    def pixel_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log p of every pixel, shape (..., H, W)."""
        return _PixelLogProb.apply(self.mu, self.sigma, value.to(self.mu.dtype))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return self.pixel_log_prob(value).sum((-2, -1))


def _log_ndtr_inverse(log_p: torch.Tensor) -> torch.Tensor:
    """y with log Phi(y) = log_p (float64): ndtri where exp(log_p) is a normal number, else Newton.

    Below exp(-700) (y < -37) Newton starts from y^2 = 2q - 2 log(-y) - log(2 pi), q = -log_p,
    and converges in a few steps since log Phi is nearly quadratic there.
    """
    y = ndtri(log_p.exp())
    deep = log_p < -700
    if deep.any():
        target = log_p[deep]
        x = -torch.sqrt(-2 * target - torch.log(-2 * target) - 2 * LOG_SQRT_2PI)
        for _ in range(4):
            lp = log_ndtr(x)
            x = x - (lp - target) * torch.exp(lp + 0.5 * x * x + LOG_SQRT_2PI)  # / (phi / Phi)
        y[deep] = x
    return y


@torch.no_grad()
def gray_noise(level: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """A draw of U ~ N(0, 1) given clamp(round(mu + sigma U), 0, 255) = level: N(0, 1) truncated to the level's bin.

    Sampled by the inverse CDF in float64, in log space on the bin's side of the normal, and
    returned in the dtype of ``mu``. A draw that this rounding, or round-half-to-even in
    ``gray_assign``, puts on the wrong side of its bin's edge is moved a little towards the
    bin's centre (level - mu) / sigma: 2^-16 of the way first (a few float32 steps of
    mu + sigma U), at most all of it, so ``gray_assign`` always gives ``level`` back.
    """
    sigma = torch.as_tensor(sigma, dtype=mu.dtype, device=mu.device)
    level, mu = torch.broadcast_tensors(level.to(mu.dtype), mu)
    lo, hi, flip = _bin(level.double(), mu.double(), sigma.double())
    top = log_ndtr(hi)
    v = torch.rand_like(top).clamp_(min=2.0**-60)  # in (0, 1): a draw from an open bin stays finite
    y = _log_ndtr_inverse(top + torch.log1p(v * torch.expm1(log_ndtr(lo) - top)))
    y = torch.minimum(torch.maximum(y, lo), hi)
    y = torch.where(flip, -y, y)
    u = y.to(mu.dtype)
    centre = (level.double() - mu.double()) / sigma.double()
    for step in (2.0**-16, 2.0**-14, 2.0**-12, 2.0**-8, 2.0**-4, 1.0):
        wrong = gray_assign(mu, sigma, u) != level
        if not wrong.any():
            break
        u = torch.where(wrong, torch.lerp(y, centre, step).to(mu.dtype), u)
    return u


class PixelScale(nn.Module):
    """A learned sigma in gray levels: sigma = floor + exp(log_excess), a scalar shared by every pixel.

    In log space Adam moves sigma by a steady fraction per step, from a first guess of tens of
    levels down to the rendering noise; ``floor`` keeps it above the rounding step's scale.
    """

    def __init__(self, init: float, floor: float):
        super().__init__()
        if not init > floor > 0:
            raise ValueError(f"PixelScale needs init > floor > 0, got init={init}, floor={floor}")
        self.floor = float(floor)
        self.log_excess = nn.Parameter(torch.tensor(math.log(init - floor)))

    def forward(self) -> torch.Tensor:
        return self.floor + self.log_excess.exp()

    def extra_repr(self) -> str:
        return f"floor={self.floor}"
