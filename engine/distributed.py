"""Data-parallel work over torchrun's processes: the ranks, what they share, and the launcher.

    cq train --nproc 2 ...                                          # or, through torchrun itself:
    torchrun --standalone --nproc-per-node 2 cli.py -- train ...    # (--: torchrun would take --n for its --nnodes)

Every rank loads the same units and walks the same shuffled global batches (the same seed);
rank r trains on its contiguous r-th slice of each. After each backward pass the gradients of
every parameter the step touched are *summed* over the ranks: Trace_ELBO sums over units, so
the sum of the slices' gradients is the gradient of the whole batch, and one step of N ranks
on a batch split N ways is one step of one process on that batch. Rank 0 alone writes the
checkpoint and the report; the others wait for it. A rank that dies makes the others' next
collective fail (gloo sees the closed socket; NCCL's watchdog aborts), and a rank that hangs
makes it time out after ``timeout()`` seconds (``CQ_DIST_TIMEOUT``); either way the survivors
stop with a CqError naming what failed, and torchrun stops the rest of the group.

Outside torchrun (no ``WORLD_SIZE`` > 1 in the environment) ``join`` gives the one-rank
``Ranks()``, whose collectives do nothing.
"""

from __future__ import annotations

import gc
import os
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from engine.errors import CqError


def timeout() -> float:
    """Seconds a rank waits for the others in a collective, rank 0's report included: ``CQ_DIST_TIMEOUT``, else 600."""
    text = os.environ.get("CQ_DIST_TIMEOUT", "600")
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise CqError(f"CQ_DIST_TIMEOUT must be a number of seconds > 0, got {text!r}")
    return seconds


def launched() -> bool:
    """Whether this process is one of several that torchrun started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def env_rank() -> int:
    """This process's global rank under torchrun (0 outside it)."""
    return int(os.environ.get("RANK", "0"))


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes, and the collectives the trainer needs."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where collectives' tensors live
    owner: bool = False  # this object started the process group (and ends it in ``leave``)
    timeout: float = 0.0  # the process group's, in seconds

    @property
    def main(self) -> bool:
        return self.rank == 0

    # ---- data and seeds ---------------------------------------------------------------------

    def shard(self, batches: Sampler) -> Sampler:
        """This rank's slice of each global batch of ``batches``."""
        return batches if self.size == 1 else Shard(batches, self.rank, self.size)

    def seed(self, base: int) -> int:
        """A per-rank RNG seed: rank 0 keeps ``base``, so that one rank draws what one process draws."""
        return (base + 0x9E3779B1 * self.rank) % 2**32

    # ---- collectives ------------------------------------------------------------------------

    def sum_gradients(self, gradients: "Gradients | None", loss: float) -> float:
        """Sum the gradients and the loss over the ranks, in place; the summed loss.

        A parameter that no rank gave a gradient keeps none (Adam leaves it alone, as in one process).
        """
        if self.size == 1:
            return loss
        meta = torch.tensor([loss, *gradients.touched], dtype=torch.float64, device=self.device)
        with self._talk("summing the gradients"):
            for flat in [*gradients.buffers, meta]:
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        gradients.keep([n > 0 for n in meta[1:].tolist()])
        return meta[0].item()

    def broadcast_(self, tensors: list[torch.Tensor]) -> bool:
        """Copy rank 0's values into ``tensors``; whether any of this rank's values differed."""
        if self.size == 1:
            return False
        changed = False
        with torch.no_grad(), self._talk("taking rank 0's parameters"):
            for t in tensors:
                theirs = t.detach().clone()
                dist.broadcast(theirs, 0)
                if not torch.equal(theirs, t):
                    t.copy_(theirs)
                    changed = True
        return changed

    def agree(self, value: float) -> float:
        """Rank 0's ``value`` on every rank (a clock reading, so that all take the same decisions)."""
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        with self._talk("agreeing on the time"):
            dist.broadcast(t, 0)
        return t.item()

    def share(self, make):
        """``make()`` computed on rank 0 alone and handed to every rank; the others wait for it."""
        if self.size == 1:
            return make()
        box = [make() if self.main else None]
        with self._talk("waiting for rank 0"):
            dist.broadcast_object_list(box, 0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor] | None:
        """Every rank's ``tensor`` (of one shape and dtype on all ranks), on rank 0 in rank order; None on the others."""
        if self.size == 1:
            return [tensor]
        mine = tensor.to(self.device)
        out = [torch.empty_like(mine) for _ in range(self.size)] if self.main else None
        with self._talk("gathering the answers"):
            dist.gather(mine, out, dst=0)
        return [t.cpu() for t in out] if self.main else None

    def gather_objects(self, value) -> list | None:
        """Every rank's ``value`` (a picklable result of this program's own ranks), on rank 0 in rank order; None elsewhere."""
        if self.size == 1:
            return [value]
        out = [None] * self.size if self.main else None
        with self._talk("gathering the results"):
            dist.gather_object(value, out, dst=0)
        return out

    def barrier(self) -> None:
        """Wait until every rank is here."""
        if self.size > 1:
            with self._talk("waiting for rank 0"):
                dist.barrier(device_ids=[self.local_rank] if self.device.type == "cuda" else None)

    def leave(self) -> None:
        """End the process group if ``join`` started it."""
        if self.owner and dist.is_initialized():
            dist.destroy_process_group()

    @contextmanager
    def _talk(self, what: str):
        try:
            yield
        except RuntimeError as e:  # gloo and NCCL raise DistBackendError (a RuntimeError) for a lost or silent peer
            line = (str(e).strip().splitlines() or [type(e).__name__])[0]
            reason = re.sub(r"^\[[^\]]*\]\s*", "", line).split(". ")[0][:200]  # gloo's "[file.cc:553] Connection closed by peer ..."
            raise CqError(f"rank {self.rank} of {self.size}: {what} failed ({reason}): another process stopped "
                          f"(its message is above) or was silent for over {self.timeout:g}s (CQ_DIST_TIMEOUT)") from None


