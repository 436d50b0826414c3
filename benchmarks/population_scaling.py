"""Population counterfactuals at scale: images/s and peak memory of one selection's answer in 1 and 2 processes.

    python benchmarks/population_scaling.py [--model runs/dsprites] [--selection "dsprites[shape=heart]"]
                                            [--procs 1,2] [--quick] [--json]

Each run is ``cq query FILE --model M --nproc N`` in a fresh process (torchrun's ranks under
it for N > 1), the file holding one statement, ``given SELECTION, do(shape=square)``, with one
torch thread a process (``OMP_NUM_THREADS=1``: else one process alone would use every core,
and the efficiency would compare N cores with N processes of one).
images/s is the answer's own figure (its summary: every selected unit's counterfactual, from
the first block to the archive closed, model loading excluded); peak memory is the largest
resident set of any one process of the run. A smaller selection (``--small``, an eighth of
the hearts) is answered too, in one process: the same peak for an eighth of the units is what
"memory stays flat" means. Each run's archive is compared with the one-process run's, byte
for byte. The efficiency is N-process images/s / (N x 1-process images/s); on a machine with
fewer free cores than processes it cannot reach 1. Without a trained model at --model, the
DAG's untrained image mechanism is trained for one tiny epoch first (the network, and so the
cost, is the same).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEASURE = "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)"


def answer(model: str, statement: str, procs: int, folder: Path) -> dict:
    """One ``cq query`` run of ``statement``: its summary record, the archive's path and the peak resident MiB."""
    query = folder / "population.cq"
    query.write_text(statement + "\n")
    out = folder / f"out_{procs}_{abs(hash(statement)) % 10**8}"
    command = [sys.executable, "-c", MEASURE, sys.executable, str(ROOT / "cli.py"), "query", str(query), "--model", model,
               "--out", str(out), "--json", "--nproc", str(procs)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
    if result.returncode != 0:
        raise SystemExit(f"population_scaling: {' '.join(command[3:])} failed:\n{result.stderr[-2000:]}")
    record = json.loads(result.stdout.strip().splitlines()[-1])
    peak_kib = int(result.stderr.strip().splitlines()[-1])
    return record | {"peak_mib": peak_kib / 1024, "archive": Path(record["npz"])}


def ensure_model(model: str, folder: Path) -> str:
    if (Path(model) / "model.pt").exists() or Path(model).is_file():
        return model
    run = folder / "tiny"
    subprocess.run([sys.executable, str(ROOT / "cli.py"), "train", "--out", str(run), "--n", "2000", "--epochs", "1"], cwd=ROOT,
                   check=True, capture_output=True)
    return str(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/dsprites")
    parser.add_argument("--selection", default="dsprites[shape=heart]", help="245,760 units: every heart")
    parser.add_argument("--procs", default="1,2")
    parser.add_argument("--small", default="dsprites[shape=heart, x<0.1]", help="a smaller selection, for the memory: 30,720 hearts")
    parser.add_argument("--quick", action="store_true", help="dsprites[shape=heart, scale=1.0] (40,960 units) and an eighth of it")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    selection = "dsprites[shape=heart, scale=1.0]" if args.quick else args.selection
    procs = [int(p) for p in args.procs.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = ensure_model(args.model, folder)
        runs = {p: answer(model, f"given {selection}, do(shape=square)", p, folder) for p in procs}
        smaller = "dsprites[shape=heart, scale=1.0, x<0.1]" if args.quick else args.small
        small = answer(model, f"given {smaller}, do(shape=square)", 1, folder)
        one = runs[procs[0]]["archive"].read_bytes()
        rows = [{"processes": p, "units": r["units"], "images_per_s": r["images_per_s"], "seconds": r["seconds"],
                 "peak_mib": r["peak_mib"], "identical": r["archive"].read_bytes() == one,
                 "efficiency": r["images_per_s"] / (p / procs[0] * runs[procs[0]]["images_per_s"])} for p, r in runs.items()]
        result = {"model": model, "selection": selection, "rows": rows,
                  "small": {"selection": smaller, "units": small["units"], "peak_mib": small["peak_mib"]},
                  "iou": runs[procs[0]].get("fidelity", {}).get("iou")}
    if args.json:
        print(json.dumps(result))
        return
    print(f"given {selection}, do(shape=square) with {model}")
    print(f"{'processes':>9} {'units':>9} {'images/s':>9} {'seconds':>8} {'peak MiB':>9} {'efficiency':>10}  same bytes as 1 process")
    for r in rows:
        print(f"{r['processes']:>9} {r['units']:>9,} {r['images_per_s']:>9,.0f} {r['seconds']:>8.1f} {r['peak_mib']:>9.0f} {r['efficiency']:>10.2f}  {r['identical']}")
    t = result["small"]
    print(f"smaller, {t['selection']}: {t['units']:,} units, peak {t['peak_mib']:.0f} MiB in 1 process")


if __name__ == "__main__":
    main()
