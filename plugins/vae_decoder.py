"""An image node drawn by a VAE decoder from its label parents and a latent z.

Generative process (the structural assignment of the image node)::

    U_z   ~ N(0, I)                   latent_dim        (site U_<node>_z)
    U_pix ~ Uniform(0, 1)             per pixel, H x W  (site U_<node>_pix)
    p     = sigmoid(decoder(parents, U_z))
    image = 1[U_pix < p]                                deterministic given the noise

and for a gray image (``domain: {image: [64, 64], pixels: gray}``, levels 0..255)::

    U_pix ~ N(0, 1)                   per pixel, H x W
    mu    = 255 sigmoid(decoder(parents, U_z))          in gray levels
    image = clamp(round(mu + sigma U_pix), 0, 255)      sigma: one learned scalar, >= sigma_min

Parents are encoded by name: one-hot for a categorical domain, the value for a numeric grid,
(sin, cos) of the value for the parents listed in ``angles``. Abduction draws U_z from the
encoder q(z | image, parents), trained as the Pyro guide, and U_pix from its exact posterior:
Uniform(0, p) where the pixel is on, Uniform(p, 1) where it is off (gray: N(0, 1) truncated
to the level's bin, ``plugins.gray_image``), so a null intervention gives back the observed
image bit for bit. For a single counterfactual a binary U_pix need not be drawn at all
(``abduct_lazily``): with p' the new map, a pixel keeps its value where p' is on its side of p
and is a coin elsewhere (``plugins.binary_image.pixel_counterfactual``), the same distribution.

Decoders (``decoder:``): ``affine`` (default) draws a canonical, centred sprite on a
``canvas`` x ``canvas`` patch (in image pixels) from the other parents and z with an MLP, then
moves it into the image, whose background is off, by a translation that is a learned linear
map of the two ``translate`` parents. The move is grid_sample's bilinear translation, done as
a sub-pixel interpolation of the patch and a paste (``place``): a quarter of the pixels go
through the network and the sigmoid, the rest is background (gray: level 0). ``mlp`` draws
the whole image from all parents and z; ``conv`` upsamples with transposed convolutions (for
GPUs). Both suit gray scenes; ``affine`` suits a sprite on a black background.

``geometric`` applies the geometry it is told instead of learning to draw it: an MLP draws a
template from the parents that are neither moved, turned nor scaled (and z), on a grid
``oversample`` times finer than the canvas; the template is turned by the ``rotate`` parent
(an angle, counter-clockwise as displayed) and scaled by the ``scale`` parent (a factor; 1
is the template's own size, which spans the canvas) with ``affine_grid``/``grid_sample``,
sampled at the canvas's pixel centres, and moved as ``affine`` moves it, the sub-pixel part
of the move folded into the same sample (``turn``), so that the edges stay as sharp as the
template's. A rare turn of a shape then costs nothing the common ones did not teach.

A turn no node holds (a hidden factor) can be a latent of the geometric decoder itself:
``turns: K`` adds a noise site ``U_<node>_turn`` ~ Uniform{0, ..., K-1} whose value k turns
the template by 2 pi k / K more (on top of any ``rotate`` parent). It is never sampled while
training or abducting: the likelihood sums it out exactly, log p(image | parents, z) =
log mean_k p(image | parents, z, k), and abduction draws it from its exact posterior
p(k | image, parents, z), proportional to p(image | parents, z, k) (``turn_posterior``). The
posterior holds every turn the image cannot tell apart (a square's four quarter turns), so
a counterfactual draws one of them and turns the new template to it, instead of averaging
them into a blur. Each of the K likelihoods is computed on the canvas patch only (the rest
of the image is background whatever the turn), from one template per unit.

YAML::

    img:
      mechanism: vae_decoder
      parents: [shape, scale, orientation, x, y]
      domain: {image: [64, 64]}
      params:
        angles: [orientation]      # encoded as (sin, cos)
        translate: [x, y]          # horizontal, then vertical (affine decoder)
        decoder: affine            # or geometric, with:
        # rotate: [orientation]    # geometric: the angle parent that turns the template
        # scale: [scale]           # geometric: the factor parent that sizes it
        # oversample: 2            # geometric: template pixels per canvas pixel, each way
        # turns: 39                # geometric: a latent turn on a grid of 39 angles, enumerated
        latent_dim: 8
        hidden: [256, 512]
        canvas: 32
        # gray images only:
        sigma: 16.0                # first guess of the pixel noise, in gray levels (then learned)
        sigma_min: 0.5             # the learned sigma stays above this
"""

from __future__ import annotations

import math
from typing import NamedTuple

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from torch import nn

from plugins.binary_image import BinaryImage, below_one, pixel_counterfactual, pixel_noise
from plugins.gray_image import GrayImage, PixelScale, gray_assign, gray_noise
from engine.limits import MAX_WIDTH
from engine.model.mechanism import Mechanism
from engine.model.registry import register_mechanism

