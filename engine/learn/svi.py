"""Stochastic variational inference for several models and guides with one torch Adam.

Each step sums the Trace_ELBO losses of the (model, guide) pairs, runs one backward pass
and one Adam step over every parameter the traces touched (found as ``pyro.infer.SVI``
finds them, new ones joining as they appear)::

    svi = SVI({"img": (m.model, m.guide)}, lr=1e-3)
    loss = svi.step({"img": (image, parents)})      # -ELBO of the batch, in nats

This is Pyro's ``Trace_ELBO().differentiable_loss`` driven by a PyTorch optimizer, which Pyro
documents for custom training loops. With the same Adam options it takes the steps
``pyro.infer.SVI`` takes, except that a parameter which got no gradient is left alone rather
than stepped on a zero one. ``pyro.infer.SVI`` keeps one optimizer per parameter tensor,
whose per-tensor Python calls cost several percent of a step of the image decoder.
"""

from __future__ import annotations

import pyro.poutine as poutine
import torch
from pyro.infer import Trace_ELBO

ADAM = {"fused": True}  # Adam's update as one kernel per group of tensors, not five per tensor


class StateMismatch(ValueError):
    """A saved optimizer state belongs to other parameters than the ones being trained."""


class SVI:
    """Adam on the summed negative ELBO of named (model, guide) pairs."""

    def __init__(self, pairs: dict, *, lr: float):
        self.pairs, self.lr = pairs, lr
        self.elbo = Trace_ELBO()
        self.optimizer: torch.optim.Adam | None = None
        self.names: list[str] = []  # param-store names, in the optimizer's order
        self._waiting: dict | None = None  # a saved state, loaded once the parameters are known

    def step(self, args: dict) -> float:
        """One gradient step; ``args[name]`` are the positional arguments of that pair."""
        with poutine.trace(param_only=True) as capture:
            loss = sum(self.elbo.differentiable_loss(model, guide, *args[name]) for name, (model, guide) in self.pairs.items())
        self._track({name: site["value"].unconstrained() for name, site in capture.trace.nodes.items()})
        if self.optimizer is None:  # nothing to learn
            return float(loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def _track(self, params: dict[str, torch.Tensor]) -> None:
        new = {name: p for name, p in params.items() if name not in self.names}
        if not new:
            return
        self.names += new
        if self.optimizer is None:
            self.optimizer = torch.optim.Adam(list(new.values()), lr=self.lr, **ADAM)
        else:
            self.optimizer.add_param_group({"params": list(new.values())})
        if self._waiting is not None:
            saved, self._waiting = self._waiting, None
            if saved["names"] != self.names:
                raise StateMismatch(f"its optimizer state is for parameters {', '.join(saved['names'])}, not {', '.join(self.names)}")
            self.optimizer.load_state_dict(saved["adam"])

    def set_lr(self, lr: float) -> None:
        """Use learning rate ``lr`` from the next step on."""
        self.lr = lr
        for group in self.optimizer.param_groups if self.optimizer else ():
            group["lr"] = lr

    def state_dict(self) -> dict:
        """Adam's state and the parameter names it belongs to; before the first step, the state waiting to be loaded."""
        if self.optimizer is None:
            return self._waiting or {}
        return {"names": list(self.names), "adam": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore a ``state_dict()``; applied at the first step, when the parameters are known."""
        self._waiting = state or None

