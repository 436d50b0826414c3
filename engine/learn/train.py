"""Fit every learnable mechanism of a DAG to its world's data with SVI.

    units  = world.train_units(n, seed)  (DAG-faithful; the world's test split never included)
    images = each distinct unit's image, fetched once (binary ones kept bit-packed)
    for each epoch, for each shuffled batch:
        svi.step(...)                 # the Trace_ELBO of every learnable node's model and guide, one Adam step
    end of each epoch: one atomic, self-describing checkpoint (engine.learn.checkpoint)
    end of training: test metrics and pictures (engine.learn.report)

The learning rate follows a cosine from ``lr`` down to ``lr * lr_final`` over the run: over
the epochs, or over the time budget ``minutes`` when that comes first. The same seed gives
the same weights on the same CPU, and ``resume`` continues a killed run from its last epoch
exactly as if it had not stopped.

Under torchrun (``cq train --nproc N``, or ``torchrun --nproc-per-node N cli.py -- train ...``)
the run is data-parallel (engine.distributed): every rank walks the same global batches
and steps on its slice of each, with the gradients summed over the ranks, so a step is the
step of the whole batch; rank 0 alone writes the checkpoint and the report.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pyro
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler
from tqdm import tqdm

from engine.learn import checkpoint
from engine.distributed import Ranks, join
from engine.worlds.world import Units, World, build_world
from engine.model.dag import DagSpec, load_dag
from engine.errors import CqError
from engine.model.scm import SCM, build_scm
from engine.learn.svi import SVI, StateMismatch
from engine.device import pick_device, tune_cpu


@dataclass
class TrainConfig:
    """Everything that defines a training run; stored in its checkpoint."""

    dag: str  # the DAG file whose learnable mechanisms are fitted
    out: str  # run folder: model.pt, report.json, report.md, PNGs
    n: int = 200_000  # units drawn from the DAG; the ~10% that are test images are dropped
    epochs: int = 10  # passes over the training units
    batch_size: int = 256  # units per SVI step (Pyro's fixed cost per step is then under a tenth of it)
    lr: float = 3e-3  # Adam's learning rate at the start
    lr_final: float = 0.02  # ... and at the end, as a fraction of lr (cosine decay)
    seed: int = 0  # labels, initial weights, shuffling and z draws
    device: str = "auto"  # auto (CUDA when available), cpu or cuda
    workers: int = 0  # DataLoader worker processes (0: batches are made in the main process)
    threads: int = 1  # torch CPU threads; one avoids spin-waiting on a shared CPU (0: torch's default)
    minutes: float | None = None  # optional budget of training minutes (resumes included); the lr anneals to fit it
    resume: bool = False  # continue from the run folder's checkpoint
    eval_n: int = 8192  # held-out units scored in the report


# ---- data ---------------------------------------------------------------------------------


def pack(images: np.ndarray) -> torch.Tensor:
    """(N, H, W) binary images -> (N, H*W/8) uint8, eight pixels a byte."""
    return torch.from_numpy(np.packbits(images.reshape(len(images), -1).astype(bool), axis=1))


def unpack(packed: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(N, H*W/8) uint8 -> (N, H, W) float images in {0, 1}, on packed's device."""
    shifts = torch.arange(7, -1, -1, device=packed.device, dtype=torch.uint8)
    bits = (packed[:, :, None] >> shifts) & 1
    return bits.view(len(packed), -1)[:, : shape[0] * shape[1]].reshape(len(packed), *shape).float()


class UnitData(Dataset):
    """Labelled units with their images; indexed by a whole batch of positions at once."""

    def __init__(self, labels: dict[str, torch.Tensor], images: torch.Tensor, row: torch.Tensor, packed: bool):
        self.labels, self.images, self.row, self.packed = labels, images, row, packed  # row: each unit's image

    def __len__(self) -> int:
        return len(self.row)

    def __getitem__(self, batch) -> dict[str, torch.Tensor]:
        batch = torch.as_tensor(batch, dtype=torch.long)  # a rank's slice of a short batch may be empty
        out = {k: v[batch] for k, v in self.labels.items()}
        out["_images"] = self.images[self.row[batch]]
        return out


def load_units(world: World, units: Units, chunk: int = 8192) -> UnitData:
    """Fetch each distinct unit's image once (binary ones bit-packed) and pair it with its units."""
    dag = world.dag
    distinct, first, row = np.unique(units.index, return_index=True, return_inverse=True)
    packed = dag.nodes[dag.images[0]].domain.levels() == 2
    parts = []
    for start in tqdm(range(0, len(distinct), chunk), desc="images", unit="chunk", leave=False, disable=None):
        images = world.images(units.subset(first[start:start + chunk]))
        parts.append(pack(images) if packed else torch.from_numpy(images.astype(np.uint8)))
    images = torch.cat(parts) if parts else torch.zeros(0, 1, dtype=torch.uint8)
    tensors = {k: torch.as_tensor(units.labels[k], dtype=dag.nodes[k].domain.dtype) for k in dag.labels}
    return UnitData(tensors, images, torch.from_numpy(row.reshape(-1)), packed)


