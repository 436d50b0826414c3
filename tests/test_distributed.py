"""Data-parallel training: N ranks on a batch split N ways take the one-process step; rank 0 alone writes; a
distributed run resumes; a failed or silent rank stops the run with a message instead of a hang."""

# gradients:  shape -> scale (a learned table) ; shape -> w (a learned MLP conditional) ;
#             scale -> d (an MLP Gaussian with a learned float64 sigma) ; shape, turn, x, y -> img (a tiny VAE)
# training:   the dSprites DAG with a tiny image network (as in test_train.py)

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyro
import pytest
import torch
import yaml
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

from engine import distributed
from engine.learn import checkpoint
from engine.distributed import Gradients, Ranks, Shard
from engine.learn.svi import SVI
from engine.learn.train import TrainConfig, train
from engine.model.dag import parse_dag
from engine.model.scm import build_scm
from tests.conftest import ROOT, torchrun

DAG = textwrap.dedent("""
    name: parts
    nodes:
      shape: {mechanism: categorical, domain: [a, b], params: {probs: [0.5, 0.5]}}
      turn: {mechanism: categorical, domain: {linspace: [0, 2pi, 4]}, params: {probs: uniform}}
      x: {mechanism: categorical, domain: {linspace: [0, 1, 3]}, params: {probs: uniform}}
      y: {mechanism: categorical, domain: {linspace: [0, 1, 3]}, params: {probs: uniform}}
      scale:
        mechanism: categorical
        parents: [shape]
        domain: {linspace: [0.5, 1, 3]}
        params: {learn: true, probs: {a: [0.6, 0.3, 0.1], b: [0.1, 0.3, 0.6]}}
      w:
        mechanism: mlp_categorical
        parents: [shape]
        domain: {linspace: [0, 1, 4]}
        params: {hidden: [8], truth: {mechanism: discretized_normal, params: {loc: {shape: {a: 0.2, b: 0.8}}, sigma: 0.3}}}
      d:
        mechanism: mlp_gaussian
        parents: [scale]
        domain: real
        params: {hidden: [8], truth: {mechanism: linear_gaussian, params: {loc: {scale: 2.0}, sigma: 0.5}}}
      img:
        mechanism: vae_decoder
        parents: [shape, turn, x, y]
        domain: {image: [16, 16]}
        params: {angles: [turn], translate: [x, y], hidden: [16], canvas: 8, latent_dim: 2, encoder_hidden: 8, pool: 4}
""")
UNITS = 63  # split 32 + 31 over two ranks
TINY = {"angles": ["orientation"], "translate": ["x", "y"], "hidden": [16], "latent_dim": 2, "encoder_hidden": 16}


# ---- the step: gradients summed over the ranks ----------------------------------------------------


BATCHES = [list(range(UNITS)), [5]]  # the second leaves rank 1 of 2 an empty slice


