"""Shared fixtures: the repository root, the team's reference data, small DAGs, ranks started by torchrun."""

import os
from pathlib import Path

import pytest
import torch

from engine.distributed import fork_ranks

# The tests run small tensors; one thread avoids spin-waiting when the CPU is shared.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture
def write_dag(tmp_path):
    """Write DAG text to a file and return its path."""

    def write(text: str, name: str = "dag.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def torchrun(fn, *args, nproc: int = 2) -> dict:
    """``fn(*args)`` in ``nproc`` ranks forked from this process by torchrun's agent (engine.distributed.fork_ranks)."""
    return fork_ranks(fn, *args, nproc=nproc)
