"""A plugin-based causal query engine over YAML-declared structural causal models."""

import os

# Transparent huge pages for PyTorch's large CPU tensors (a batch of 4,096 images is 67 MB):
# faulting such a tensor in 4 KB pages took longer than filling it. PyTorch reads this
# variable at its first large allocation; set it to 0 to opt out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