def two_steps(ranks: Ranks, *, init_seed: int) -> list[dict]:
    """SVI steps of every learnable node on this rank's slices of BATCHES, with the same z noise for the same unit."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    dag = parse_dag(DAG)
    with torch.no_grad():
        values = build_scm(dag)(UNITS)  # the same data on every rank
    pyro.set_rng_seed(init_seed)
    scm = build_scm(dag)  # the weights to train: rank 1 starts elsewhere, and SVI gives it rank 0's
    before = {k: v.clone() for name, m in scm.mechanisms.items() if m.learnable for k, v in m.state_dict().items()}
    learn = {name: m for name, m in scm.mechanisms.items() if m.learnable}
    svi = SVI({name: (m.model, m.guide) for name, m in learn.items()}, lr=0.01, ranks=ranks)
    eps = torch.randn(UNITS, 2, generator=torch.Generator().manual_seed(1))  # z = loc + scale * eps, eps fixed per unit
    normal, steps = torch.distributions.normal._standard_normal, []
    try:
        for rows in ranks.shard(BATCHES):
            rows = torch.as_tensor(rows, dtype=torch.long)
            torch.distributions.normal._standard_normal = lambda shape, dtype, device: eps[rows].to(dtype).expand(shape)
            part = {k: v[rows] for k, v in values.items()}
            loss = svi.step({name: (part[name], scm.parents(name, part)) for name in learn} if len(rows) else None)
            steps.append({"loss": loss, "grads": {n: p.grad.clone() for n, p in zip(svi.names, svi.params)},
                          "params": {n: p.detach().clone() for n, p in zip(svi.names, svi.params)}})
    finally:
        torch.distributions.normal._standard_normal = normal
    return [{"before": before}, *steps]


def gradient_worker() -> list[dict]:
    torch.set_num_threads(1)
    ranks, _ = distributed.join(torch.device("cpu"), seconds=60)
    result = two_steps(ranks, init_seed=ranks.rank)
    ranks.leave()
    return result


@pytest.fixture(scope="module")
def whole_batch() -> list[dict]:
    """The one-process steps on the whole batches (which also warm this process's imports for the forked ranks)."""
    return two_steps(Ranks(), init_seed=0)


def test_two_ranks_on_a_split_batch_take_the_one_process_step_on_the_whole_batch(whole_batch):
    ranks, (start, *whole) = torchrun(gradient_worker), whole_batch
    assert any(not torch.equal(ranks[1][0]["before"][k], start["before"][k]) for k in start["before"])  # rank 1 began elsewhere
    grads = whole[0]["grads"]
    assert {n.split("$$$")[0] for n in grads} == {"scale", "w", "d", "img_decoder", "img_shift", "img_encoder"}
    assert any(g.dtype == torch.float64 for g in grads.values())  # d's sigma: a second dtype in the sum
    for step, one in enumerate(whole, 1):  # the second step: one unit, on rank 0
        for r in ranks.values():
            assert r[step]["loss"] == pytest.approx(one["loss"], rel=1e-6)
            for name, g in one["grads"].items():
                assert (r[step]["grads"][name] - g).abs().max() <= 1e-5 * g.abs().max(), (step, name)
                assert torch.allclose(r[step]["params"][name], one["params"][name], rtol=0, atol=1e-6), (step, name)
        for name in one["params"]:
            assert torch.equal(ranks[0][step]["params"][name], ranks[1][step]["params"][name]), name  # the same parameters


def test_gradients_are_views_of_one_buffer_per_dtype_and_backward_marks_the_ones_it_reached():
    a, b = torch.zeros(3, requires_grad=True), torch.zeros(2, 2, requires_grad=True)
    c = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    gradients = Gradients([a, b, c])
    gradients.zero()
    (2 * a.sum() + c.sum()).backward()
    assert gradients.touched == [True, False, True]
    assert [f.tolist() for f in gradients.buffers] == [[2, 2, 2, 0, 0, 0, 0], [1.0]]  # backward wrote into the buffers
    gradients.keep(gradients.touched)
    assert b.grad is None and a.grad.data_ptr() == gradients.buffers[0].data_ptr()
    gradients.zero()  # the next step: every view back, zeroed, nothing marked
    assert b.grad is not None and a.grad.abs().sum() == 0 and gradients.touched == [False] * 3
    gradients.close()
    (a.sum()).backward()
    assert gradients.touched == [False] * 3  # the hooks are gone


def test_each_rank_takes_its_contiguous_slice_of_the_same_global_batches():
    global_batches = [list(range(i, min(i + 5, 13))) for i in range(0, 13, 5)]  # 5, 5, 3 units
    shards = [list(Shard(global_batches, rank, 4)) for rank in range(4)]
    for i, batch in enumerate(global_batches):
        assert sum((s[i] for s in shards), []) == batch  # the slices, in rank order, are the batch
        assert max(map(len, (s[i] for s in shards))) - min(map(len, (s[i] for s in shards))) <= 1
    assert [s[2] for s in shards] == [[10], [11], [12], []]  # a batch shorter than the ranks leaves one empty
    assert Ranks().shard(global_batches) is global_batches


def test_an_empty_slice_still_joins_the_step():
    pyro.clear_param_store()
    svi = SVI({"x": (lambda x: pyro.sample("x", pyro.distributions.Normal(pyro.param("mu", torch.tensor(0.0)), 1.0), obs=x),
                     lambda x: None)}, lr=0.1)
    svi.step({"x": (torch.tensor(1.0),)})
    mu = pyro.param("mu").item()
    assert svi.step(None) == 0.0 and pyro.param("mu").item() == mu  # no gradient: Adam leaves it alone


# ---- training: rank 0 writes, the run resumes, failures stop it -----------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The dSprites DAG with a tiny image network, and a two-epoch config of 6 steps an epoch."""
    folder = tmp_path_factory.mktemp("distributed")
    data = yaml.safe_load((ROOT / "dags" / "dsprites.yaml").read_text())
    data["nodes"]["img"]["params"] = TINY
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return TrainConfig(dag=str(path), out=str(folder / "whole"), n=400, epochs=2, batch_size=64, lr=0.01, eval_n=64, device="cpu")


def train_worker(config: TrainConfig) -> dict:
    """train() on this rank, counting the checkpoints and reports it writes."""
    from engine.learn import report

    writes = {"checkpoints": 0, "reports": 0}
    save, write = checkpoint.save_checkpoint, report.write

    def counted(kind, f):
        def call(*args, **kwargs):
            writes[kind] += 1
            return f(*args, **kwargs)
        return call

    checkpoint.save_checkpoint, report.write = counted("checkpoints", save), counted("reports", write)
    return {"writes": writes, "report": train(config, log=lambda line: None)}


@pytest.fixture(scope="module")
def whole(tiny, whole_batch):
    """An uninterrupted two-rank run of ``tiny``: what each rank wrote, and the report it returned."""
    return torchrun(train_worker, tiny)


def weights(run) -> dict:
    return torch.load(checkpoint.checkpoint_path(run), weights_only=True)["mechanisms"]["img"]["state_dict"]


def test_rank_0_alone_writes_the_checkpoint_and_the_report(tiny, whole):
    assert whole[0]["writes"] == {"checkpoints": 3, "reports": 1}  # one each epoch, and the last with the test metrics
    assert whole[1]["writes"] == {"checkpoints": 0, "reports": 0}
    assert whole[0]["report"] == whole[1]["report"]  # ... and hands its report to the others
    files = sorted(p.name for p in Path(tiny.out).iterdir())
    assert files == ["model.pt", "reconstructions.png", "report.json", "report.md", "traversals.png"]
    history = checkpoint.read_checkpoint(tiny.out)["metrics"]["epochs"]
    assert [h["units"] for h in history] == [357, 357]  # each epoch counts the whole batches, not rank 0's slices
    assert history[1]["train_loss"] < history[0]["train_loss"]


def faulty(options: list, at: int, hang: bool = False, env: dict | None = None) -> None:
    """``cq train`` whose rank 1 raises (or, with ``hang``, falls silent) at its ``at``-th step."""
    import cli

    os.environ.update(env or {})
    step, calls = SVI.step, []

    def failing(self, args):
        calls.append(1)
        if distributed.env_rank() == 1 and len(calls) == at:
            if hang:
                time.sleep(600)
            raise RuntimeError("injected failure in rank 1")
        return step(self, args)

    SVI.step = failing
    sys.exit(cli.main(["train", *map(str, options)]))


def test_a_rank_that_fails_stops_the_run_and_the_run_resumes_from_its_last_epoch(tiny, whole, tmp_path):
    run = tmp_path / "run"
    options = ["--dag", tiny.dag, "--n", tiny.n, "--epochs", tiny.epochs, "--batch-size", tiny.batch_size, "--lr", tiny.lr,
               "--device", "cpu", "--out", run]
    start = time.perf_counter()
    with pytest.raises(ChildFailedError) as failed:
        torchrun(faulty, options, 8)  # 6 steps an epoch: the 2nd of epoch 2
    assert time.perf_counter() - start < 60
    failures = failed.value.failures  # the ranks torchrun saw fail first: rank 1, or rank 0 which lost it, or both
    assert failures and set(failures) <= {0, 1}
    if 1 in failures:
        assert "injected failure in rank 1" in str(failures[1].message)
    if 0 in failures:
        assert failures[0].exitcode == 2  # cq's exit status for its CqError: another training process stopped
    said = str(distributed.failure(failed.value, 2))  # what cq train --nproc says of it
    assert said.startswith("training in 2 processes failed: rank ") and "exited with code" in said
    assert checkpoint.read_checkpoint(run)["epoch"] == 1

    # cq train --nproc end to end: torchrun's launcher in cq, two fresh processes, rank 0 alone speaking
    resumed = subprocess.run([sys.executable, str(ROOT / "cli.py"), "train", "--nproc", "2", "--resume", *map(str, options)],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("resuming") == 1 and "after epoch 1" in resumed.stdout
    assert resumed.stdout.count("wrote ") == 1
    assert checkpoint.read_checkpoint(run)["epoch"] == 2
    a, b = weights(run), weights(tiny.out)
    assert all(torch.equal(a[k], b[k]) for k in a)  # as if it had never stopped


def test_a_silent_rank_times_out_the_others_instead_of_hanging(tiny, whole, tmp_path, capfd):
    options = ["--dag", tiny.dag, "--n", tiny.n, "--epochs", 1, "--batch-size", tiny.batch_size, "--device", "cpu",
               "--out", tmp_path / "run"]
    start = time.perf_counter()
    with pytest.raises(ChildFailedError) as failed:
        torchrun(faulty, options, 2, True, {"CQ_DIST_TIMEOUT": "3"})
    assert time.perf_counter() - start < 60  # it does not hang
    code = failed.value.failures[0].exitcode
    err = capfd.readouterr().err
    # usually rank 0's collective times out and cq says so (exit 2); on a starved machine torch's own
    # watchdog may abort the process first (SIGABRT), which still ends the run instead of hanging
    assert code == 2 or code == -6, code
    if code == 2:
        assert re.search(r"cq: error: rank 0 of 2: [a-z0-9' ]+ failed \(Timed out waiting 3000ms", err), err[-2000:]
        assert "silent for over 3s" in err


def test_cq_train_nproc_passes_its_other_options_to_each_process():
    import cli

    argv = ["train", "--dag", "d.yaml", "--epochs", "3", "--batch-size", "32", "--lr", "0.004", "--minutes", "1.5", "--resume",
            "--nproc", "2"]
    args = cli.parser().parse_args(argv)
    again = cli.parser().parse_args(["train", *distributed.command_line(vars(args), drop=("nproc", "run", "command"))])
    assert {**vars(again), "nproc": 2} == vars(args)
