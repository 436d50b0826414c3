"""One self-describing checkpoint file per run, and the trained SCM rebuilt from it.

The file is a dict of tensors and plain Python values only, so it loads with
``torch.load(path, weights_only=True)`` and never unpickles code::

    {"format": "causal-query-checkpoint", "version": 1,
     "dag": {"name", "path", "text", "hash"},        # the DAG the weights belong to
     "mechanisms": {node: {"mechanism", "config", "state_dict"}},
     "optimizer": {...},                              # the Adam state_dict (engine.learn.svi)
     "config": {...},                                 # the training config
     "epoch": 3, "step": 2100, "train_seconds": 412.0, "metrics": {...}}

It is written atomically (a temporary file in the same folder, then ``os.replace``), so a
run killed mid-write leaves the previous checkpoint intact.

A file read back is checked before any of it is used: the structure above, with the types
shown (``check_structure``); the training config's sizes against ``engine.limits``; every
floating-point tensor finite (a NaN or infinite weight names its tensor); and, before the
SCM is built, each learnable mechanism's parameter shapes, built on the meta device (no
memory), against the saved ones, so that a DAG asking for a huge network is refused
rather than allocated.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from engine import limits
from engine.model.dag import DagSpec, load_dag, parse_dag
from engine.errors import CheckpointError, CqError
from engine.files import read_marked, write_atomic
from engine.model.registry import get_mechanism
from engine.model.scm import SCM, build_scm
from engine.model.yamlfile import MAX_BYTES as MAX_DAG_BYTES

FORMAT = "causal-query-checkpoint"
VERSION = 1
FILENAME = "model.pt"


def checkpoint_path(run: str | Path) -> Path:
    """The checkpoint file of a run folder (or the file itself)."""
    run = Path(run)
    return run / FILENAME if run.is_dir() or not run.suffix else run


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load and check a checkpoint dict; a missing, truncated or foreign file is a CheckpointError."""
    path = checkpoint_path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint; train one with 'cq train --out {path.parent}'")
    state = read_marked(path, FORMAT, VERSION, kind="checkpoint", map_location=map_location)
    missing = {"dag", "mechanisms", "config", "epoch"} - set(state)
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {sorted(missing)}")
    check_structure(state, path)
    return state


def _whole(low: int, high: int):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high, f"a whole number from {low:,} to {high:,}"


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf


#: the training config's entries a resumed run takes from the file, and what each may hold
CONFIG = {
    "n": _whole(1, limits.MAX_UNITS),
    "epochs": _whole(1, limits.MAX_EPOCHS),
    "batch_size": _whole(1, limits.MAX_BATCH),
    "eval_n": _whole(1, limits.MAX_UNITS),
    "seed": _whole(0, limits.MAX_SEED),
    "workers": _whole(0, limits.MAX_WORKERS),
    "threads": _whole(0, limits.MAX_THREADS),
    "lr": (_positive, "a finite number > 0"),
    "lr_final": (_positive, "a finite number > 0"),
    "minutes": (lambda v: v is None or _positive(v), "none or a finite number > 0"),
    "dag": (lambda v: isinstance(v, str), "a string"),
    "out": (lambda v: isinstance(v, str), "a string"),
    "device": (lambda v: isinstance(v, str), "a string"),
    "resume": (lambda v: isinstance(v, bool), "true or false"),
}


def check_structure(state: dict, path: str | Path) -> None:
    """Raise CheckpointError unless ``state`` has the documented structure, types, sizes and finite weights."""

    def need(ok: bool, where: str, want: str, value) -> None:
        if not ok:
            shown = type(value).__name__ if isinstance(value, (dict, list, tuple, torch.Tensor)) else repr(value)[:60]
            raise CheckpointError(f"{path}: '{where}' must be {want}, got {shown}; the file is corrupt or was not written by 'cq train'")

    dag = state["dag"]
    need(isinstance(dag, dict), "dag", "a dict of name, path, text and hash", dag)
    for key in ("name", "path", "text", "hash"):
        need(isinstance(dag.get(key), str), f"dag.{key}", "a string", dag.get(key))
    need(len(dag["text"]) <= MAX_DAG_BYTES, "dag.text", f"a DAG of at most {MAX_DAG_BYTES:,} characters", f"{len(dag['text']):,} characters")
    mechanisms = state["mechanisms"]
    need(isinstance(mechanisms, dict), "mechanisms", "a dict of node -> {mechanism, config, state_dict}", mechanisms)
    for node, record in mechanisms.items():
        where = f"mechanisms.{node}"
        need(isinstance(node, str), "mechanisms", "keyed by node names", node)
        need(isinstance(record, dict), where, "a dict of mechanism, config and state_dict", record)
        need(isinstance(record.get("mechanism"), str), f"{where}.mechanism", "a mechanism name", record.get("mechanism"))
        need(isinstance(record.get("config"), dict), f"{where}.config", "a dict", record.get("config"))
        weights = record.get("state_dict")
        need(isinstance(weights, dict), f"{where}.state_dict", "a dict of tensors", weights)
        for name, tensor in weights.items():
            need(isinstance(name, str) and isinstance(tensor, torch.Tensor), f"{where}.state_dict.{name}", "a tensor", tensor)
    config = state["config"]
    need(isinstance(config, dict), "config", "a dict (the training config)", config)
    for key, (ok, want) in CONFIG.items():
        if key in config:
            need(ok(config[key]), f"config.{key}", want, config[key])
    need(_whole(0, 2**62)[0](state["epoch"]), "epoch", "a whole number >= 0", state["epoch"])
    if "step" in state:
        need(_whole(0, 2**62)[0](state["step"]), "step", "a whole number >= 0", state["step"])
    if "train_seconds" in state:
        need(state["train_seconds"] == 0 or _positive(state["train_seconds"]), "train_seconds", "a finite number >= 0", state["train_seconds"])
    for key in ("optimizer", "metrics"):
        if state.get(key) is not None:
            need(isinstance(state[key], dict), key, "a dict", state[key])
    check_finite(path, {"mechanisms": mechanisms, "optimizer": state.get("optimizer") or {}})


