"""The ``cq`` command line: argparse wiring only; the work happens in ``engine``.

Run as ``cq ...`` once installed, or as ``python cli.py ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.errors import CqError

DEFAULT_DAG = "dags/dsprites.yaml"


def dag_show(args) -> None:
    from engine.dag import load_dag
    from engine.scm import build_scm

    dag = load_dag(args.file)
    build_scm(dag)  # validates every mechanism and its parameters
    nodes = [
        {"name": n, "parents": list(dag.nodes[n].parents), "mechanism": dag.nodes[n].mechanism, "domain": dag.nodes[n].domain.describe()}
        for n in dag.order
    ]
    if args.json:
        print(json.dumps({"name": dag.name, "description": dag.description, "hash": dag.hash, "nodes": nodes}, indent=2))
        return
    print(f"{dag.name}: {dag.description}\n")
    print(f"{'node':<12} {'parents':<36} {'mechanism':<20} domain")
    for n in nodes:
        print(f"{n['name']:<12} {', '.join(n['parents']) or '-':<36} {n['mechanism']:<20} {n['domain']}")


def data_resample(args) -> None:
    from engine import data, dsprites
    from engine.dag import load_dag
    from engine.images import grid, save_png

    dag = load_dag(args.dag)
    labels = data.resample(dag, args.n, args.seed)
    data.save(labels, args.out)
    print(data.summary(labels, dag))
    preview = Path(args.out).with_suffix(".png")
    save_png(grid(data.images(labels.index[:64], npz=dsprites.npz_path(args.dsprites_npz))), preview, scale=2)
    print(f"\nwrote {args.out} and a preview of the first 64 images at {preview}")


def data_check(args) -> None:
    from engine import data, faithfulness
    from engine.dag import load_dag
    from engine.scm import build_scm

    dag = load_dag(args.dag)
    labels = data.load(args.data) if args.data else data.resample(dag, args.n, args.seed)
    if labels.dag_hash != dag.hash:
        raise CqError(f"{args.data}: was resampled from another DAG than {args.dag}; resample it again")
    scm = build_scm(dag, dag.labels)
    statements = faithfulness.check(scm, {n: labels.labels[n] for n in dag.labels})
    print(faithfulness.table(statements))
    failed = [s for s in statements if not s.passed]
    print(f"\n{len(statements) - len(failed)} of {len(statements)} statements hold (alpha {faithfulness.ALPHA:g})")
    if failed:
        raise CqError(f"{args.data or args.dag}: the labels are not faithful to the DAG: " + "; ".join(s.text for s in failed))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cq", description="Ask a causal model of images 'what if?'.")
    commands = p.add_subparsers(dest="command", required=True)

    dag = commands.add_parser("dag", help="inspect DAG files").add_subparsers(dest="action", required=True)
    show = dag.add_parser("show", help="print nodes in topological order")
    show.add_argument("file")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.set_defaults(run=dag_show)

    data = commands.add_parser("data", help="DAG-faithful dSprites data").add_subparsers(dest="action", required=True)
    resample = data.add_parser("resample", help="draw labels from the DAG and pair them with dSprites images")
    resample.add_argument("--dag", default=DEFAULT_DAG)
    resample.add_argument("--n", type=int, default=200_000)
    resample.add_argument("--seed", type=int, default=0)
    resample.add_argument("--out", default="runs/data/dsprites.npz")
    resample.add_argument("--dsprites-npz", help="the real dSprites npz (default: $DSPRITES_NPZ, else the built-in renderer)")
    resample.set_defaults(run=data_resample)
    check = data.add_parser("check", help="test the labels against every statement the DAG implies")
    check.add_argument("--dag", default=DEFAULT_DAG)
    check.add_argument("--data", help="a file from 'cq data resample' (default: resample --n labels now)")
    check.add_argument("--n", type=int, default=200_000)
    check.add_argument("--seed", type=int, default=0)
    check.set_defaults(run=data_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except CqError as e:
        print(f"cq: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cq: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