DECODERS = ("affine", "geometric", "mlp", "conv")
MAX_TURNS = 360  # the most latent turns a geometric decoder enumerates (each costs a patch per unit)
PLACED = ("affine", "geometric")  # decoders that draw a patch and move it
DEFAULTS = {
    "decoder": "affine",  # affine | geometric | mlp | conv
    "latent_dim": 8,  # size of z (0: none)
    "hidden": [256, 512],  # decoder MLP widths
    "canvas": 32,  # affine, geometric: side of the canonical sprite patch, in image pixels
    "translate": [],  # affine, geometric: [horizontal, vertical] parents that move the sprite
    "rotate": [],  # geometric: [angle] parent that turns the template (radians, or the domain's unit)
    "scale": [],  # geometric: [factor] parent that sizes the template (1: it spans the canvas)
    "oversample": 2,  # geometric: the template's side is oversample x canvas
    "turns": 0,  # geometric: K > 0 adds a latent turn on a grid of K angles 2 pi / K apart, enumerated exactly
    "angles": [],  # parents encoded as (sin, cos) of their value
    "channels": 64,  # conv: channels of the first feature map
    "encoder_hidden": 256,  # width of the encoder MLP
    "pool": 4,  # the encoder average-pools the image by this factor first
    "logit_bound": 25.0,  # logits = b * tanh(raw / b): how sure a pixel may get
    "kl_weight": 4.0,  # weight of KL(q(z) || p(z)) while training (beta-VAE): keeps z from carrying the labels; reports use the true ELBO
}
GRAY_DEFAULTS = {  # gray images only (pixels: gray)
    "sigma": 16.0,  # the pixel noise's first value, in gray levels; learned from there
    "sigma_min": 0.5,  # the learned sigma's lower bound, in gray levels
}
GRAY_ABDUCTION = "amortised: U_z from the encoder q(z | image, parents); U_pix exact, N(0, 1) truncated to each gray level's bin"


def _bounds(domain) -> tuple[float, float] | None:
    """The smallest and largest value of a grid or bounded real domain, else None."""
    if domain.kind == "grid":
        return domain.values[0], domain.values[-1]
    if domain.kind == "real" and math.isfinite(domain.low) and math.isfinite(domain.high):
        return domain.low, domain.high
    return None


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Sprite(NamedTuple):
    """A patch of values placed in an image that is ``background`` everywhere else."""

    values: torch.Tensor  # (N, C*C) the patch, already moved by its sub-pixel offset
    index: torch.Tensor  # (N, C*C) where each value goes in the flattened (N, H*W) image
    background: float
    shape: tuple[int, int]  # (H, W)

    def squash(self, fn) -> "Sprite":
        """The sprite of ``fn(image)`` for an elementwise ``fn``, computed on the patch only."""
        return self._replace(values=fn(self.values), background=float(fn(torch.tensor(self.background, dtype=self.values.dtype))))

    def image(self) -> torch.Tensor:
        """The (N, H, W) image."""
        n = len(self.values)
        out = torch.full((n, self.shape[0] * self.shape[1]), self.background, device=self.values.device, dtype=self.values.dtype)
        return out.scatter_(1, self.index, self.values).view(n, *self.shape)


class PixelPosterior(NamedTuple):
    """U_pix given the observed image, not drawn: Uniform(0, p) where a pixel is on, Uniform(p, 1) where off.

    ``abduct_lazily`` returns it for one prediction; ``assign`` then draws the new image
    directly, a coin only where the new map leaves a pixel undecided (``pixel_counterfactual``).
    """

    image: torch.Tensor  # (N, H, W) the observed 0/1 image
    p: "torch.Tensor | Sprite"  # its probability map, as a whole (N, H, W) image or a placed sprite


@torch.no_grad()  # a draw of 0s and 1s, written into the factual map's buffer
def sprite_counterfactual(image: torch.Tensor, p: Sprite, q: Sprite) -> torch.Tensor:
    """``pixel_counterfactual(image, p, q)`` for maps given as sprites on one background, computed on the two patches.

    Outside both patches p = q and every pixel keeps its value, an on pixel there too. The
    factual patch is drawn with q at its background, then the counterfactual patch over it with
    p read off the factual map, so that where the two overlap the second, right, one stays.
    """
    n = len(image)
    flat = image.reshape(n, -1)
    whole = p.image().view(n, -1)
    p_there = whole.gather(1, q.index)
    out = whole.copy_(flat)  # the map's buffer, read, becomes the answer
    out.scatter_(1, p.index, pixel_counterfactual(flat.gather(1, p.index), p.values, q.background))
    out.scatter_(1, q.index, pixel_counterfactual(flat.gather(1, q.index), p_there, q.values))
    return out.view_as(image)


