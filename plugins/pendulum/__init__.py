"""The CausalVAE pendulum world (Yang et al., CVPR 2021), as a plugin: a world and its physics.

Four real-valued factors: the pendulum's angle ``pendulum`` and the light's angle ``light``
(degrees, independent roots), and the shadow the pendulum casts on the ground, its centre
``shadow_x`` and length ``shadow_len`` (scene units), the projection of both angles
(``render.shadow``) plus a little Gaussian noise. Images are 64x64 grayscale, drawn by
``render.render`` from all four, which is the truth of any label tuple (a counterfactual
shadow included).

Unit ``i`` (``pendulum[i]``) is unit i of one draw of ``N_UNITS`` from the DAG's declared
SCM with seed ``SEED``: the same on every machine. The physics is the mechanism
``pendulum_shadow``::

    shadow_x:
      mechanism: pendulum_shadow
      parents: [pendulum, light]
      domain: {real: [1.5, 21]}
      params: {output: x, sigma: 0.1}      # value = shadow(pendulum, light)[output] + sigma U,  U ~ N(0, 1)

Abduction is exact: U = (value - shadow(pendulum, light)) / sigma.
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from engine.errors import DagError
from engine.model.mechanism import Mechanism
from engine.model.registry import register_mechanism
from engine.model.yamlfile import number
from engine.worlds.world import Units, World, register_world
from plugins.pendulum import render

FACTORS = ("pendulum", "light", "shadow_x", "shadow_len")
N_UNITS = 30_000
SEED = 0


@register_world("pendulum")
class Pendulum(World):
    """A pendulum, a light and a shadow; units drawn from the DAG and rendered."""

    has_renderer = True

    def __init__(self, dag, options=None):
        super().__init__(dag, options)
        if options is not None:
            raise self.error(f"takes no options, got {options!r}")
        missing = [f for f in FACTORS if f not in dag.labels]
        extra = [n for n in dag.labels if n not in FACTORS]
        if missing or extra:
            raise self.error(f"label nodes must be {', '.join(FACTORS)}; missing {missing or 'none'}, unknown {extra or 'none'}")
        for name in FACTORS:
            if dag.nodes[name].domain.kind != "real":
                raise DagError(f"{dag.where(name)}: a pendulum factor needs a real domain, e.g. {{real: [-40, 44], unit: deg}}")
        self._labels = None

    def __len__(self) -> int:
        return N_UNITS

    def _all(self) -> dict[str, np.ndarray]:
        """Every unit's labels: one seeded draw from the DAG's declared SCM (computed once)."""
        if self._labels is None:
            from engine.model.scm import build_scm

            scm = build_scm(self.dag, self.dag.labels, world=True)
            with pyro.get_param_store().scope(), torch.no_grad():
                state = torch.random.get_rng_state()
                pyro.set_rng_seed(SEED)
                drawn = scm(N_UNITS)
                torch.random.set_rng_state(state)
            self._labels = {k: drawn[k].cpu().numpy().astype(np.float64) for k in FACTORS}
        return self._labels

    def units(self, index) -> Units:
        index = np.asarray(index, dtype=np.int64)
        return Units(index, {k: v[index] for k, v in self._all().items()})

    def images(self, units: Units) -> np.ndarray:
        return render.render(*(units.labels[k] for k in FACTORS))

    def render(self, labels, like: Units) -> np.ndarray:
        values = {k: like.labels[k] for k in FACTORS} | {k: np.asarray(v) for k, v in labels.items() if k in FACTORS}
        return render.render(*(values[k] for k in FACTORS))

    def fidelity(self, images, truth) -> dict[str, float]:
        """PSNR and MAE on 0..255, and the IoU of the pendulum's and the shadow's masks."""
        out = super().fidelity(images, truth)
        mine, true = render.masks(np.rint(images).astype(np.uint8)), render.masks(truth)
        for part in ("pendulum", "shadow"):
            a, b = mine[part].reshape(len(images), -1), true[part].reshape(len(truth), -1)
            union = (a | b).sum(1)
            out[f"{part}_iou"] = float(np.where(union > 0, (a & b).sum(1) / np.maximum(union, 1), 1.0).mean())
        return out


@register_mechanism("pendulum_shadow")
class PendulumShadow(Mechanism):
    """value = shadow(pendulum, light)[output] + sigma U, U ~ N(0, 1); exact abduction."""

    abduction = "exact: U = (value - shadow(pendulum, light)) / sigma"

    def __init__(self, node, parents, *, path="<dag>"):
        super().__init__(node, parents, path=path)
        self.check_params({"output", "sigma"})
        if set(parents) != {"pendulum", "light"}:
            raise self.error(f"pendulum_shadow needs the parents pendulum and light, got {list(parents) or 'none'}")
        if any(d.kind != "real" or d.unit != "deg" for d in parents.values()):
            raise self.error("pendulum_shadow needs real parents in degrees: domain {real: [lo, hi], unit: deg}")
        self.output = self.param("output", required=True)
        if self.output not in ("x", "len"):
            raise self.error(f"output must be x (the shadow's centre) or len (its length), got {self.output!r}")
        self.sigma = number(self.param("sigma", required=True), self.node.where(path))
        if not self.sigma > 0:
            raise self.error(f"sigma must be > 0, got {self.sigma:g}")

    def loc(self, parents) -> torch.Tensor:
        x, length = render.shadow_torch(parents["pendulum"].double(), parents["light"].double())
        return x if self.output == "x" else length

    def noise(self, n):
        zeros = torch.zeros(n, dtype=torch.float64)
        return {self.site: dist.Normal(zeros, torch.ones_like(zeros))}

    def assign(self, parents, noise):
        return self.loc(parents) + self.sigma * noise[self.site]

    def abduct(self, value, parents):
        return {self.site: (value - self.loc(parents)) / self.sigma}

    def log_prob(self, value, parents):
        return dist.Normal(self.loc(parents), self.sigma).log_prob(value)
