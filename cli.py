"""The ``cq`` command line: argparse wiring only; the work happens in ``engine``.

Run as ``cq ...`` once installed, or as ``python cli.py ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# Transparent huge pages for PyTorch's large CPU tensors (a batch of 4,096 images is 67 MB):
# faulting one in 4 KB pages took longer than filling it. PyTorch reads this at its first
# CPU allocation, so it is set before torch or pyro is imported; THP_MEM_ALLOC_ENABLE=0 opts out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from engine import limits  # noqa: E402
from engine.errors import CqError  # noqa: E402

DEFAULT_DAG = "dags/dsprites.yaml"  # the DAG of commands given none (cq data, cq train)
DEFAULT_RUN = "runs/dsprites"  # the run folder of commands given none (cq train, query, eval, train-oracles)


def dag_show(args) -> None:
    from engine.model.dag import load_dag
    from engine.model.scm import build_scm

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
    from engine.images import grid, save_png
    from engine.model.dag import load_dag
    from engine.worlds.dsprites import data
    from engine.outputs import check_writable_file, prepare_output
    from engine.worlds.world import build_world

    out = check_writable_file(args.out)
    preview = out.with_suffix(".png")
    if out.suffix.lower() == ".png":
        raise CqError(f"{out}: the labels would be overwritten by their preview, which is written beside them as "
                      f"{preview.name}; give the labels an .npz name, e.g. --out {out.with_suffix('.npz')}")
    dag = load_dag(args.dag)
    world = build_world(dag)
    if world.name != "dsprites":
        raise CqError(f"{args.dag}: the {world.name} world's data are its own units, not resampled; "
                      f"'cq data check --dag {args.dag}' tests them and 'cq train' trains on them")
    with prepare_output(out.parent, f"data resample {out.name}") as output:
        files = output.path(out.name), output.path(preview.name)  # refused here, before the work, if either is not ours
        labels = data.resample(dag, args.n, args.seed)
        data.save(labels, files[0])
        print(data.summary(labels, dag))
        save_png(grid(world.images(world.units(labels.index[:64]))), files[1], scale=2)
    print(f"\nwrote {out} and a preview of the first 64 images at {preview}")


def data_check(args) -> None:
    from engine.causal import faithfulness
    from engine.model.dag import load_dag
    from engine.model.scm import build_scm
    from engine.worlds.dsprites import data
    from engine.worlds.world import build_world

    dag = load_dag(args.dag)
    if args.data:
        labels = data.load(args.data)
        if labels.dag_hash != dag.hash:
            raise CqError(f"{args.data}: was resampled from another DAG than {args.dag}; resample it again")
        labels = labels.labels
    else:
        labels = build_world(dag).sample(args.n, args.seed).labels
    scm = build_scm(dag, dag.labels, world=True)
    statements = faithfulness.check(scm, {n: labels[n] for n in dag.labels})
    print(faithfulness.table(statements))
    failed = [s for s in statements if not s.passed]
    print(f"\n{len(statements) - len(failed)} of {len(statements)} statements hold (alpha {faithfulness.ALPHA:g})")
    if failed:
        raise CqError(f"{args.data or args.dag}: the labels are not faithful to the DAG: " + "; ".join(s.text for s in failed))


#: the files ``cq train`` writes in its run folder
TRAIN_FILES = ("model.pt", "report.json", "report.md", "reconstructions.png", "traversals.png")


def train_command(args) -> None:
    from engine.learn.checkpoint import checkpoint_path
    from engine.learn.train import TrainConfig, train
    from engine.outputs import check_writable, prepare_output

    config = TrainConfig(**{k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None})
    check_writable(config.out)
    model = checkpoint_path(config.out)
    if model.exists() and not (args.resume or args.force):
        raise CqError(f"{model}: a trained model is already there; --resume continues its run, --force replaces it "
                      f"(and may be of another DAG), or choose another --out")
    from engine import distributed

    if args.nproc > 1 and not distributed.launched():  # this process becomes torchrun's launcher of N trainers
        options = distributed.command_line(vars(args), drop=("nproc", "run", "command"))
        return distributed.launch(args.nproc, os.path.abspath(__file__), ["train", *options])
    if distributed.env_rank() > 0:  # under torchrun: rank 0 alone keeps the folder's manifest, writes and prints
        train(config)
        return
    with prepare_output(config.out, "train", force=args.resume or args.force) as output:
        for name in TRAIN_FILES:
            output.path(name)
        report = train(config)
    for name, m in report["test"].items():
        print(f"{name}: test neg ELBO {m['neg_elbo']:.2f} nats/image, IoU {m['iou']:.4f}, "
              f"pixel accuracy {m['pixel_accuracy']:.4f}, decoder {m['decoder_images_per_s']:,.0f} images/s")
    print(f"wrote {config.out}/model.pt, report.json, report.md, reconstructions.png and traversals.png")


def dag_draw(args) -> None:
    from engine.model.dag import load_dag
    from engine.model.picture import draw
    from engine.outputs import check_writable_file, prepare_output

    out = check_writable_file(args.out)
    dag = load_dag(args.file)
    with prepare_output(out.parent, f"dag draw {out.name}") as output:
        print(f"wrote {draw(dag, output.path(out.name))}")


def query_command(args) -> None:
    import torch

    from engine import distributed
    from engine.causal import inference
    from engine.query import report
    from engine.query.answers import NumericAnswer, PopulationAnswer
    from engine.lang import parse_file
    from engine.query.runner import Runner
    from engine.outputs import answer_folders, check_writable, prepare_output
    from engine.worlds.world import build_world

    check_writable(args.out)
    folders = answer_folders(args.out, args.files)
    if args.nproc > 1 and not distributed.launched():  # this process becomes torchrun's launcher of N answerers
        options = distributed.command_line(vars(args), drop=("nproc", "run", "command", "files"))
        return distributed.launch(args.nproc, os.path.abspath(__file__), ["query", *options, *args.files], "answering")
    if args.model is None and args.dag is not None:  # the DAG alone: its declared label mechanisms, no image model
        from engine.model.dag import load_dag
        from engine.model.scm import build_scm

        dag = load_dag(args.dag)
        scm = build_scm(dag, dag.labels, world=True)
        oracles = None
    else:
        from engine.learn.checkpoint import load_model

        model = args.model or DEFAULT_RUN
        dag, scm = load_model(model, dag=args.dag)
        oracles = build_world(dag).oracles(model)
    world = build_world(dag)
    ranks, _ = distributed.join(torch.device("cpu"))  # under torchrun: selections are shared out, rank 0 writes
    if not ranks.main:
        for path in args.files:
            inference.seed(args.seed)
            with torch.no_grad():
                Runner(scm, parse_file(path), world=world, oracles=oracles, ranks=ranks).run()
        return ranks.leave()
    with prepare_output(args.out, "query") as output:  # replaces only the answers an earlier cq query wrote
        place = lambda p: output.path(os.path.relpath(os.path.abspath(p), os.path.abspath(output.folder)))  # noqa: E731
        for path, out in zip(args.files, folders):
            program = parse_file(path)
            inference.seed(args.seed)
            out.mkdir(parents=True, exist_ok=True)
            with torch.no_grad():
                answers = Runner(scm, program, world=world, oracles=oracles, ranks=ranks, scratch=out).run()
            for answer, record in zip(answers, report.write(answers, out, place)):
                if args.json:
                    print(json.dumps(record))
                elif isinstance(answer, NumericAnswer):
                    chart = f"\n    chart {record['chart']}" if "chart" in record else ""
                    print(f"{path}:{record['line']}: {report.line(answer)}{chart}")
                elif isinstance(answer, PopulationAnswer):
                    print(f"{path}:{record['line']}: {report.population_line(answer)}\n    {record['npz']}, {record['summary']}, {record.get('examples', '-')}")
                else:
                    print(f"{path}:{record['line']}: {record['statement']}\n    {len(record['samples'])} {record['kind']} sample(s); panel {record.get('panel', '-')}")
    ranks.leave()


def eval_command(args) -> None:
    import numpy as np
    import torch

    from engine import distributed, evaluate
    from engine.learn.checkpoint import checkpoint_path, load_model
    from engine.images import grid, save_png
    from engine.outputs import prepare_output
    from engine.worlds.world import build_world

    if args.nproc > 1 and not distributed.launched():  # this process becomes torchrun's launcher of N evaluators
        options = distributed.command_line(vars(args) | {"n": "all" if args.n is None else args.n}, drop=("nproc", "run", "command"))
        return distributed.launch(args.nproc, os.path.abspath(__file__), ["eval", *options], "evaluating")
    dag, scm = load_model(args.model)
    world = build_world(dag)
    oracles = world.oracles(args.model)
    ranks, _ = distributed.join(torch.device("cpu"))  # under torchrun: the units are shared out, rank 0 merges and writes
    if not ranks.main:
        with torch.no_grad():
            evaluate.run(scm, world, n=args.n, seed=args.seed, oracles=oracles, ranks=ranks)
        return ranks.leave()
    with prepare_output(checkpoint_path(args.model).parent, "eval") as output:  # the picture goes beside the model
        picture = output.path("eval_samples.png")  # refused here, before the work, if it is not cq's
        with torch.no_grad():
            results, evaluation = evaluate.run(scm, world, n=args.n, seed=args.seed, oracles=oracles, out=output, ranks=ranks)
        shown = evaluate.families(scm, world)[1:5]
        results["picture"] = str(picture)
        # the figures first: a picture that fails to draw does not lose an evaluation of the whole split
        print(json.dumps(results) if args.json else evaluate.table(results), flush=True)
        rows = [evaluation.samples(f) for f in shown]
        scale = 255 if dag.nodes[dag.images[0]].domain.levels() > 2 else 1  # gray levels shown as gray
        save_png(grid(np.concatenate([np.concatenate(r) for r in rows]) / scale, columns=8), picture, scale=2)
    ranks.leave()
    if args.json:
        return
    if oracles is None:
        print(f"\n(no pseudo-oracles beside the model: run 'cq train-oracles --model {args.model}' for effectiveness)")
    print(f"\nrows of {picture}: inputs, counterfactuals, ground truth, in threes for {', '.join(f.name for f in shown)}")


def train_oracles_command(args) -> None:
    from engine.learn.checkpoint import checkpoint_path, read_checkpoint
    from engine.outputs import check_writable, prepare_output
    from engine.worlds.dsprites.oracles import FILENAME, OracleConfig, train_oracles

    read_checkpoint(args.model)  # the oracles sit beside a trained model
    folder = checkpoint_path(args.model).parent
    check_writable(folder, flag="--model")
    config = OracleConfig(**{k: v for k, v in vars(args).items() if k in OracleConfig.__dataclass_fields__ and v is not None})
    with prepare_output(folder, "train-oracles", force=True) as output:  # retraining them is what the command is for
        output.path(FILENAME)
        result = train_oracles(folder, config)
    print(f"trained in {result['train_seconds']:.0f} s; on {result['metrics']['eval_n']:,} fresh rendered images:")
    for name, value in result["metrics"].items():
        if name != "eval_n":
            print(f"  {name:<26} {value:.4f}")


def whole(low: int, high: int):
    """An argparse type: a whole number from ``low`` to ``high`` (written 200000, 200_000 or 2e5)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            try:
                number = float(text)
                value = int(number) if number.is_integer() else None
            except (ValueError, OverflowError):
                value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low} (at most {high:,}), got {text!r}")
        return value

    return parse


