"""Counterfactuals of every unit a selection keeps, streamed in blocks to one .npz and sharded over torchrun's ranks.

``given data[shape=heart, scale=1.0], do(shape=square)`` answers each selected unit by
abduction-action-prediction, ``BLOCK`` units at a time, so that memory stays flat however many
units are selected. The archive's arrays run over the selected units in the world's index order:

- ``index``: each unit's index in its world (what ``NAME[i]`` names);
- ``<node>`` and ``cf_<node>``: every label node's factual and counterfactual value, decoded
  (names as text, numbers in the domain's units);
- ``images``: the counterfactual images; binary ones packed by ``numpy.packbits`` along the
  last axis (``numpy.unpackbits(images, axis=-1, count=W)`` unpacks them), gray ones as uint8
  levels; ``image_shape`` is (H, W);
- ``iou`` (binary images) or ``mae_255`` (gray) of each counterfactual image against the true
  one, where the world has a renderer (the renderer applied to the counterfactual labels).

Draws are keyed by unit index, not by rank or batch: block b (the selection's units
b*BLOCK to (b+1)*BLOCK - 1) draws from a generator seeded by the statement's seed and the
index of the block's first unit, and leaves the program's own generator as it found it. Under
torchrun rank r answers blocks r, r + N, r + 2N, ...; rank 0 gathers each round of N blocks
and writes them in order, so N processes write the bytes that one process writes.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine.causal import inference
from engine.distributed import Ranks
from engine.files import NpzStream
from engine.images import iou
from engine.query.answers import PopulationAnswer

BLOCK = 2048  # units per block: each block's draws come from their own seeded generator
EXAMPLES = 8  # units shown in the answer's picture
_KEY = 0x9E3779B97F4A7C15  # mixes a block's first unit index into the statement's seed


class Population:
    """Answers one counterfactual statement over a selection for one Runner (its model, world and ranks)."""

    def __init__(self, runner, ranks: Ranks, scratch: Path | None):
        self.runner, self.ranks = runner, ranks
        self.scratch = Path(scratch) if scratch is not None else Path(tempfile.gettempdir())
        self.dag, self.world, self.scm = runner.dag, runner.world, runner.scm
        self.labels = list(self.dag.labels)
        self.image = runner.images[0]
        self.domain = self.dag.nodes[self.image].domain
        self.binary = self.domain.levels() == 2
        self.metric = ("iou" if self.binary else "mae_255") if self.world.has_renderer else None
        self.record = self._record_dtype()

    def answer(self, statement, units, act: dict) -> PopulationAnswer:
        index, n = units.index, len(units.index)
        seed = int(torch.randint(0, 2**62, (1,)))  # from the program's seeded generator: the same on every rank
        shown, act = {k: v[1] for k, v in act.items()}, self.runner.units.tensors(act)
        blocks = range(0, n, BLOCK)
        rounds = range(0, len(blocks), self.ranks.size)
        stream = NpzStream(self._scratch_path(), self._columns(), n) if self.ranks.main else None
        summary, examples = Summary(self), None
        start = time.perf_counter()
        try:
            with tqdm(total=n, desc="units", unit="unit", disable=None if self.ranks.main else True, leave=False) as bar:
                for r in rounds:
                    b = r + self.ranks.rank
                    rows = index[b * BLOCK:(b + 1) * BLOCK] if b < len(blocks) else index[:0]
                    mine = self._block(rows, act, (seed ^ (int(rows[0]) * _KEY)) % 2**63 if len(rows) else 0)
                    parts = self.ranks.gather(torch.from_numpy(mine.view(np.uint8)))
                    if parts is None:
                        continue
                    for k, part in enumerate(parts):
                        if r + k >= len(blocks):
                            break
                        got = part.numpy().view(self.record)[:len(index[(r + k) * BLOCK:(r + k + 1) * BLOCK])]
                        stream.write(self._decoded(got))
                        summary.add(got)
                        examples = examples if examples is not None else self._examples(got[:EXAMPLES])
                        bar.update(len(got))
            seconds = time.perf_counter() - start
            path = stream.close({"image_shape": np.array(self.domain.shape, dtype=np.int64)}) if stream else None
        except BaseException:
            if stream is not None:
                stream.discard()
            raise
        how = {site: self.scm.mechanisms[node].abduction for node in self.scm.order for site in self.scm.mechanisms[node].noise(1)}
        result = summary.result(seconds) | {"processes": self.ranks.size, "block": BLOCK, "how": how} if self.ranks.main else {}
        return PopulationAnswer(statement.text, statement.line, units.text, shown, path, result, examples or {})

    # ---- one block ----

    def _block(self, rows: np.ndarray, act: dict, seed: int) -> np.ndarray:
        """The records of one block's units (padded with zeros to BLOCK rows, as the ranks exchange them)."""
        out = np.zeros(BLOCK, dtype=self.record)
        if not len(rows):
            return out
        device = self.runner.device
        with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
            torch.manual_seed(seed)
            units = self.world.units(rows)
            factual = {n: torch.as_tensor(units.labels[n], dtype=self.dag.nodes[n].domain.dtype, device=device) for n in self.labels}
            factual[self.image] = torch.as_tensor(self.world.images(units), dtype=torch.float32, device=device)
            cf = inference.counterfactual(self.scm, factual, {k: v.expand(len(rows)) for k, v in act.items()}).values
        m = len(rows)
        out["index"][:m] = rows
        for n in self.labels:
            out[n][:m] = factual[n].cpu().numpy()
            out[f"cf_{n}"][:m] = cf[n].cpu().numpy()
        images = cf[self.image].cpu().numpy()
        out["images"][:m] = np.packbits(images > 0.5, axis=-1) if self.binary else np.clip(np.rint(images), 0, 255)
        if self.metric is not None:
            truth = self.world.render({n: out[f"cf_{n}"][:m] for n in self.labels}, units)
            out[self.metric][:m] = iou(images, truth) if self.binary else np.abs(images.reshape(m, -1) - truth.reshape(m, -1)).mean(1)
        return out

    def _record_dtype(self) -> np.dtype:
        fields = [("index", np.int64)]
        for n in self.labels:
            code = np.int64 if self.dag.nodes[n].domain.is_discrete else np.float64
            fields += [(n, code), (f"cf_{n}", code)]
        h, w = self.domain.shape
        fields.append(("images", np.uint8, (h, -(-w // 8)) if self.binary else (h, w)))
        if self.metric is not None:
            fields.append((self.metric, np.float64))
        return np.dtype(fields)

    # ---- the archive ----

    def _columns(self) -> dict:
        columns = {}
        for name in self.record.names:
            dtype, shape = self.record.fields[name][0].base, self.record.fields[name][0].shape
            node = name[3:] if name.startswith("cf_") else name
            if node in self.labels:
                domain = self.dag.nodes[node].domain
                dtype = np.dtype(f"<U{max(map(len, domain.values))}") if domain.kind == "names" else np.dtype(np.float64)
            columns[name] = (dtype, shape)
        return columns

    def _decoded(self, got: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for name in self.record.names:
            node = name[3:] if name.startswith("cf_") else name
            if node in self.labels:
                domain = self.dag.nodes[node].domain
                if domain.kind == "names":
                    out[name] = np.asarray(domain.values)[got[name]]
                elif domain.is_discrete:
                    out[name] = domain.values_of(torch.as_tensor(got[name])).numpy().astype(np.float64)
                else:
                    out[name] = got[name]
            else:
                out[name] = got[name]
        return out

    def _examples(self, got: np.ndarray) -> dict[str, np.ndarray]:
        """The first units' factual, counterfactual and (with a renderer) true images, on [0, 1]."""
        units = self.world.units(got["index"])
        factual = self.world.images(units).astype(np.float64)
        cf = unpack(got["images"], self.domain.shape) if self.binary else got["images"].astype(np.float64)
        out = {"factual": factual, "counterfactual": cf.astype(np.float64)}
        if self.world.has_renderer:
            out["truth"] = self.world.render({n: got[f"cf_{n}"] for n in self.labels}, units).astype(np.float64)
        scale = 1.0 if self.binary else 255.0
        return {k: v / scale for k, v in out.items()}

    def _scratch_path(self) -> Path:
        return self.scratch / f".cq-population-{uuid.uuid4().hex}.npz"  # engine.query.report moves it beside the answers


class Summary:
    """Running totals over the written blocks: the counterfactual labels and the fidelity."""

    def __init__(self, population: Population):
        self.population, self.units = population, 0
        self.counts, self.changed, self.moments = {}, {}, {}
        self.metric = population.metric
        self.sign = 1.0 if self.metric == "iou" else -1.0  # the worst unit: the lowest IoU, the largest distance
        self.total = self.above = 0.0
        self.worst = (np.inf, -1)  # (sign * score, index)

    def add(self, got: np.ndarray) -> None:
        dag = self.population.dag
        self.units += len(got)
        for n in self.population.labels:
            cf = got[f"cf_{n}"]
            self.changed[n] = self.changed.get(n, 0) + int((cf != got[n]).sum())
            domain = dag.nodes[n].domain
            if domain.is_discrete:
                self.counts[n] = self.counts.get(n, 0) + np.bincount(cf, minlength=domain.size)
            else:
                s = self.moments.get(n, np.zeros(2))
                self.moments[n] = s + [cf.sum(), (cf**2).sum()]
        if self.metric is not None:
            scores = got[self.metric]
            self.total += float(scores.sum())
            self.above += float((scores > 0.9).sum()) if self.metric == "iou" else 0.0
            i = int(np.argmin(self.sign * scores))
            self.worst = min(self.worst, (float(self.sign * scores[i]), int(got["index"][i])))

    def result(self, seconds: float) -> dict:
        dag, n = self.population.dag, max(self.units, 1)
        labels = {}
        for node in self.population.labels:
            domain = dag.nodes[node].domain
            entry = {"changed": self.changed[node] / n}
            if domain.is_discrete:
                entry["counterfactual"] = {str(domain.decode(k)): c / n for k, c in enumerate(self.counts[node]) if c}
            else:
                mean = self.moments[node][0] / n
                entry["counterfactual"] = {"mean": mean, "sd": float(np.sqrt(max(self.moments[node][1] / n - mean**2, 0.0)))}
            labels[node] = entry
        out = {"units": self.units, "seconds": seconds, "images_per_s": self.units / max(seconds, 1e-9), "labels": labels}
        if self.metric is not None:
            out["fidelity"] = {self.metric: self.total / n, "worst": {self.metric: self.sign * self.worst[0], "index": self.worst[1]}}
            if self.metric == "iou":
                out["fidelity"]["above_0.9"] = self.above / n
        return out


def unpack(packed: np.ndarray, shape) -> np.ndarray:
    """Binary images from the archive's ``images`` (packed along the last axis) as uint8 0/1 arrays of ``shape``."""
    return np.unpackbits(packed, axis=-1, count=shape[-1])

