"""How fast the pendulum renderer draws ``--n`` random label tuples (default 100,000), batch by batch.

    python benchmarks/pendulum_render_speed.py [--n N] [--batch-size B] [--chunk C] [--json]
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

from plugins.pendulum import render as pendulum  # noqa: E402


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=4096, help="images per render() call")
    parser.add_argument("--chunk", type=int, default=512, help="images per vectorised step inside render()")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    (lo_p, hi_p), (lo_l, hi_l) = pendulum.RANGES["pendulum"], pendulum.RANGES["light"]
    angle, light = rng.uniform(lo_p, hi_p, args.n), rng.uniform(lo_l, hi_l, args.n)
    shadow_x, shadow_len = pendulum.shadow(angle, light)
    pendulum.render(angle[:64], light[:64], shadow_x[:64], shadow_len[:64])  # warm up
    if not args.json:
        print(f"rendering {args.n:,} images in batches of {args.batch_size:,} (single-threaded numpy)")
    start, cpu, on = time.perf_counter(), time.process_time(), 0
    for s in range(0, args.n, args.batch_size):
        part = slice(s, s + args.batch_size)
        imgs = pendulum.render(angle[part], light[part], shadow_x[part], shadow_len[part], chunk=args.chunk)
        on += np.count_nonzero(imgs)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if args.json:
        print(json.dumps({"images": args.n, "seconds": seconds, "images_per_s": args.n / seconds,
                          "peak_mib": peak_rss_mib()}))
        return
    print(f"{seconds:.2f} s ({cpu:.2f} s of CPU), {args.n / seconds:,.0f} images/s, "
          f"mean {on / max(args.n, 1):.1f} pixels on, peak memory {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