class Gradients:
    """The gradients of ``params`` as views into one flat buffer per dtype and device, which the ranks sum in place.

    DistributedDataParallel's ``gradient_as_bucket_view``: backward accumulates into the buffers
    themselves, so summing them copies nothing into or out of a send buffer. A hook marks each
    parameter whose gradient backward accumulated, so that one untouched on every rank can be
    left without a gradient, as in one process.
    """

    def __init__(self, params: list[torch.Tensor]):
        self.params = list(params)
        groups: dict = {}
        for p in self.params:
            groups.setdefault((p.dtype, p.device), []).append(p)
        self.buffers = [torch.zeros(sum(p.numel() for p in group), dtype=dtype, device=device)
                        for (dtype, device), group in groups.items()]
        views = {}
        for flat, group in zip(self.buffers, groups.values()):
            for p, part in zip(group, flat.split([p.numel() for p in group])):
                views[id(p)] = part.view_as(p)
        self.views = [views[id(p)] for p in self.params]
        self.touched = [False] * len(self.params)
        self._hooks = [p.register_post_accumulate_grad_hook(lambda _, i=i: self.touched.__setitem__(i, True))
                       for i, p in enumerate(self.params)]

    def zero(self) -> None:
        """Zero the buffers and give every parameter its view as its gradient (before a backward pass)."""
        for flat in self.buffers:
            flat.zero_()
        for p, view in zip(self.params, self.views):
            p.grad = view
        self.touched = [False] * len(self.params)

    def keep(self, mask: list[bool]) -> None:
        """Drop the gradient of each parameter whose entry in ``mask`` is False."""
        for p, kept in zip(self.params, mask):
            if not kept:
                p.grad = None

    def close(self) -> None:
        """Remove the hooks (when other parameters join and new buffers replace these)."""
        for hook in self._hooks:
            hook.remove()


