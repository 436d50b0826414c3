"""Where tensors live: the device a command asked for, and the CPU settings training wants."""

from __future__ import annotations

import ctypes
import sys

import torch

from engine.errors import CqError


def pick_device(name: str) -> torch.device:
    """auto: CUDA when available, else the CPU; cuda without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise CqError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise CqError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False); use --device cpu")
    return torch.device(name)


def tune_cpu(threads: int) -> None:
    """Set torch's CPU threads, and keep freed memory in glibc's heap instead of unmapping it.

    A training step allocates and frees the same few megabytes again and again; by default
    glibc returns such blocks to the kernel, and faulting them back in cost half the CPU time.
    """
    if threads > 0:
        torch.set_num_threads(threads)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD: its largest value
            libc.mallopt(-1, 1024 * 1024 * 1024)  # M_TRIM_THRESHOLD
        except (OSError, AttributeError):
            pass
