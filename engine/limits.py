"""The largest sizes a user may ask for, in one place.

Command-line flags (``cli.py``) and the configs saved in checkpoints
(``engine.learn.checkpoint``) are checked against these before any work starts, so that a
typo such as ``--n 1e12`` is an error in a second rather than a swap storm an hour later.
"""

#: seeds are 32-bit: numpy's and Pyro's generators take 0 to 2**32 - 1
MAX_SEED = 2**32 - 1
#: units drawn by ``cq data resample``/``check`` and ``cq train`` (labels alone: 48 bytes a unit)
MAX_UNITS = 10_000_000
#: images rendered and held in memory at once by ``cq train-oracles`` (4 KB each) and ``cq eval`` (per family)
MAX_IMAGES = 1_000_000
#: passes over the data
MAX_EPOCHS = 100_000
#: units per optimisation step
MAX_BATCH = 65_536
#: DataLoader worker processes
MAX_WORKERS = 256
#: torch CPU threads
MAX_THREADS = 1024
#: the widest layer (and latent size) a mechanism's YAML may ask for, checked before any network is built
MAX_WIDTH = 16_384
