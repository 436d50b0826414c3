"""Pseudo-oracles: one small conv net per dSprites factor, reading the factor off an image.

Anti-causal predictors (Monteiro et al., ICLR 2023) trained on plain dSprites, where every
factor is independent and uniform, so no net can lean on a correlation. They are the yardstick
of effectiveness: does a counterfactual image show the labels it was meant to show?

Every net sees the same 32x32 window, centred on the sprite's centre of mass (whole pixels),
so none has to learn translation; images are thresholded at 0.5, as the soundness IoU does.

    shape, scale:  cross-entropy over the factor's classes
    x, y:          the sprite's centre relative to the window, in grid steps (squared error);
                   plus the window's own place, rounded to the nearest class
    orientation:   (cos k*theta, sin k*theta) for k = 4, 2, 1, the symmetry orders of the
                   square, the ellipse and the heart; squared error on every head that the
                   image's shape determines (order(shape) divides k); decoded with one
                   shape's head to the class whose angle is nearest modulo 2*pi / k

    oracles = load_oracles("runs/oracles")            # None until train_oracles has run
    oracles.score(images, {"shape": s, "x": x})        # {"shape_accuracy": .., "x_mae": ..}
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from engine.worlds.dsprites import render as dsprites
from engine.errors import CheckpointError
from engine.device import pick_device
from engine.files import read_marked, write_atomic

FORMAT = "causal-query-oracles"
VERSION = 1
FILENAME = "oracles.pt"
FACTORS = ("shape", "scale", "orientation", "x", "y")
CROP = 32  # side of the window every net sees
PER_PIXEL = 31 / 32  # x and y grid steps per pixel: the sprite centre moves from pixel 16 to 48
ORDERS = (4, 2, 1)  # rotational symmetry order of square, ellipse, heart (dsprites.SHAPES)
STEP = float(dsprites.VALUES["orientation"][1])  # the orientation grid step, 2*pi / 39
MAX_WIDTH = 1024  # the widest first conv layer a saved config may ask for (the nets then hold about 1 GB)


@dataclass
class OracleConfig:
    """Everything that defines an oracle training run; stored in oracles.pt."""

    n: int = 60_000  # training images: uniformly random dSprites indices, rendered once
    epochs: int = 4  # passes over the training images
    minutes: float | None = None  # optional time budget for training (None: the epochs alone)
    batch_size: int = 128  # images per step (every net sees the same batch)
    lr: float = 3e-3  # AdamW's learning rate at the start, cosine-decayed to lr / 50
    width: int = 16  # channels of each net's first conv layer (then 2 * width)
    seed: int = 0  # training indices, initial weights, shuffling
    device: str = "cpu"  # cpu, cuda or auto
    threads: int = 1  # torch CPU threads while training; one avoids spin-waiting on a shared CPU (0: as set)
    eval_n: int = 5_000  # fresh images (indices unseen in training) for the metrics


def centred(images: torch.Tensor, size: int = CROP) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (N, size, size) windows around each image's centre of mass (the middle if blank), their tops and lefts."""
    n, h, w = images.shape
    mass = images.sum((1, 2))
    rows = torch.arange(h, device=images.device) + 0.5
    cols = torch.arange(w, device=images.device) + 0.5
    cy = torch.where(mass > 0, (images.sum(2) * rows).sum(1) / mass.clamp_min(1e-6), h / 2)
    cx = torch.where(mass > 0, (images.sum(1) * cols).sum(1) / mass.clamp_min(1e-6), w / 2)
    span = torch.arange(size, device=images.device)
    top = (cy.round().long() - size // 2).clamp(0, h - size)
    left = (cx.round().long() - size // 2).clamp(0, w - size)
    r, c = top[:, None] + span, left[:, None] + span
    return images[torch.arange(n, device=images.device)[:, None, None], r[:, :, None], c[:, None, :]], top, left


class OracleNet(nn.Module):
    """(N, 32, 32) windows -> (N, outputs): three strided convs down to 4x4, then an MLP."""

    def __init__(self, outputs: int, *, width: int = 16, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, stride=2, padding=1), nn.ReLU(),  # 16x16
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),  # 8x8
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),  # 4x4
            nn.Flatten(), nn.Linear(32 * width, hidden), nn.ReLU(), nn.Linear(hidden, outputs),
        )

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.net(windows[:, None])


