"""How fast the dSprites renderer draws the whole data set (or ``--n`` images), batch by batch.

    python benchmarks/render_speed.py [--n N] [--batch-size B] [--threads T] [--packed]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.worlds.dsprites import render as dsprites  # noqa: E402


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=dsprites.N_IMAGES, help="images to draw (default: all 737,280)")
    parser.add_argument("--batch-size", type=int, default=16384)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--packed", action="store_true", help="also build the bit-packed set with render_all_packed()")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    index = np.arange(min(args.n, dsprites.N_IMAGES))
    if not args.json:
        print(f"rendering {len(index):,} images in batches of {args.batch_size:,} on {torch.get_num_threads()} thread(s)")
    start, cpu, on = time.perf_counter(), time.process_time(), 0
    for _, imgs in dsprites.iter_batches(index, args.batch_size):
        on += np.count_nonzero(imgs)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if args.json:
        print(json.dumps({"images": len(index), "seconds": seconds, "images_per_s": len(index) / seconds,
                          "threads": torch.get_num_threads(), "peak_mib": peak_rss_mib()}))
        return
    print(f"{seconds:.2f} s ({cpu:.2f} s of CPU), {len(index) / seconds:,.0f} images/s, "
          f"mean {on / max(len(index), 1):.1f} pixels on, peak memory {peak_rss_mib():,.0f} MiB")
    if args.packed:
        start = time.perf_counter()
        packed = dsprites.render_all_packed(args.batch_size)
        seconds = time.perf_counter() - start
        print(f"render_all_packed: {seconds:.2f} s, {packed.nbytes / 2**20:,.0f} MiB packed, "
              f"peak memory {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