def batches(units: UnitData, batch_size: int, seed: int, *, workers: int = 0, pin: bool = False, ranks: Ranks = Ranks()) -> DataLoader:
    """The units in a shuffled order fixed by ``seed``, a whole batch per index (under torchrun: this rank's slice of it)."""
    sampler = BatchSampler(RandomSampler(units, generator=torch.Generator().manual_seed(seed)), batch_size, drop_last=False)
    sampler = ranks.shard(sampler)  # every rank shuffles alike and takes its part of each global batch
    return DataLoader(units, sampler=sampler, batch_size=None, num_workers=workers, pin_memory=pin)


# ---- the loop -----------------------------------------------------------------------------


def learnable(scm: SCM) -> dict:
    """The mechanisms that ``cq train`` fits, by node."""
    return {name: m for name, m in scm.mechanisms.items() if m.learnable}


def schedule(config: TrainConfig, progress: float) -> float:
    """Cosine decay from lr to lr * lr_final as progress goes from 0 to 1."""
    final = config.lr * config.lr_final
    return final + (config.lr - final) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def batch_values(batch: dict, dag: DagSpec, device) -> dict[str, torch.Tensor]:
    """Every node's value for one batch, on the device (image nodes unpacked there)."""
    values = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "_images"}
    images = batch["_images"].to(device, non_blocking=True)
    for name in dag.images:
        domain = dag.nodes[name].domain
        values[name] = unpack(images, domain.shape) if domain.levels() == 2 else images.float()
    return values


def resume_from(path: Path, dag: DagSpec, config: TrainConfig, log) -> tuple[dict | None, TrainConfig]:
    """The run's last checkpoint (None if there is none), on the CPU, and its config, with this run's limits."""
    if not path.exists():
        log(f"nothing to resume at {path}; starting a new run")
        return None, config
    state = checkpoint.read_checkpoint(path, map_location="cpu")
    checkpoint.check_dag(state, dag, path)
    fixed = {f.name for f in fields(TrainConfig)} - {"epochs", "minutes", "device", "workers", "threads", "resume", "out", "dag"}
    replaced = [f"{k} {v} (not {getattr(config, k)})" for k, v in state["config"].items() if k in fixed and v != getattr(config, k)]
    config = dataclasses.replace(config, **{k: v for k, v in state["config"].items() if k in fixed})
    log(f"resuming {path} after epoch {state['epoch']} of {config.epochs}")
    if replaced:  # --n, --batch-size, --lr and --seed cannot change mid-run
        log(f"the checkpoint's settings replace this run's: {', '.join(replaced)}")
    return state, config


def optimizer_state(state: dict, path: Path, *, needed: bool) -> dict:
    """The saved Adam state of a checkpoint, kept as it is when no training follows.

    A state from an older trainer (without parameter names) cannot resume training.
    """
    saved = state.get("optimizer") or {}
    if saved and "names" not in saved:
        if not needed:
            return saved  # written back unchanged by this run's checkpoint
        raise CqError(f"{path}: this run was saved by an older trainer whose optimizer state cannot be resumed; its model "
                      f"still answers queries; to train on, start a new run (delete {path.parent} or choose another --out)")
    return saved