class Oracles(nn.Module):
    """One OracleNet per factor; ``predict`` gives class indices, ``score`` compares them with labels."""

    def __init__(self, config: OracleConfig | None = None):
        super().__init__()
        self.config = config or OracleConfig()
        outputs = {"shape": dsprites.SIZES["shape"], "scale": dsprites.SIZES["scale"], "orientation": 2 * len(ORDERS), "x": 1, "y": 1}
        self.nets = nn.ModuleDict({f: OracleNet(outputs[f], width=self.config.width) for f in FACTORS})
        self.metrics: dict = {}  # the fresh-image evaluation saved with the weights
        theta = torch.as_tensor(dsprites.VALUES["orientation"][:-1], dtype=torch.float32)  # 39 (2*pi) draws as 0
        k = torch.tensor(ORDERS, dtype=torch.float32)[:, None]
        self.register_buffer("directions", torch.stack([torch.cos(k * theta), torch.sin(k * theta)], 1), persistent=False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw outputs: shape and scale logits, x and y in grid steps, (N, 3, 2) orientation heads."""
        windows, top, left = centred(images)
        out = {f: net(windows) for f, net in self.nets.items()}
        out["orientation"] = out["orientation"].view(-1, len(ORDERS), 2)
        out["x"] = out["x"][:, 0] + left * PER_PIXEL  # the window's left edge is class left * 31/32
        out["y"] = out["y"][:, 0] + top * PER_PIXEL
        return out

    @torch.no_grad()
    def predict(self, images, shape=None, batch: int = 1024) -> dict[str, np.ndarray]:
        """Class index of every factor for (N, 64, 64) images (numpy or torch, thresholded at 0.5).

        Orientation is decoded with the head of ``shape`` (class indices) where given, else of
        the predicted shape: the class nearest modulo that shape's symmetry.
        """
        was_training = self.training
        self.eval()
        device = self.directions.device
        images = images if torch.is_tensor(images) else torch.from_numpy(np.asarray(images))
        images = images.reshape(-1, *images.shape[-2:])
        parts = []
        for start in range(0, len(images), batch):
            x = (images[start:start + batch].to(device, torch.float32) > 0.5).float()
            out = self(x)
            pred = {f: out[f].argmax(1) for f in ("shape", "scale")}
            pred |= {f: out[f].round().long().clamp(0, dsprites.SIZES[f] - 1) for f in ("x", "y")}
            s = pred["shape"] if shape is None else torch.as_tensor(np.asarray(shape)[start:start + batch], device=device)
            head = out["orientation"][torch.arange(len(x), device=device), s]  # (n, 2)
            pred["orientation"] = torch.einsum("nc,ncj->nj", head, self.directions[s]).argmax(1)
            parts.append({f: v.cpu() for f, v in pred.items()})
        self.train(was_training)
        return {f: torch.cat([p[f] for p in parts]).numpy().astype(np.int64) if parts else np.zeros(0, np.int64) for f in FACTORS}

    def score(self, images, labels: dict[str, np.ndarray]) -> dict[str, float]:
        """shape_accuracy; scale, x, y and orientation (modulo symmetry) mean absolute error in grid steps.

        Only the factors in ``labels`` (class indices) are scored; orientation's symmetry is the
        labelled shape's where given, else the predicted one's.
        """
        labels = {f: np.asarray(v).astype(np.int64) for f, v in labels.items() if f in FACTORS}
        if len(images) == 0 or not labels:
            return {}
        pred = self.predict(images, shape=labels.get("shape"))
        out = {}
        if "shape" in labels:
            out["shape_accuracy"] = float((pred["shape"] == labels["shape"]).mean())
        for f in ("scale", "orientation", "x", "y"):
            if f not in labels:
                continue
            if f == "orientation":
                theta = dsprites.VALUES["orientation"]
                shape = labels.get("shape", pred["shape"])
                error = orientation_error(theta[pred[f]], theta[labels[f]], shape)
            else:
                error = np.abs(pred[f] - labels[f])
            out[f"{f}_mae"] = float(error.mean())
        return out


def orientation_error(a, b, shape) -> np.ndarray:
    """|a - b| in grid steps (2*pi/39) modulo each shape's symmetry period 2*pi / order(shape)."""
    period = 2 * np.pi / np.asarray(ORDERS)[np.asarray(shape)]
    d = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) % period
    return np.minimum(d, period - d) / STEP