def corner(offset: torch.Tensor, side: int, height: int, width: int, *, clamp_rest: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """A C x C patch centred at ``offset`` (normalised image coordinates, x then y): its top-left
    corner split into whole pixels (long) and the sub-pixel rest in [0, 1), clamped inside the image.

    ``clamp_rest`` clamps the corner itself, so a patch at the edge does not move; without it
    (the affine decoder's convention, which its trained models rely on) only the whole pixels
    are clamped and a patch just past the edge still moves by its rest, nearly a pixel.
    """
    size = torch.tensor([width, height], device=offset.device, dtype=offset.dtype)
    at = offset * size / 2 + (size - side) / 2
    if clamp_rest:
        at = torch.minimum(at.clamp(min=0), size - side)
    whole = at.detach().floor()
    return torch.minimum(whole.long().clamp(min=0), size.long() - side), at - whole


def pasted(patch: torch.Tensor, whole: torch.Tensor, height: int, width: int, background: float) -> Sprite:
    """(N, C, C) patches pasted with their top-left corners at ``whole`` pixels (N, 2; x then y)."""
    n, side = patch.shape[0], patch.shape[-1]
    steps = torch.arange(side, device=patch.device)
    rows, cols = whole[:, 1, None] + steps, whole[:, 0, None] + steps
    index = (rows[:, :, None] * width + cols[:, None, :]).view(n, -1)
    return Sprite(patch.reshape(n, -1), index, background, (height, width))


def place(patch: torch.Tensor, offset: torch.Tensor, height: int, width: int, background: float) -> Sprite:
    """Move (N, C, C) patches by (N, 2) offsets into (N, H, W) images filled with ``background``.

    ``offset`` is the patch centre in normalised image coordinates ([-1, 1], x then y). The
    sub-pixel part of the move interpolates the patch bilinearly (as ``grid_sample`` would);
    the whole-pixel part is a paste, about 3x cheaper on a CPU than sampling a grid and
    cheaper still when only the patch is needed. The patch keeps its own size (what it would
    spill past its last row or column is dropped, so its border should hold background) and
    its corner is clamped inside the image.
    """
    whole, rest = corner(offset, patch.shape[-1], height, width)
    fx, fy = rest.unbind(1)
    down = F.pad(patch[:, :-1, :], (0, 0, 1, 0), value=background)
    patch = torch.lerp(patch, down, fy[:, None, None])
    right = F.pad(patch[:, :, :-1], (1, 0), value=background)
    patch = torch.lerp(patch, right, fx[:, None, None])
    return pasted(patch, whole, height, width, background)


def turn(template: torch.Tensor, angle: torch.Tensor, factor: torch.Tensor, shift: torch.Tensor, side: int, background: float) -> torch.Tensor:
    """(N, T, T) templates turned, scaled and shifted, sampled on a (N, side, side) patch of the same extent.

    With u a patch pixel centre in normalised coordinates (x right, y down) and R(a) the
    rotation counter-clockwise as displayed, the patch at u is the template at
    R(-angle) (u - shift) / factor, bilinearly interpolated, ``background`` outside it. With
    side = T, angle = 90 degrees is ``torch.rot90`` and (0, 1, 0) the identity. An (N, K)
    ``angle`` turns each template K ways at once: (N, K, side, side), one sample of the template.
    """
    n, many = len(template), angle.dim() == 2
    angle = angle.view(n, -1).to(template.dtype)
    k = angle.shape[1]
    c, s = angle.cos(), angle.sin()
    a = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2) / factor.to(template.dtype)[:, None, None, None]
    # affine_grid's sample points a (u - shift) at the pixel centres u = (x_j, y_i): a column term plus a row term
    u = (torch.arange(side, device=template.device, dtype=template.dtype) * 2 + 1) / side - 1
    at = (a @ shift.to(template.dtype)[:, None, :, None])[..., 0]  # (N, K, 2)
    columns = a[..., None, None, :, 0] * u[:, None]  # (N, K, 1, side, 2): a[:, 0] x_j
    rows = a[..., None, None, :, 1] * u[:, None, None] - at[..., None, None, :]  # (N, K, side, 1, 2): a[:, 1] y_i - a shift
    grid = (columns + rows).view(n, k * side, side, 2)
    out = F.grid_sample((template - background)[:, None], grid, align_corners=False)[:, 0] + background
    return out.view(n, k, side, side) if many else out


def paste(patch: torch.Tensor, offset: torch.Tensor, height: int, width: int, background: float) -> torch.Tensor:
    """``place`` as a whole image: grid_sample's translation with a background border."""
    return place(patch, offset, height, width, background).image()


def probability(logits: torch.Tensor) -> torch.Tensor:
    """sigmoid(logits), kept strictly inside (0, 1) in the tensor's precision.

    Both ends matter for exact abduction: an on pixel needs room below p, an off pixel room
    above it, and sigmoid rounds to exactly 1 in float32 from a logit of about 16.6.
    """
    return torch.sigmoid(logits).clamp_(min=torch.finfo(logits.dtype).tiny, max=below_one(logits.dtype))