def train(config: TrainConfig, *, log=print) -> dict:
    """Train, checkpoint every epoch, write the report; return the report's numbers (on every rank, under torchrun)."""
    from engine.learn import report as training_report

    ranks, device = join(pick_device(config.device))
    log = log if ranks.main else (lambda line: None)
    quiet = None if ranks.main else True  # tqdm: bars where stderr is a terminal, and on rank 0 alone
    tune_cpu(config.threads)
    dag = load_dag(config.dag)
    path = checkpoint.checkpoint_path(Path(config.out))
    if config.resume:  # rank 0 reads it and hands it round: every rank resumes from the same state
        state, config = ranks.share(lambda: resume_from(path, dag, config, log))
    else:
        state = None
    world = build_world(dag)
    pyro.set_rng_seed(config.seed)  # the same on every rank: the same initial weights (and SVI hands round rank 0's)
    pyro.clear_param_store()
    scm = build_scm(dag)
    mechanisms = learnable(scm)
    if not mechanisms:
        raise CqError(f"{config.dag}: no node has a learnable mechanism; nothing to train")
    if state is not None:
        checkpoint.load_weights(scm, state, path)
    scm.to(device)

    t0 = time.perf_counter()
    units = load_units(world, world.train_units(config.n, config.seed))
    test_units = world.test_units(config.eval_n, config.seed)
    log(f"{len(units):,} training units of the {world.name} world ({len(units.images):,} distinct images), {len(test_units):,} held out; "
        f"data ready in {time.perf_counter() - t0:.1f}s on {device}" + (f", rank 0 of {ranks.size}" if ranks.size > 1 else ""))
    if ranks.size > min(len(units), config.batch_size):
        raise CqError(f"{ranks.size} training processes need at least {ranks.size} units a batch; got --batch-size "
                      f"{config.batch_size} and {len(units)} training units")

    svi = SVI({name: (m.model, m.guide) for name, m in mechanisms.items()}, lr=config.lr, ranks=ranks)
    steps_per_epoch = math.ceil(len(units) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    epoch = state["epoch"] if state else 0
    step = state.get("step", 0) if state else 0
    seconds = state.get("train_seconds", 0.0) if state else 0.0
    history = list(state.get("metrics", {}).get("epochs", [])) if state else []
    budget = config.minutes * 60 if config.minutes else None
    out_of_time = budget is not None and seconds >= budget
    if state is not None:
        needed = epoch < config.epochs and not out_of_time
        saved = optimizer_state(state, path, needed=needed)
        if needed and not saved:
            log(f"{path} holds no optimizer state; Adam starts afresh")
        svi.load_state_dict(saved)

    for m in mechanisms.values():
        m.train()
    while epoch < config.epochs and not out_of_time:
        pyro.set_rng_seed(ranks.seed(config.seed * 1_000_003 + epoch))  # resumable: each epoch seeds itself (each rank its own z draws)
        loader = batches(units, config.batch_size, config.seed * 1_000_003 + epoch, workers=config.workers, pin=device.type == "cuda",
                         ranks=ranks)
        total, count, start = 0.0, 0, time.perf_counter()
        # with a time budget, rank 0's clock rules the learning rate and the stop on every rank
        clock = (lambda: ranks.agree(seconds + time.perf_counter() - start)) if budget else (lambda: 0.0)
        elapsed = clock()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False, disable=quiet)  # none in logs
        with pyro.validation_enabled(False):
            for i, batch in enumerate(bar):
                progress = max(step / total_steps, elapsed / budget if budget else 0.0)
                lr = schedule(config, progress)
                svi.set_lr(lr)
                args = None  # this rank's slice of a short last batch may be empty
                if len(batch["_images"]):
                    values = batch_values(batch, dag, device)
                    args = {name: (values[name], scm.parents(name, values)) for name in mechanisms}
                try:
                    loss = svi.step(args)  # the whole batch's loss, summed over the ranks
                except StateMismatch as e:  # at the first step of a resumed run
                    raise CqError(f"{path}: {e}; start a new run (delete {path.parent} or choose another --out)") from None
                n = min(config.batch_size, len(units) - i * config.batch_size)  # the whole batch's units
                total, count, step = total + loss, count + n, step + 1
                rate = count / (time.perf_counter() - start)
                bar.set_postfix(loss=f"{total / count:.1f}", img_s=f"{rate:.0f}", lr=f"{lr:.1e}", refresh=False)
                elapsed = clock()
                if budget is not None and elapsed >= budget:
                    out_of_time = True
                    break
        took = ranks.agree(time.perf_counter() - start)
        seconds += took
        epoch += 1
        history.append({"epoch": epoch, "train_loss": total / max(count, 1), "seconds": took, "images_per_s": count / took, "lr": lr,
                        "units": count})
        log(f"epoch {epoch}/{config.epochs}: train loss {total / max(count, 1):.2f} nats/image, "
            f"{count / took:.0f} images/s, {took:.0f}s" + (" (time budget reached)" if out_of_time else ""))
        # the saved optimizer carries the next step's rate: a resumed run steps exactly as this one would
        svi.set_lr(schedule(config, max(step / total_steps, seconds / budget if budget else 0.0)))
        if ranks.main:
            save(path, dag, scm, svi, config, epoch, step, seconds, {"epochs": history})
        ranks.barrier()  # a rank that fails from here on finds this epoch saved

    for m in mechanisms.values():
        m.eval()

    def finish() -> dict:
        report = training_report.write(scm, world, test_units, config, Path(config.out), device=device,
                                       train={"epochs": epoch, "seconds": seconds, "history": history})
        save(path, dag, scm, svi, config, epoch, step, seconds, {"epochs": history, "test": report["test"]})
        return report

    report = ranks.share(finish)  # rank 0 alone writes the report and the last checkpoint; the others wait for it
    ranks.leave()
    return report


def save(path: Path, dag: DagSpec, scm: SCM, svi: SVI, config: TrainConfig, epoch: int, step: int, seconds: float, metrics: dict) -> None:
    """One checkpoint: weights, optimizer, DAG, configs, progress and metrics."""
    checkpoint.save_checkpoint(
        {
            "dag": checkpoint.dag_record(dag),
            "mechanisms": checkpoint.mechanism_records(scm),
            "optimizer": svi.state_dict(),
            "config": asdict(config),
            "epoch": epoch,
            "step": step,
            "train_seconds": seconds,
            "metrics": metrics,
        },
        path,
    )