def check_finite(path: str | Path, tree, where: str = "") -> None:
    """Raise CheckpointError at the first floating-point tensor in ``tree`` (dicts, lists) holding a NaN or an infinity."""
    if isinstance(tree, torch.Tensor):
        if (tree.is_floating_point() or tree.is_complex()) and not bool(torch.isfinite(tree).all()):
            bad = "NaN" if bool(torch.isnan(tree).any()) else "infinite"
            raise CheckpointError(f"{path}: the tensor '{where}' holds {bad} values; the run diverged or the file is corrupt: "
                                  "train again (a lower --lr may help)")
    elif isinstance(tree, dict):
        for key, value in tree.items():
            check_finite(path, value, f"{where}.{key}" if where else str(key))
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            check_finite(path, value, f"{where}[{i}]")


def check_dag(state: dict, dag: DagSpec, path: str | Path) -> None:
    """Raise CheckpointError unless the checkpoint was trained on exactly this DAG text."""
    saved = state["dag"]
    if saved["hash"] != dag.hash:
        raise CheckpointError(
            f"{checkpoint_path(path)}: trained on DAG '{saved['name']}' ({saved['path']}, sha256 {saved['hash'][:12]}), "
            f"which differs from {dag.path} (sha256 {dag.hash[:12]}); retrain on it, or load the checkpoint without a DAG to use its own"
        )


def dag_record(dag: DagSpec) -> dict:
    """The DAG as the checkpoint stores it."""
    return {"name": dag.name, "path": dag.path, "text": dag.text, "hash": dag.hash}


def mechanism_records(scm: SCM) -> dict:
    """Weights and config of every learnable mechanism, as plain values and tensors."""
    return {
        name: {"mechanism": m.node.mechanism, "config": dict(getattr(m, "config", {})), "state_dict": m.state_dict()}
        for name, m in scm.mechanisms.items()
        if m.learnable
    }


def load_weights(scm: SCM, state: dict, path: str | Path) -> None:
    """Copy the saved weights into the SCM's learnable mechanisms."""
    for name, m in scm.mechanisms.items():
        if not m.learnable:
            continue
        record = state["mechanisms"].get(name)
        if record is None:
            raise CheckpointError(f"{checkpoint_path(path)}: has no weights for the learnable node '{name}'")
        try:
            m.load_state_dict(record["state_dict"])
        except RuntimeError as e:
            raise CheckpointError(f"{checkpoint_path(path)}: weights for node '{name}' do not fit its network: {str(e).splitlines()[0]}") from None


def check_shapes(dag: DagSpec, state: dict, path: str | Path) -> None:
    """Raise CheckpointError unless each learnable node's saved weights have the shapes its mechanism, built on the meta device, has.

    Nothing is allocated: a DAG whose networks would not fit in memory is refused here
    rather than built. A mechanism that cannot be built on the meta device is checked after
    it is built, by ``load_weights``.
    """
    for name in dag.order:
        spec = dag.nodes[name]
        cls = get_mechanism(spec.mechanism, dag.where(name))
        if not getattr(cls, "learnable", False):
            continue
        record = state["mechanisms"].get(name)
        if record is None:
            raise CheckpointError(f"{checkpoint_path(path)}: has no weights for the learnable node '{name}'")
        try:
            with torch.device("meta"):
                probe = cls(spec, {p: dag.nodes[p].domain for p in spec.parents}, path=dag.path)
            want = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
        except CqError:
            return  # build_scm raises it again, with its own message
        except Exception:  # noqa: BLE001 -- a plugin that computes on tensors while it is built
            continue
        saved = {k: tuple(v.shape) for k, v in record["state_dict"].items()}
        if want != saved:
            missing, unexpected = sorted(set(want) - set(saved)), sorted(set(saved) - set(want))
            differ = [k for k in want if k in saved and want[k] != saved[k]]
            detail = (f"'{differ[0]}' is {list(saved[differ[0]])} in the file, {list(want[differ[0]])} in the DAG" if differ else
                      f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(unexpected[:3])}")
            raise CheckpointError(f"{checkpoint_path(path)}: weights for node '{name}' do not fit its network ({detail}); "
                                  "the checkpoint and its DAG disagree: train the DAG again")


def load_model(run: str | Path, dag: DagSpec | str | Path | None = None, device="cpu") -> tuple[DagSpec, SCM]:
    """The DAG and an SCM with trained mechanisms from a run folder or checkpoint file.

    Without ``dag`` the DAG is rebuilt from the checkpoint's own text; with one, its hash
    must match the checkpoint's.
    """
    path = checkpoint_path(run)
    state = read_checkpoint(path)
    if dag is None:
        try:
            dag = parse_dag(state["dag"]["text"], state["dag"]["path"])
        except CqError as e:
            raise CheckpointError(f"{path}: its DAG no longer builds: {e}") from None
    elif not isinstance(dag, DagSpec):
        dag = load_dag(dag)
    check_dag(state, dag, path)
    check_shapes(dag, state, path)
    scm = build_scm(dag)
    load_weights(scm, state, path)
    for m in scm.mechanisms.values():
        if isinstance(m, torch.nn.Module):
            m.eval()
    return dag, scm.to(device)


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write ``state`` with this format's marker to ``path`` atomically: a crash leaves the old file or the new one."""
    return write_atomic(path, lambda f: torch.save({"format": FORMAT, "version": VERSION, **state}, f))