def gray_levels(logits: torch.Tensor) -> torch.Tensor:
    """mu = 255 sigmoid(logits): the gray level each pixel is drawn around."""
    return 255 * torch.sigmoid(logits)


@register_mechanism("vae_decoder")
class VaeDecoder(Mechanism, nn.Module):
    """p(image | parents, z) = Bernoulli(decoder(parents, z)) (gray: GrayImage), with an encoder q(z | image, parents)."""

    learnable = True
    abduction = "amortised: U_z from the encoder q(z | image, parents); U_pix exact, Uniform(0, p) or Uniform(p, 1)"

    def __init__(self, node, parents, *, path="<dag>"):
        nn.Module.__init__(self)
        Mechanism.__init__(self, node, parents, path=path)
        self.check_params(set(DEFAULTS) | set(GRAY_DEFAULTS))
        if not self.domain.is_image:
            raise self.error("vae_decoder needs an image domain, e.g. {image: [64, 64]}")
        self.gray = self.domain.pixels == "gray"
        defaults = {**DEFAULTS, **GRAY_DEFAULTS} if self.gray else DEFAULTS
        self.config = self._validate({k: self.param(k, v) for k, v in defaults.items()})
        c = self.config
        if self.gray:
            self.scale = PixelScale(float(c["sigma"]), float(c["sigma_min"]))
            self.abduction = GRAY_ABDUCTION
        self.height, self.width = self.domain.shape
        self.latent_dim = c["latent_dim"]
        self.translate = tuple(c["translate"])
        self.angles = tuple(c["angles"])
        self.placed = c["decoder"] in PLACED
        self.rotated, self.sized = tuple(c["rotate"]), tuple(c["scale"])
        self.turns = c["turns"]
        for p, domain in parents.items():  # value tables for grid parents, moved by .to()
            if domain.kind == "grid":
                self.register_buffer(f"values_{p}", torch.tensor(domain.values, dtype=torch.float32))
        moved = set(self.translate) | set(self.rotated) | set(self.sized) if self.placed else set()
        self.drawn = tuple(p for p in parents if p not in moved)
        width = self.encoded_size(self.drawn)
        if self.placed:
            side = c["canvas"] * (c["oversample"] if c["decoder"] == "geometric" else 1)
            self.decoder = mlp([width + self.latent_dim, *c["hidden"], side * side])
            # offset (normalised image coordinates) = A @ values + b; starts at (v - mid) / range
            lo = torch.tensor([_bounds(parents[p])[0] for p in self.translate])
            hi = torch.tensor([_bounds(parents[p])[1] for p in self.translate])
            self.shift = nn.Linear(2, 2)
            with torch.no_grad():
                self.shift.weight.copy_(torch.diag(1 / (hi - lo)))
                self.shift.bias.copy_(-(lo + hi) / 2 / (hi - lo))
        elif c["decoder"] == "mlp":
            self.decoder = mlp([width + self.latent_dim, *c["hidden"], self.height * self.width])
        else:
            ch, h8, w8 = c["channels"], self.height // 8, self.width // 8
            self.decoder = nn.Sequential(
                nn.Linear(width + self.latent_dim, ch * h8 * w8), nn.ReLU(), nn.Unflatten(1, (ch, h8, w8)),
                nn.ConvTranspose2d(ch, ch, 4, 2, 1), nn.ReLU(),
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1), nn.ReLU(),
                nn.ConvTranspose2d(ch // 2, 1, 4, 2, 1), nn.Flatten(1),
            )
        pooled = (self.height // c["pool"]) * (self.width // c["pool"])
        # without z (latent_dim 0) there is nothing to encode
        self.encoder = mlp([pooled + self.encoded_size(parents), c["encoder_hidden"], c["encoder_hidden"], 2 * self.latent_dim]) if self.latent_dim else None

    def _validate(self, c: dict) -> dict:
        """Check each parameter's type and range; errors name the node and the valid choices."""
        if c["decoder"] not in DECODERS:
            raise self.error(f"decoder must be one of {', '.join(DECODERS)}, got {c['decoder']!r}")
        for key in ("latent_dim", "canvas", "channels", "encoder_hidden", "pool", "oversample"):
            low = 0 if key == "latent_dim" else 1  # no z: the image is drawn from its parents (and a latent turn) alone
            if isinstance(c[key], bool) or not isinstance(c[key], int) or not low <= c[key] <= MAX_WIDTH:
                raise self.error(f"{key} must be a whole number from {low} to {MAX_WIDTH:,}, got {c[key]!r}")
        hidden = c["hidden"]
        if isinstance(hidden, int) and not isinstance(hidden, bool):
            c["hidden"] = hidden = [hidden]
        if not isinstance(hidden, list) or not 1 <= len(hidden) <= 16 or not all(isinstance(h, int) and not isinstance(h, bool) and 0 < h <= MAX_WIDTH for h in hidden):
            raise self.error(f"hidden must be a list of 1 to 16 layer widths from 1 to {MAX_WIDTH:,}, e.g. [256, 512], got {hidden!r}")
        for key in ("logit_bound", "kl_weight"):
            if isinstance(c[key], bool) or not isinstance(c[key], (int, float)) or c[key] <= 0:
                raise self.error(f"{key} must be a positive number, got {c[key]!r}")
        for key in ("angles", "translate", "rotate", "scale"):
            names = c[key]
            if not isinstance(names, list) or not all(isinstance(p, str) for p in names):
                raise self.error(f"{key} must be a list of parent names, got {names!r}")
            for p in names:
                if p not in self.parents:
                    raise self.error(f"{key}: '{p}' is not a parent; parents are {', '.join(self.parents)}")
                if not self.parents[p].is_numeric:
                    raise self.error(f"{key}: '{p}' must have a numeric domain, not {self.parents[p].describe()}")
                if key == "translate" and _bounds(self.parents[p]) is None:
                    raise self.error(f"translate: '{p}' needs bounds to move the sprite by (a grid, or real: [low, high])")
                if key == "scale" and not (_bounds(self.parents[p]) or (0, 0))[0] > 0:
                    raise self.error(f"scale: '{p}' must be a positive factor: a grid or real: [low, high] with low > 0")
            if key in ("rotate", "scale") and len(names) > 1:
                raise self.error(f"{key} takes one parent, got {names!r}")
        placed = c["decoder"] in PLACED
        if placed and len(c["translate"]) != 2:
            raise self.error(f"the {c['decoder']} decoder needs translate: [horizontal, vertical], two numeric parents that move the sprite")
        if placed and c["canvas"] > min(self.domain.shape):
            raise self.error(f"canvas ({c['canvas']}) must fit in the {self.domain.describe()}")
        if not placed and c["translate"]:
            raise self.error(f"translate is a parameter of the affine and geometric decoders only (decoder is {c['decoder']!r})")
        if c["decoder"] != "geometric" and (c["rotate"] or c["scale"]):
            raise self.error(f"rotate and scale are parameters of the geometric decoder only (decoder is {c['decoder']!r})")
        if isinstance(c["turns"], bool) or not isinstance(c["turns"], int) or not 0 <= c["turns"] <= MAX_TURNS:
            raise self.error(f"turns must be a whole number from 0 (no latent turn) to {MAX_TURNS}, got {c['turns']!r}")
        if c["turns"] and c["decoder"] != "geometric":
            raise self.error(f"turns is a parameter of the geometric decoder only (decoder is {c['decoder']!r})")
        if set(c["translate"]) & set(c["rotate"] + c["scale"]) or set(c["rotate"]) & set(c["scale"]):
            raise self.error("translate, rotate and scale must name different parents")
        if c["decoder"] == "conv" and (self.domain.shape[0] % 8 or self.domain.shape[1] % 8):
            raise self.error(f"the conv decoder needs image sides divisible by 8, got {self.domain.describe()}")
        if self.domain.shape[0] % c["pool"] or self.domain.shape[1] % c["pool"]:
            raise self.error(f"pool must divide the image sides {self.domain.shape}, got {c['pool']}")
        if not self.gray:
            given = sorted(set(GRAY_DEFAULTS) & set(self.node.params))
            if given:
                raise self.error(f"{', '.join(given)}: parameters of gray images only (domain: {{image: [H, W], pixels: gray}}); "
                                 f"this node is a {self.domain.describe()}")
            return c
        for key in GRAY_DEFAULTS:
            if isinstance(c[key], bool) or not isinstance(c[key], (int, float)) or not 0 < c[key] < math.inf:
                raise self.error(f"{key} must be a positive number of gray levels, got {c[key]!r}")
        if c["sigma"] <= c["sigma_min"]:
            raise self.error(f"sigma ({c['sigma']:g}) must be above sigma_min ({c['sigma_min']:g}), the bound the learned sigma keeps")
        return c

    # ---- parents ----------------------------------------------------------------------------

    def encoded_size(self, names) -> int:
        """Width of the encoding of the parents ``names``."""
        return sum(2 if p in self.angles else self.parents[p].size if self.parents[p].kind == "names" else 1 for p in names)

    def value(self, name: str, encoded: torch.Tensor) -> torch.Tensor:
        """The numeric value of a parent (float32): a grid's value by class index, a real node's itself."""
        if self.parents[name].kind == "grid":
            return getattr(self, f"values_{name}")[encoded]
        return encoded.float()

    def encode(self, parents: dict[str, torch.Tensor], names, n: int) -> torch.Tensor:
        """One-hot (names), value (numbers) or (sin, cos) in radians (angles) per parent, concatenated: (n, width)."""
        parts = [torch.zeros(n, 0, device=self._device())]
        for p in names:
            domain, encoded = self.parents[p], parents[p]
            if domain.kind == "names":
                parts.append(F.one_hot(encoded, domain.size).float())
            elif p in self.angles:
                v = self.value(p, encoded) * (math.pi / 180 if domain.unit == "deg" else 1.0)
                parts.append(torch.stack([v.sin(), v.cos()], 1))
            else:
                parts.append(self.value(p, encoded)[:, None])
        return torch.cat(parts, 1)

    # ---- networks ---------------------------------------------------------------------------

    def sprite(self, parents: dict[str, torch.Tensor], z: torch.Tensor, latent_turn: torch.Tensor | None = None) -> Sprite:
        """The affine or geometric decoder's logits as a moved patch on a background of -logit_bound.

        ``latent_turn``: the latent turn's index per unit (``turns`` > 0; None is turn 0).
        """
        bound = float(self.config["logit_bound"])
        side = self.config["canvas"]
        if self.config["decoder"] == "affine":
            raw = self.decoder(torch.cat([self.encode(parents, self.drawn, len(z)), z], 1))
            offset = self.shift(torch.stack([self.value(p, parents[p]) for p in self.translate], 1))
            return place((bound * torch.tanh(raw / bound)).view(-1, side, side), offset, self.height, self.width, -bound)
        template, whole, rest = self.template(parents, z)
        patch = turn(template, self.angle(parents, len(z), latent_turn), self.factor(parents, len(z)), rest * (2 / side), side, -bound)
        return pasted(patch, whole, self.height, self.width, -bound)

    def template(self, parents: dict[str, torch.Tensor], z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The geometric decoder's (N, T, T) template logits, and its patch's corner: whole pixels and the rest."""
        bound, fine = float(self.config["logit_bound"]), self.config["canvas"] * self.config["oversample"]
        raw = self.decoder(torch.cat([self.encode(parents, self.drawn, len(z)), z], 1))
        offset = self.shift(torch.stack([self.value(p, parents[p]) for p in self.translate], 1))
        whole, rest = corner(offset, self.config["canvas"], self.height, self.width, clamp_rest=True)
        return (bound * torch.tanh(raw / bound)).view(-1, fine, fine), whole, rest

    def angle(self, parents: dict[str, torch.Tensor], n: int, latent_turn: torch.Tensor | None = None) -> torch.Tensor:
        """The geometric decoder's turn in radians, per unit: the rotate parent's (else 0), plus the latent turn's."""
        angle = torch.zeros(n, device=self._device())
        if self.rotated:
            p = self.rotated[0]
            angle = self.value(p, parents[p]) * (math.pi / 180 if self.parents[p].unit == "deg" else 1.0)
        return angle if latent_turn is None else angle + latent_turn * (2 * math.pi / self.turns)

    def turn_log_likelihood(self, image: torch.Tensor, parents: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """log p(image | parents, z, k) for every latent turn k: (N, K).

        The K turned patches come from one template; outside the patch every turn gives the
        background, so the rest of the image adds one term, the same for every k.
        """
        bound, side, n = float(self.config["logit_bound"]), self.config["canvas"], len(z)
        template, whole, rest = self.template(parents, z)
        angles = self.angle(parents, n)[:, None] + torch.arange(self.turns, device=z.device) * (2 * math.pi / self.turns)
        patches = turn(template, angles, self.factor(parents, n), rest * (2 / side), side, -bound)
        index = pasted(patches[:, 0], whole, self.height, self.width, -bound).index
        seen = image.reshape(n, -1).gather(1, index).view(n, 1, side, side).to(patches.dtype)
        background = patches.new_full((), -bound)
        inside = self.pixels(patches).log_prob(seen) - self.pixels(background.expand_as(seen)).log_prob(seen)
        return inside + self.pixels(background.expand(image.shape)).log_prob(image.to(patches.dtype))[:, None]

    def turn_posterior(self, image: torch.Tensor, parents: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """The exact posterior of the latent turn, p(k | image, parents, z): (N, K), rows summing to 1."""
        return torch.softmax(self.turn_log_likelihood(image, parents, z), 1)

    def pixels(self, logits: torch.Tensor):
        """The pixel likelihood of a map of logits: BinaryImage, or GrayImage around 255 sigmoid(logits)."""
        return GrayImage(gray_levels(logits), self.scale(), validate_args=False) if self.gray else BinaryImage(logits, validate_args=False)

    def factor(self, parents: dict[str, torch.Tensor], n: int) -> torch.Tensor:
        """The geometric decoder's size factor, per unit (1 without a scale parent)."""
        return self.value(self.sized[0], parents[self.sized[0]]) if self.sized else torch.ones(n, device=self._device())

    def logits(self, parents: dict[str, torch.Tensor], z: torch.Tensor, latent_turn: torch.Tensor | None = None) -> torch.Tensor:
        """Bernoulli logits of every pixel, shape (N, H, W), bounded by +-logit_bound."""
        if self.placed:
            return self.sprite(parents, z, latent_turn).image()
        bound = float(self.config["logit_bound"])
        raw = self.decoder(torch.cat([self.encode(parents, self.drawn, len(z)), z], 1))
        return (bound * torch.tanh(raw / bound)).view(-1, self.height, self.width)

    def loc(self, parents: dict[str, torch.Tensor], z: torch.Tensor, latent_turn: torch.Tensor | None = None) -> torch.Tensor:
        """Gray images: mu, the gray level every pixel is drawn around, shape (N, H, W), in [0, 255]."""
        if self.placed:
            return self.sprite(parents, z, latent_turn).squash(gray_levels).image()
        return gray_levels(self.logits(parents, z))

    def probs(self, parents: dict[str, torch.Tensor], z: torch.Tensor, latent_turn: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's probability map p(pixel = 1 | parents, z), shape (N, H, W), strictly in (0, 1); gray: mu / 255."""
        if self.gray:
            return self.loc(parents, z, latent_turn) / 255
        if self.placed:
            return self.sprite(parents, z, latent_turn).squash(probability).image()  # the sigmoid on the patch only
        return probability(self.logits(parents, z))

    def reconstruct(self, image: torch.Tensor, parents: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the model makes of ``image``: the map at the encoder's mean z and the most likely
        latent turn, with the latent turn's posterior there (None without ``turns``)."""
        z = self.posterior(image, parents)[0]
        if not self.turns:
            return self.probs(parents, z), None
        p = self.turn_posterior(image, parents, z)
        return self.probs(parents, z, p.argmax(1)), p

    def abduct_turn(self, image: torch.Tensor, parents: dict[str, torch.Tensor], z: torch.Tensor, *, likeliest: bool = False) -> torch.Tensor | None:
        """A draw of the latent turn from its exact posterior (its mode if ``likeliest``); None without ``turns``."""
        if not self.turns:
            return None
        log_p = self.turn_log_likelihood(image, parents, z)
        return log_p.argmax(1) if likeliest else torch.distributions.Categorical(logits=log_p).sample()

    def posterior(self, image: torch.Tensor, parents: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's q(z | image, parents) = N(z_loc, z_scale); (N, 0) tensors without z."""
        if not self.latent_dim:
            empty = image.new_zeros(len(image), 0, dtype=torch.float32)
            return empty, empty + 1
        pixels = image[:, None].float() / 255 if self.gray else image[:, None].float()
        pooled = F.avg_pool2d(pixels, self.config["pool"]).flatten(1)
        out = self.encoder(torch.cat([pooled, self.encode(parents, self.parents, len(image))], 1))
        z_loc, raw_scale = out.chunk(2, dim=1)
        return z_loc, F.softplus(raw_scale) + 1e-4

    # ---- Pyro model and guide (trained with SVI) --------------------------------------------

    def model(self, image: torch.Tensor, parents: dict[str, torch.Tensor]) -> None:
        """p(z) = N(0, I),  p(image | parents, z) = Bernoulli(sigmoid(decoder(parents, z)));  gray: GrayImage(mu, sigma)."""
        pyro.module(f"{self.name}_decoder", self.decoder)
        if self.placed:
            pyro.module(f"{self.name}_shift", self.shift)
        if self.gray:
            pyro.module(f"{self.name}_scale", self.scale)
        n = image.shape[0]
        with pyro.plate(f"{self.name}_batch", n):
            z_loc = image.new_zeros(n, self.latent_dim)
            with poutine.scale(scale=self._kl_scale()):
                z = pyro.sample(f"{self.site}_z", dist.Normal(z_loc, torch.ones_like(z_loc)).to_event(1))
            if self.turns:  # the latent turn summed out: log mean_k p(image | parents, z, k)
                pyro.factor(self.name, self.turn_log_likelihood(image, parents, z).logsumexp(1) - math.log(self.turns))
            else:
                likelihood = GrayImage(self.loc(parents, z), self.scale()) if self.gray else BinaryImage(self.logits(parents, z))
                pyro.sample(self.name, likelihood, obs=image)

    def guide(self, image: torch.Tensor, parents: dict[str, torch.Tensor]) -> None:
        """q(z | image, parents) = N(encoder(image, parents))."""
        if self.encoder is not None:
            pyro.module(f"{self.name}_encoder", self.encoder)
        with pyro.plate(f"{self.name}_batch", image.shape[0]):
            z_loc, z_scale = self.posterior(image, parents)
            with poutine.scale(scale=self._kl_scale()):
                pyro.sample(f"{self.site}_z", dist.Normal(z_loc, z_scale).to_event(1))

    def _kl_scale(self) -> float:
        """The KL weight while training; 1 (the true ELBO) otherwise."""
        return float(self.config["kl_weight"]) if self.training else 1.0

    # ---- the mechanism contract -------------------------------------------------------------

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def noise(self, n):
        # scalars expanded, not materialised: a query that conditions these sites never pays for n images of zeros
        zero = torch.zeros((), device=self._device())
        pixel = dist.Normal(zero, zero + 1) if self.gray else dist.Uniform(zero, zero + 1)
        noise = {
            f"{self.site}_z": dist.Normal(zero, zero + 1).expand([n, self.latent_dim]).to_event(1),
            f"{self.site}_pix": pixel.expand([n, self.height, self.width]).to_event(2),
        }
        if self.turns:
            noise[f"{self.site}_turn"] = dist.Categorical(logits=zero.expand(self.turns)).expand([n])
        return noise

    def latents(self, noise) -> tuple[torch.Tensor, torch.Tensor | None]:
        """U_z and the latent turn (None without ``turns``) from a noise dict."""
        return noise[f"{self.site}_z"], noise.get(f"{self.site}_turn")

    def latent_noise(self, z: torch.Tensor, turn: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The noise dict of U_z and the latent turn (when there is one): ``latents``' inverse."""
        return {f"{self.site}_z": z} | ({} if turn is None else {f"{self.site}_turn": turn})

    def assign(self, parents, noise):
        u, (z, t) = noise[f"{self.site}_pix"], self.latents(noise)
        if self.gray:
            return gray_assign(self.loc(parents, z, t), self.scale(), u)
        if isinstance(u, PixelPosterior):
            if not self.placed:
                return pixel_counterfactual(u.image, u.p, self.probs(parents, z))
            return sprite_counterfactual(u.image, u.p, self.sprite(parents, z, t).squash(probability))
        if not self.placed:
            return (u < self.probs(parents, z)).float()
        # the same comparison, 1[u < p], with p read off the sprite: the background in one pass
        p = self.sprite(parents, z, t).squash(probability)
        image = torch.lt(u, p.background, out=torch.empty_like(u))  # written as floats: one pass
        inside = u.reshape(len(u), -1).gather(1, p.index)
        image.view(len(u), -1).scatter_(1, p.index, torch.lt(inside, p.values, out=torch.empty_like(inside)))
        return image

    def mean(self, parents, noise):
        """The probability map given the parents and the noise (U_z and the latent turn matter); gray: mu / 255."""
        return self.probs(parents, *self.latents(noise))

    def abduct(self, value, parents, *, deterministic: bool = False):
        """U_z from q(z | value, parents) (its mean if ``deterministic``); the latent turn and U_pix exactly.

        The latent turn (``turns``) is drawn from p(k | value, parents, z) (its mode if
        ``deterministic``). Given p = p(pixel on | parents, z, k), U_pix is Uniform(0, p) where
        the pixel is on and Uniform(p, 1) where it is off, so that 1[U_pix < p] gives the value
        back. Gray: N(0, 1) truncated to the bin of the pixel's level, so that
        clamp(round(mu + sigma U_pix)) does.
        """
        z_loc, z_scale = self.posterior(value, parents)
        z = z_loc if deterministic else z_loc + z_scale * torch.randn_like(z_loc)
        t = self.abduct_turn(value, parents, z, likeliest=deterministic)
        latent = self.latent_noise(z, t)
        site = f"{self.site}_pix"
        if self.gray:
            return latent | {site: gray_noise(value, self.loc(parents, z, t), self.scale())}
        if not self.placed:
            return latent | {site: pixel_noise(value, self.probs(parents, z))}
        p = self.sprite(parents, z, t).squash(probability)
        n = len(value)
        # off pixels outside the patch: Uniform(p_bg, 1), drawn in one pass over the image
        u = p.values.new_empty(value.shape).uniform_(p.background, below_one(p.values.dtype))  # rounding may reach the top: still < 1
        flat = value.reshape(n, -1)
        inside = flat.gather(1, p.index)
        u.view(n, -1).scatter_(1, p.index, pixel_noise(inside, p.values))
        stray = flat.sum(1) != inside.sum(1)  # on pixels outside the patch (not drawn by this model)
        if stray.any():
            rows = stray.nonzero().squeeze(1)
            whole = Sprite(p.values[rows], p.index[rows], p.background, p.shape).image()
            u[rows] = pixel_noise(value[rows], whole)
        return latent | {site: u}

    def abduct_lazily(self, value, parents):
        """``abduct`` for one prediction: U_z and the latent turn drawn, U_pix left as its ``PixelPosterior`` (gray: drawn).

        ``assign`` draws the new image from it with a coin only where a pixel is undecided, so
        the noise is never drawn whole; two predictions fed the same posterior draw
        independently, so the worlds of one unit must share ``abduct``'s noise instead.
        """
        if self.gray:
            return self.abduct(value, parents)
        z_loc, z_scale = self.posterior(value, parents)
        z = z_loc + z_scale * torch.randn_like(z_loc)
        t = self.abduct_turn(value, parents, z)
        p = self.sprite(parents, z, t).squash(probability) if self.placed else self.probs(parents, z)
        latent = self.latent_noise(z, t)
        return latent | {f"{self.site}_pix": PixelPosterior(value, p)}

    def to(self, *args, **kwargs):
        return nn.Module.to(self, *args, **kwargs)