positive = whole(1, limits.MAX_UNITS)  # a count of units
images = whole(1, limits.MAX_IMAGES)  # a count of images held in memory at once


def units_or_all(text: str) -> int | None:
    """An argparse type: a count of units, or 'all' (None)."""
    return None if text == "all" else images(text)


seed = whole(0, limits.MAX_SEED)
epochs = whole(1, limits.MAX_EPOCHS)
batch = whole(1, limits.MAX_BATCH)
workers = whole(0, limits.MAX_WORKERS)
threads = whole(0, limits.MAX_THREADS)


def output_path(text: str) -> str:
    """An argparse type: a path that is not empty (an empty --out would write into the current folder)."""
    if not text.strip() or "\0" in text:
        raise argparse.ArgumentTypeError(f"expected a path, got {text!r}")
    return text


def above_zero(text: str) -> float:
    """An argparse type: a finite number greater than 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cq", description="Ask a causal model of images 'what if?'.")
    commands = p.add_subparsers(dest="command", required=True)

    dag = commands.add_parser("dag", help="inspect DAG files").add_subparsers(dest="action", required=True)
    show = dag.add_parser("show", help="print nodes in topological order")
    show.add_argument("file")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.set_defaults(run=dag_show)
    draw = dag.add_parser("draw", help="write a picture of the DAG")
    draw.add_argument("file")
    draw.add_argument("--out", type=output_path, default="dag.png")
    draw.set_defaults(run=dag_draw)

    data = commands.add_parser("data", help="DAG-faithful dSprites data").add_subparsers(dest="action", required=True)
    resample = data.add_parser("resample", help="draw labels from the DAG and pair them with dSprites images")
    resample.add_argument("--dag", default=DEFAULT_DAG)
    resample.add_argument("--n", type=positive, default=200_000)
    resample.add_argument("--seed", type=seed, default=0)
    resample.add_argument("--out", type=output_path, default="runs/data/dsprites.npz",
                          help="the labels (.npz); a preview PNG of the same name is written beside them")
    resample.set_defaults(run=data_resample)
    check = data.add_parser("check", help="test the labels against every statement the DAG implies")
    check.add_argument("--dag", default=DEFAULT_DAG)
    check.add_argument("--data", help="a file from 'cq data resample' (default: resample --n labels now)")
    check.add_argument("--n", type=positive, default=200_000)
    check.add_argument("--seed", type=seed, default=0)
    check.set_defaults(run=data_check)

    from engine.learn.train import TrainConfig

    d = TrainConfig(dag=DEFAULT_DAG, out=DEFAULT_RUN)
    train = commands.add_parser("train", help="fit the DAG's learnable mechanisms (the image decoder) with SVI")
    train.add_argument("--dag", default=d.dag, help=f"the DAG file (default {d.dag})")
    train.add_argument("--out", type=output_path, default=d.out, help=f"run folder for model.pt and the report (default {d.out})")
    train.add_argument("--epochs", type=epochs, help=f"passes over the training units (default {d.epochs})")
    train.add_argument("--n", type=positive, help=f"units resampled from the DAG, test units dropped (default {d.n:,})")
    train.add_argument("--batch-size", type=batch, help=f"units per SVI step (default {d.batch_size})")
    train.add_argument("--lr", type=above_zero, help=f"Adam's initial learning rate, cosine-decayed (default {d.lr:g})")
    train.add_argument("--seed", type=seed, help=f"default {d.seed}")
    train.add_argument("--eval-n", type=images, help=f"held-out units scored in the training report (default {d.eval_n:,})")
    train.add_argument("--device", choices=["auto", "cpu", "cuda"], help="auto picks CUDA when available (default auto)")
    train.add_argument("--workers", type=workers, help=f"DataLoader worker processes (default {d.workers})")
    train.add_argument("--threads", type=threads, help=f"torch CPU threads, 0 for torch's default (default {d.threads})")
    train.add_argument("--minutes", type=above_zero, help="time budget for training; the learning rate schedule follows it")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last saved epoch "
                       "(its checkpoint fixes --n, --batch-size, --lr and --seed)")
    train.add_argument("--force", action="store_true", help="replace a model already in --out (without it, cq train refuses)")
    train.add_argument("--nproc", type=whole(1, limits.MAX_WORKERS), default=1,
                       help="data-parallel training processes on this machine, started with torchrun (default 1)")
    train.set_defaults(run=train_command)
    query = commands.add_parser("query", help="answer the statements of .cq files with a trained model, or label questions with a DAG")
    query.add_argument("files", nargs="+", metavar="FILE.cq")
    query.add_argument("--model", help=f"a run folder or checkpoint file (default {DEFAULT_RUN}, unless --dag is given alone)")
    query.add_argument("--dag", help="with --model: refuse unless the model was trained on this DAG file; "
                                     "alone: answer label-only statements from the DAG's declared mechanisms")
    query.add_argument("--out", type=output_path, default="runs/answers", help="folder for PNG panels, images and distribution charts")
    query.add_argument("--json", action="store_true", help="print one JSON object per statement")
    query.add_argument("--seed", type=seed, default=0)
    query.add_argument("--nproc", type=whole(1, limits.MAX_WORKERS), default=1,
                       help="answer selections (NAME[...]) in N processes on this machine, through torchrun")
    query.set_defaults(run=query_command)

    evaluation = commands.add_parser("eval", help="measure counterfactuals against the renderer's ground truth")
    evaluation.add_argument("--model", default=DEFAULT_RUN)
    evaluation.add_argument("--n", type=units_or_all, default=2000, help="held-out units per family, or 'all': every unit of the test split")
    evaluation.add_argument("--nproc", type=whole(1, limits.MAX_WORKERS), default=1,
                            help="share the units out among N processes on this machine, through torchrun")
    evaluation.add_argument("--seed", type=seed, default=0)
    evaluation.add_argument("--json", action="store_true")
    evaluation.set_defaults(run=eval_command)

    oracles = commands.add_parser("train-oracles", help="train the pseudo-oracle classifiers beside a model")
    oracles.add_argument("--model", default=DEFAULT_RUN)
    oracles.add_argument("--seed", type=seed)
    oracles.add_argument("--device", choices=["auto", "cpu", "cuda"])
    oracles.add_argument("--epochs", type=epochs)
    oracles.add_argument("--n", type=images, help="uniformly random dSprites images to train on")
    oracles.add_argument("--threads", type=threads, help="torch CPU threads (default 1; 0 keeps torch's default)")
    oracles.set_defaults(run=train_oracles_command)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; user errors, Ctrl-C and a closed pipe end it with a message or quietly, never a traceback.

    Parsing sits inside the handlers too: it imports torch (seconds), and a Ctrl-C then is an
    interruption like any other.
    """
    try:
        args = parser().parse_args(argv)
        args.run(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
    except CqError as e:
        print(f"cq: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cq: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. cq dag show ... | head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to write; quiet at exit
        return 141  # 128 + SIGPIPE, as a shell reports a command stopped by a closed pipe
    return 0


if __name__ == "__main__":
    sys.exit(main())
