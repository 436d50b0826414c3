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
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.model.dag import DagSpec, load_dag, parse_dag
from engine.errors import CheckpointError, CqError
from engine.files import read_marked, write_atomic
from engine.model.scm import SCM, build_scm

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
    return state


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
    scm = build_scm(dag)
    load_weights(scm, state, path)
    for m in scm.mechanisms.values():
        if isinstance(m, torch.nn.Module):
            m.eval()
    return dag, scm.to(device)


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write ``state`` with this format's marker to ``path`` atomically: a crash leaves the old file or the new one."""
    return write_atomic(path, lambda f: torch.save({"format": FORMAT, "version": VERSION, **state}, f))
