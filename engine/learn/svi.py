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

Under torchrun (``ranks``, engine.distributed) each rank steps on its slice of the batch;
after the backward pass the gradients are summed over the ranks, so every rank takes the step
of the whole batch on the same parameters. Parameters first seen in a step take rank 0's values.
"""

from __future__ import annotations

import pyro.poutine as poutine
import torch
from pyro.infer import Trace_ELBO

from engine.distributed import Gradients, Ranks

ADAM = {"fused": True}  # Adam's update as one kernel per group of tensors, not five per tensor


class StateMismatch(ValueError):
    """A saved optimizer state belongs to other parameters than the ones being trained."""


class SVI:
    """Adam on the summed negative ELBO of named (model, guide) pairs."""

    def __init__(self, pairs: dict, *, lr: float, ranks: Ranks | None = None):
        self.pairs, self.lr = pairs, lr
        self.ranks = ranks or Ranks()
        self.elbo = Trace_ELBO()
        self.optimizer: torch.optim.Adam | None = None
        self.names: list[str] = []  # param-store names, in the optimizer's order
        self.params: list[torch.Tensor] = []  # ... and the tensors
        self._waiting: dict | None = None  # a saved state, loaded once the parameters are known
        self.gradients: Gradients | None = None  # under torchrun: the flat buffers the ranks sum

    def step(self, args: dict | None) -> float:
        """One gradient step; ``args[name]`` are the positional arguments of that pair.

        ``None``: this rank has no units in this batch; it still joins the ranks' sum of gradients and the step.
        """
        if args is None:
            return self._descend(None)
        loss, params = self._loss(args)
        new = self._track(params)
        if new and self.ranks.broadcast_(list(new.values())):
            loss, _ = self._loss(args)  # this rank's new parameters were not rank 0's: the gradient at rank 0's
        return self._descend(loss)

    def _loss(self, args: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with poutine.trace(param_only=True) as capture:
            loss = sum(self.elbo.differentiable_loss(model, guide, *args[name]) for name, (model, guide) in self.pairs.items())
        return loss, {name: site["value"].unconstrained() for name, site in capture.trace.nodes.items()}

    def _descend(self, loss: torch.Tensor | None) -> float:
        if self.optimizer is None:  # nothing to learn
            return float(loss) if loss is not None else 0.0
        if self.gradients is None:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.gradients.zero()
        if loss is not None:
            loss.backward()
        # Gradients are summed here, after backward, rather than by DistributedDataParallel: DDP wraps one
        # nn.Module whose parameters it knows at construction, while Pyro finds them lazily in the traces of
        # several models and guides (bare pyro.param sites included); and DDP averages where Trace_ELBO sums.
        # The sum of the ranks' summed losses' gradients is exactly the whole batch's gradient.
        total = self.ranks.sum_gradients(self.gradients, loss.item() if loss is not None else 0.0)
        self.optimizer.step()
        return total

    def _track(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Add the parameters not seen before to Adam, and return them."""
        new = {name: p for name, p in params.items() if name not in self.names}
        if not new:
            return new
        self.names += new
        self.params += new.values()
        if self.ranks.size > 1:
            if self.gradients is not None:
                self.gradients.close()
            self.gradients = Gradients(self.params)
        if self.optimizer is None:
            self.optimizer = torch.optim.Adam(list(new.values()), lr=self.lr, **ADAM)
        else:
            self.optimizer.add_param_group({"params": list(new.values())})
        if self._waiting is not None:
            saved, self._waiting = self._waiting, None
            if saved["names"] != self.names:
                raise StateMismatch(f"its optimizer state is for parameters {', '.join(saved['names'])}, not {', '.join(self.names)}")
            self.optimizer.load_state_dict(saved["adam"])
        return new

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