class Shard(Sampler):
    """Rank ``rank``'s contiguous slice of each batch of ``batches``; the ``size`` slices of a batch are the batch, in order.

    The slices' lengths differ by at most one; a batch shorter than ``size`` leaves some ranks an
    empty slice (they take part in the step with no units).
    """

    def __init__(self, batches: Sampler, rank: int, size: int):
        self.batches, self.rank, self.size = batches, rank, size

    def __iter__(self):
        for batch in self.batches:
            k, extra = divmod(len(batch), self.size)
            start = self.rank * k + min(self.rank, extra)
            yield batch[start:start + k + (self.rank < extra)]

    def __len__(self) -> int:
        return len(self.batches)


def join(device: torch.device, *, seconds: float | None = None) -> tuple[Ranks, torch.device]:
    """This process's Ranks and training device: under torchrun, the process group (gloo on CPU, NCCL on CUDA).

    ``seconds``: how long a collective waits for a silent rank (default ``timeout()``).
    """
    seconds = timeout() if seconds is None else seconds
    if not launched():
        return Ranks(device=device), device
    rank, size, local = env_rank(), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise CqError(f"rank {rank}: local rank {local} needs GPU {local}, but this machine has {torch.cuda.device_count()}; "
                          f"start at most {torch.cuda.device_count()} processes per machine (--nproc-per-node)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    owner = not dist.is_initialized()
    if owner:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=seconds), device_id=device if device.type == "cuda" else None)
    return Ranks(dist.get_rank(), dist.get_world_size(), local, device, owner, seconds), device


# ---- launching ----------------------------------------------------------------------------


def command_line(options: dict, *, drop=()) -> list[str]:
    """``--name value`` for each option that is set (a flag alone for True), but those in ``drop``: argparse's values back as argv."""
    argv = []
    for name, value in options.items():
        if name in drop or value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return argv


def launch(nproc: int, script: str, argv: list[str], job: str = "training") -> None:
    """Run ``script argv`` in ``nproc`` processes on this machine with torchrun (torch.distributed.run --standalone).

    When a process fails, torchrun stops the others; that is a CqError naming the failed ranks.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # what torchrun sets anyway, without its banner; --threads still rules
    args = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", script])
    args.training_script_args = argv  # not through torchrun's parser, which takes --n for a prefix of its --nnodes
    try:
        run(args)
    except ChildFailedError as e:
        raise failure(e, nproc, job) from None


def fork_ranks(fn, *args, nproc: int = 2) -> dict:
    """``fn(*args)`` in ``nproc`` ranks forked from this process by torchrun's own agent; each rank's return value.

    For tests and benchmarks: forked ranks start in seconds, where a cold start of torch and Pyro
    takes ten. The objects alive here are frozen out of the garbage collector first, so that no
    rank collects the leftovers of an earlier launch (a store whose threads the fork did not copy
    crashes the rank that frees it). A failed rank is torchrun's ChildFailedError.
    """
    from torch.distributed.launcher.api import elastic_launch
    from torch.distributed.run import config_from_args, get_args_parser

    options = [f"--nproc-per-node={nproc}", "--rdzv-backend=c10d", "--rdzv-endpoint=localhost:0", f"--rdzv-id={uuid.uuid4()}",
               "--start-method=fork", "--monitor-interval=0.1", "unused"]  # what --standalone sets, for a function
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun warns when it sets it
    config, _, _ = config_from_args(get_args_parser().parse_args(options))
    gc.collect()
    gc.freeze()
    try:
        return elastic_launch(config, fn)(*args)
    finally:
        gc.unfreeze()


def failure(error, nproc: int, job: str = "training") -> CqError:
    """torchrun's ChildFailedError as a CqError naming the ranks that failed and how."""
    failed = ", ".join(
        f"rank {rank} " + (f"was killed by {f.signal_name()}" if f.exitcode < 0 else f"exited with code {f.exitcode}")
        for rank, f in sorted(error.failures.items()))
    return CqError(f"{job} in {nproc} processes failed: {failed} (see its message above); torchrun stopped the others")