def loss(out: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each net's training loss on one batch (class indices in ``labels``)."""
    losses = {f: F.cross_entropy(out[f], labels[f]) for f in ("shape", "scale")}
    losses |= {f: F.mse_loss(out[f], labels[f].float()) for f in ("x", "y")}
    orders = torch.tensor(ORDERS, device=out["orientation"].device)
    theta = torch.as_tensor(dsprites.VALUES["orientation"], dtype=torch.float32, device=orders.device)[labels["orientation"]]
    angle = orders[None, :] * theta[:, None]  # (n, 3)
    target = torch.stack([torch.cos(angle), torch.sin(angle)], -1)
    known = (orders[None, :] % orders[labels["shape"]][:, None] == 0).float()  # the shape fixes k * theta
    squared = ((out["orientation"] - target) ** 2).sum(-1)
    losses["orientation"] = (squared * known).sum() / known.sum()
    return losses


def draw(n: int, seed: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """n uniformly random dSprites images (uint8, (n, 64, 64)) and their class indices."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, dsprites.N_IMAGES, n + (0 if exclude is None else len(exclude)))
    if exclude is not None:
        index = index[~np.isin(index, exclude)]
    index = index[:n]
    labels = dsprites.factors(index)
    return dsprites.render_index(index), {f: np.asarray(labels[f], dtype=np.int64) for f in FACTORS}


@torch.no_grad()
def evaluate(oracles: Oracles, images: np.ndarray, labels: dict[str, np.ndarray]) -> dict[str, float]:
    """score on labelled images, with the orientation error per shape as well."""
    metrics = oracles.score(images, labels)
    for s, name in enumerate(dsprites.SHAPES):
        rows = labels["shape"] == s
        if rows.any():
            some = {f: labels[f][rows] for f in ("shape", "orientation")}
            metrics[f"orientation_mae_{name}"] = oracles.score(images[rows], some)["orientation_mae"]
    return metrics


def train_oracles(run_dir: str | Path, config: OracleConfig | None = None) -> dict:
    """Train the five nets on plain dSprites, score them on fresh images, save run_dir/oracles.pt."""
    config = config or OracleConfig()
    previous = torch.get_num_threads()
    torch.set_num_threads(config.threads or previous)
    try:
        return _train(Path(run_dir), config)
    finally:
        torch.set_num_threads(previous)


def _train(run_dir: Path, config: OracleConfig) -> dict:
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    start = time.perf_counter()
    images, labels = draw(config.n, config.seed)
    packed = torch.from_numpy(np.packbits(images.reshape(len(images), -1).astype(bool), axis=1))
    targets = {f: torch.from_numpy(v) for f, v in labels.items()}
    render_seconds = time.perf_counter() - start

    oracles = Oracles(config).to(device)
    optim = torch.optim.AdamW(oracles.parameters(), lr=config.lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(config.n / config.batch_size)
    total = config.epochs * steps_per_epoch
    budget = config.minutes * 60 if config.minutes else None
    order = torch.Generator().manual_seed(config.seed)
    history, step, start, cpu = [], 0, time.perf_counter(), time.process_time()
    oracles.train()
    bar = tqdm(total=total, desc="oracles", unit="batch", disable=None)  # none when the output is not a terminal
    while step < total and not (budget and time.perf_counter() - start >= budget):
        sums, batches = {f: 0.0 for f in FACTORS}, 0
        for rows in torch.randperm(config.n, generator=order).split(config.batch_size):
            progress = max(step / total, (time.perf_counter() - start) / budget if budget else 0.0)
            if progress >= 1:
                break
            for group in optim.param_groups:
                group["lr"] = config.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))
            x = unpack(packed[rows]).to(device)
            losses = loss(oracles(x), {f: v[rows].to(device) for f, v in targets.items()})
            optim.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            optim.step()
            step, batches = step + 1, batches + 1
            for f in FACTORS:
                sums[f] += losses[f].item()
            bar.update()
            bar.set_postfix({f[:6]: f"{losses[f].item():.3f}" for f in FACTORS}, refresh=False)
        history.append({"step": step, **{f"loss_{f}": v / max(batches, 1) for f, v in sums.items()}})
    bar.close()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu

    oracles.eval()
    fresh_images, fresh_labels = draw(config.eval_n, config.seed + 1, exclude=np.unique(dsprites.to_index(labels)))
    oracles.metrics = {**evaluate(oracles, fresh_images, fresh_labels), "eval_n": len(fresh_images)}
    save_oracles(oracles, run_dir, history=history, step=step, train_seconds=seconds, train_cpu_seconds=cpu_seconds,
                 render_seconds=render_seconds)
    return {"metrics": oracles.metrics, "history": history, "step": step, "train_seconds": seconds, "train_cpu_seconds": cpu_seconds,
            "render_seconds": render_seconds}


def unpack(packed: torch.Tensor) -> torch.Tensor:
    """(N, 512) bit-packed rows -> (N, 64, 64) float images."""
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8)
    return ((packed[:, :, None] >> shifts) & 1).view(len(packed), 64, 64).float()


def save_oracles(oracles: Oracles, run_dir: str | Path, **record) -> Path:
    """Write run_dir/oracles.pt atomically: weights, config, metrics and any ``record`` entries."""
    state = {k: v.cpu() for k, v in oracles.state_dict().items()}
    record = {"format": FORMAT, "version": VERSION, "config": asdict(oracles.config), "state_dict": state, "metrics": oracles.metrics, **record}
    return write_atomic(Path(run_dir) / FILENAME, lambda f: torch.save(record, f))


def load_oracles(run_dir: str | Path) -> Oracles | None:
    """The oracles in run_dir/oracles.pt (beside model.pt, or that file); None if absent, CheckpointError if bad.

    The file is checked before it is used: a config of OracleConfig's fields and types, a
    state_dict of finite tensors whose shapes are those of the nets its config builds (built
    on the meta device first, so that a config asking for huge nets allocates nothing), and
    metrics of numbers.
    """
    path = Path(run_dir)
    if path.is_dir() or not path.suffix:
        path = path / FILENAME
    elif path.name == "model.pt":
        path = path.with_name(FILENAME)
    if not path.exists():
        return None
    retrain = f"retrain them with 'cq train-oracles --model {path.parent}'"
    state = read_marked(path, FORMAT, VERSION, kind="pseudo-oracles file", hint=retrain)
    config = _saved_config(state, path, retrain)
    weights = state.get("state_dict")
    if not isinstance(weights, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in weights.items()):
        raise CheckpointError(f"{path}: 'state_dict' must be a dict of tensors, got {type(weights).__name__}; {retrain}")
    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in Oracles(config).state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in weights.items()}
    if want != saved:
        differ = [k for k in want if k in saved and want[k] != saved[k]]
        detail = f"'{differ[0]}' is {list(saved[differ[0]])}, the nets take {list(want[differ[0]])}" if differ else \
            f"{len(set(want) ^ set(saved))} tensor(s) missing or unexpected"
        raise CheckpointError(f"{path}: its weights do not fit the oracle nets ({detail}); {retrain}")
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: the tensor 'state_dict.{name}' holds NaN or infinite values; {retrain}")
    metrics = state.get("metrics", {})
    if not isinstance(metrics, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()):
        raise CheckpointError(f"{path}: 'metrics' must be a dict of numbers; {retrain}")
    oracles = Oracles(config)
    try:
        oracles.load_state_dict(weights)
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(f"{path}: its weights do not fit the oracle nets ({str(e).splitlines()[0]}); {retrain}") from None
    oracles.metrics = dict(metrics)
    return oracles.eval()


def _saved_config(state: dict, path: Path, retrain: str) -> OracleConfig:
    """The OracleConfig of a loaded file, each known field checked (unknown fields are ignored)."""
    saved = state.get("config", {})
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: 'config' must be a dict, got {type(saved).__name__}; {retrain}")
    for name, value in saved.items():
        check, want = _CONFIG.get(name, (lambda v: True, ""))
        if not check(value):
            raise CheckpointError(f"{path}: 'config.{name}' must be {want}, got {repr(value)[:60]}; {retrain}")
    known = {f.name for f in fields(OracleConfig)}
    return OracleConfig(**{k: v for k, v in saved.items() if k in known})


def _whole(low: int, high: int = 2**62):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high, f"a whole number from {low} to {high:,}"


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf


_CONFIG = {  # what each saved OracleConfig field may hold
    "n": _whole(1), "epochs": _whole(1), "batch_size": _whole(1), "eval_n": _whole(1), "seed": _whole(0), "threads": _whole(0),
    "width": _whole(1, MAX_WIDTH), "lr": (_number, "a finite number > 0"),
    "minutes": (lambda v: v is None or _number(v), "none or a finite number > 0"), "device": (lambda v: isinstance(v, str), "a string"),
}
