"""Training: the loss falls, runs are seeded, resumable and bound to their DAG, and cq train works."""

# shape -> orientation -> x ; shape -> scale -> y ; all five -> img (a tiny decoder)

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

import cli
from engine.learn import checkpoint
from engine.errors import CheckpointError, CqError
from engine.learn.svi import SVI
from engine.device import pick_device
from engine.learn.train import TrainConfig, train
from tests.conftest import ROOT

TINY = {"angles": ["orientation"], "translate": ["x", "y"], "hidden": [16], "latent_dim": 2, "encoder_hidden": 16}


@pytest.fixture
def tiny(tmp_path):
    """The dSprites DAG with a tiny image network, and a config that trains it in seconds."""
    data = yaml.safe_load((ROOT / "dags" / "dsprites.yaml").read_text())
    data["nodes"]["img"]["params"] = TINY
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return TrainConfig(dag=str(path), out=str(tmp_path / "run"), n=400, epochs=2, batch_size=64, lr=0.01, eval_n=64, device="cpu")


def weights(run) -> dict:
    return torch.load(checkpoint.checkpoint_path(run), weights_only=True)["mechanisms"]["img"]["state_dict"]


def test_a_tiny_run_lowers_the_loss_and_writes_its_report(tiny):
    report = train(dataclasses.replace(tiny, epochs=3), log=lambda s: None)
    history = torch.load(checkpoint.checkpoint_path(tiny.out), weights_only=True)["metrics"]["epochs"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    test = report["test"]["img"]
    assert 0 < test["units"] <= 64 and 0 <= test["iou"] <= 1 and test["neg_elbo"] > 0
    for name in ("model.pt", "report.json", "report.md", "reconstructions.png", "traversals.png"):
        assert (Path(tiny.out) / name).exists(), name


def test_same_seed_same_weights(tiny, tmp_path):
    train(dataclasses.replace(tiny, epochs=1), log=lambda s: None)
    train(dataclasses.replace(tiny, epochs=1, out=str(tmp_path / "again")), log=lambda s: None)
    a, b = weights(tiny.out), weights(tmp_path / "again")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_a_crash_continues_from_the_saved_epoch(tiny, tmp_path, monkeypatch):
    train(dataclasses.replace(tiny, out=str(tmp_path / "whole")), log=lambda s: None)

    step, calls = SVI.step, []

    def crash_in_epoch_two(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 8:  # 6 steps an epoch: this is the 2nd step of epoch 2
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    monkeypatch.setattr(SVI, "step", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(tiny, log=lambda s: None)
    monkeypatch.setattr(SVI, "step", step)
    assert checkpoint.read_checkpoint(tiny.out)["epoch"] == 1

    logs = []
    train(dataclasses.replace(tiny, resume=True), log=logs.append)
    assert any("resuming" in line and "after epoch 1" in line for line in logs)
    assert checkpoint.read_checkpoint(tiny.out)["epoch"] == 2
    a, b = weights(tiny.out), weights(tmp_path / "whole")
    assert all(torch.equal(a[k], b[k]) for k in a)  # as if it had never stopped


def test_a_time_budget_stops_the_run_and_still_reports(tiny):
    logs = []
    train(dataclasses.replace(tiny, epochs=50, minutes=1e-6), log=logs.append)
    state = checkpoint.read_checkpoint(tiny.out)
    assert state["epoch"] == 1 and state["step"] == 1  # one step, then the budget is spent
    assert any("time budget reached" in line for line in logs)
    assert (Path(tiny.out) / "report.json").exists()


def test_resume_against_another_dag_is_a_checkpoint_error(tiny, tmp_path):
    train(dataclasses.replace(tiny, epochs=1), log=lambda s: None)
    other = tmp_path / "other.yaml"
    other.write_text(open(tiny.dag).read().replace("sigma: 1.1", "sigma: 1.2"))
    with pytest.raises(CheckpointError, match=r"trained on DAG 'dsprites' \(.*tiny\.yaml.*differs from .*other\.yaml"):
        train(dataclasses.replace(tiny, dag=str(other), resume=True, epochs=2), log=lambda s: None)


def test_resuming_a_run_saved_by_the_old_per_parameter_optimizer_is_a_clear_error(tiny):
    train(dataclasses.replace(tiny, epochs=1), log=lambda s: None)
    path = checkpoint.checkpoint_path(tiny.out)
    state = checkpoint.read_checkpoint(path)
    state["optimizer"] = {"img$$$decoder.0.weight": {"state": {}, "param_groups": []}}  # pyro.optim's layout
    checkpoint.save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version")}, path)
    with pytest.raises(CqError, match="older trainer.*start a new run"):
        train(dataclasses.replace(tiny, resume=True), log=lambda s: None)
    train(dataclasses.replace(tiny, epochs=1, resume=True), log=lambda s: None)  # finished: it only reports again
    assert checkpoint.read_checkpoint(path)["optimizer"] == state["optimizer"]  # ... and keeps what it cannot read
    with pytest.raises(CqError, match="older trainer"):
        train(dataclasses.replace(tiny, resume=True), log=lambda s: None)


def test_resuming_with_other_parameters_than_the_saved_optimizer_state_is_a_clear_error(tiny):
    train(dataclasses.replace(tiny, epochs=1), log=lambda s: None)
    path = checkpoint.checkpoint_path(tiny.out)
    state = checkpoint.read_checkpoint(path)
    state["optimizer"]["names"] = list(reversed(state["optimizer"]["names"]))
    checkpoint.save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version")}, path)
    with pytest.raises(CqError, match="optimizer state is for parameters .*start a new run"):
        train(dataclasses.replace(tiny, resume=True), log=lambda s: None)


def test_reporting_a_finished_run_again_keeps_its_optimizer_state(tiny):
    train(dataclasses.replace(tiny, epochs=1), log=lambda s: None)
    before = checkpoint.read_checkpoint(tiny.out)["optimizer"]
    train(dataclasses.replace(tiny, epochs=1, resume=True), log=lambda s: None)
    after = checkpoint.read_checkpoint(tiny.out)["optimizer"]
    assert after["names"] == before["names"] and after["adam"]["param_groups"] == before["adam"]["param_groups"]
    assert all(torch.equal(after["adam"]["state"][k]["exp_avg"], before["adam"]["state"][k]["exp_avg"]) for k in before["adam"]["state"])


def test_the_trained_model_loads_on_the_chosen_device(tiny):
    train(dataclasses.replace(tiny, epochs=1), log=lambda s: None)
    dag, scm = checkpoint.load_model(tiny.out, device="cpu")
    m = scm.mechanisms["img"]
    assert {t.device.type for t in [*m.parameters(), *m.buffers()]} == {"cpu"}
    with torch.no_grad():
        values = scm(4)
        noise = m.abduct(values["img"], scm.parents("img", values))
        assert torch.equal(m.assign(scm.parents("img", values), noise), values["img"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_training_keeps_everything_on_the_gpu(tiny):
    train(dataclasses.replace(tiny, epochs=1, device="cuda"), log=lambda s: None)
    _, scm = checkpoint.load_model(tiny.out, device="cuda")
    assert {p.device.type for p in scm.mechanisms["img"].parameters()} == {"cuda"}


def test_cuda_without_a_gpu_is_a_user_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto").type == "cpu"
    with pytest.raises(CqError, match="no CUDA device is available"):
        pick_device("cuda")


def test_cq_train_runs_and_reports_a_bad_checkpoint_in_one_line(tiny, capsys):
    args = ["train", "--dag", tiny.dag, "--out", tiny.out, "--n", "400", "--epochs", "1", "--batch-size", "64", "--device", "cpu"]
    assert cli.main(args) == 0
    assert "img: test neg ELBO" in capsys.readouterr().out
    path = checkpoint.checkpoint_path(tiny.out)
    path.write_bytes(path.read_bytes()[:100])
    assert cli.main(args + ["--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cq: error: ") and "model.pt: not a readable checkpoint" in err and "\n" not in err
