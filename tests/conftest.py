"""Shared fixtures: the repository root, the team's reference data, small DAGs, ranks started by torchrun."""

import os
import uuid
from pathlib import Path

import pytest
import torch
from torch.distributed.launcher.api import elastic_launch
from torch.distributed.run import config_from_args, get_args_parser

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
    """``fn(*args)`` in ``nproc`` ranks started by torchrun's own agent (torch.distributed.run), each rank's return value.

    The ranks are forked from this process, whose imports are warm: seconds, where a cold start
    of torch and Pyro in each process takes ten. A failed rank is torchrun's ChildFailedError.
    """
    options = [f"--nproc-per-node={nproc}", "--rdzv-backend=c10d", "--rdzv-endpoint=localhost:0", f"--rdzv-id={uuid.uuid4()}",
               "--start-method=fork", "--monitor-interval=0.1", "unused"]  # what --standalone sets, for a function
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as conftest.py's torch threads (torchrun warns when it sets it)
    config, _, _ = config_from_args(get_args_parser().parse_args(options))
    return elastic_launch(config, fn)(*args)
