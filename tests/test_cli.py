"""The cq command line end to end: DAGs, data, a tiny training run, queries, evaluation."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT


def cq(*args, check=True):
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"cq {' '.join(map(str, args))} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result


def user_error(*args) -> str:
    """Run a command that must fail on user input: exit 2, one message, no traceback."""
    result = cq(*args, check=False)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr and result.stderr.startswith("cq: error: ")
    return result.stderr


def test_dag_show_json_and_table():
    nodes = json.loads(cq("dag", "show", "dags/dsprites.yaml", "--json").stdout)["nodes"]
    assert [n["name"] for n in nodes] == ["shape", "orientation", "scale", "x", "y", "img"]
    assert nodes[3]["parents"] == ["orientation"] and nodes[5]["mechanism"] == "vae_decoder"
    assert "discretized_normal" in cq("dag", "show", "dags/dsprites.yaml").stdout


def test_dag_errors_exit_cleanly(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes:\n  a: {mechanism: categorical, parents: [b], domain: [u, v], params: {probs: [0.5, 0.5]}}\n")
    assert "unknown parent 'b'" in user_error("dag", "show", bad)
    assert "no such DAG file" in user_error("dag", "show", tmp_path / "absent.yaml")


@pytest.mark.parametrize("dag", sorted(p.name for p in (ROOT / "dags").glob("*.yaml")))
def test_every_shipped_dag_shows_draws_and_is_faithful(dag, tmp_path):
    cq("dag", "draw", f"dags/{dag}", "--out", tmp_path / "dag.png")
    assert (tmp_path / "dag.png").stat().st_size > 1000
    out = cq("data", "check", "--dag", f"dags/{dag}", "--n", 60000).stdout
    assert "FAIL" not in out


def test_resample_is_reproducible_and_checked(tmp_path):
    for name in ("a", "b"):
        cq("data", "resample", "--n", 5000, "--seed", 3, "--out", tmp_path / f"{name}.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert (tmp_path / "a.png").exists()
    assert "statements hold" in cq("data", "check", "--data", tmp_path / "a.npz").stdout
    assert "another DAG" in user_error("data", "check", "--dag", "dags/dsprites_chain.yaml", "--data", tmp_path / "a.npz")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny model of the default DAG, trained for a few hundred steps."""
    run = tmp_path_factory.mktemp("run")
    cq("train", "--out", run, "--n", 4000, "--epochs", 1, "--batch-size", 64, "--seed", 0)
    cq("train-oracles", "--model", run, "--n", 2000, "--epochs", 1)
    return run


def test_query_answers_every_example_file(model, tmp_path):
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "queries").glob("*.cq"))
    lines = cq("query", *files, "--model", model, "--out", tmp_path, "--json", "--seed", 1).stdout.splitlines()
    records = [json.loads(line) for line in lines]
    samples = [r for r in records if "samples" in r]
    assert {r["kind"] for r in samples} == {"counterfactual", "interventional", "observational"}
    assert {r["kind"] for r in records} - {r["kind"] for r in samples} == {"probability", "expectation", "distribution", "expression", "population"}
    for r in samples:
        assert {"kind", "statement", "evidence", "intervention", "samples"} <= set(r)
        for s in r["samples"]:
            assert set(s["labels"]) == {"shape", "orientation", "scale", "x", "y"}
            assert (tmp_path / s["image"]).exists() if not s["image"].startswith("/") else True
        if r["kind"] == "counterfactual":
            assert set(r["factual"]) >= {"labels", "image"}
        if r["statement"].startswith("given raw,"):  # queries/labels_from_pixels.cq: a PNG without labels
            assert set(r["evidence"]["inferred from pixels"]) == {"shape", "orientation", "scale", "x", "y"}
    for r in records:
        if r["kind"] in ("probability", "expectation", "expression"):
            assert isinstance(r["value"], float) and r["stderr"] >= 0 and r["method"]
    [population] = [r for r in records if r["kind"] == "population"]
    assert population["units"] == 5120 and population["labels"]["shape"]["counterfactual"] == {"square": 1.0}
    assert all(Path(population[k]).exists() for k in ("npz", "summary", "examples"))
    again = cq("query", *files, "--model", model, "--out", tmp_path / "again", "--json", "--seed", 1).stdout.splitlines()
    strip = lambda rs: [[s["labels"] for s in json.loads(r)["samples"]] if "samples" in json.loads(r) else json.loads(r)["value"] if "value" in json.loads(r) else json.loads(r)["labels"] for r in rs]  # noqa: E731
    assert strip(lines) == strip(again)


def test_query_errors_exit_cleanly(model, tmp_path):
    bad = tmp_path / "bad.cq"
    bad.write_text("img = dsprites[5]\ngiven img, do(shape=circle)\n")
    message = user_error("query", bad, "--model", model, "--out", tmp_path)
    assert f"{bad}:2:15:" in message and "square, ellipse, heart" in message
    assert "DAG" in user_error("query", "queries/heart_to_square.cq", "--model", model, "--dag", "dags/dsprites_chain.yaml")
    assert "no such checkpoint" in user_error("query", "queries/heart_to_square.cq", "--model", tmp_path / "nothing")


def test_eval_reports_every_family(model):
    results = json.loads(cq("eval", "--model", model, "--n", 40, "--json").stdout)
    assert set(results["families"]) >= {"null", "do(shape=square)", "do(scale)", "do(x, y)", "do(shape, x, y)"}
    assert results["families"]["null"]["iou"] == 1.0  # exact pixel abduction
    assert results["composition"]["iou_after_10"] == 1.0
    for metrics in results["families"].values():
        assert 0 <= metrics["iou"] <= 1 and metrics["labels_tv"] < 0.03


def test_eval_prints_its_figures_before_it_draws_the_picture(model, monkeypatch, capsys):
    import cli
    from engine import evaluate, images

    class Drawn:  # the evaluation, already done (its figures are what must not be lost)
        def samples(self, family):
            return (np.zeros((1, 64, 64)),) * 3

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evaluate, "run", lambda *args, **kwargs: ({"families": {"null": {"units": 1, "iou": 1.0}}}, Drawn()))
    monkeypatch.setattr(images, "save_png", disk_full)
    with pytest.raises(OSError):
        cli.main(["eval", "--model", str(model), "--n", "20", "--json"])
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # the figures survive the failed picture
    assert results["families"]["null"]["iou"] == 1.0


@pytest.mark.parametrize("dag", sorted(p.name for p in (ROOT / "dags").glob("*.yaml") if p.name != "dsprites.yaml"))
def test_every_shipped_dag_trains_and_answers(dag, tmp_path):
    """A tiny model of each story trains, answers a counterfactual, and refuses another story."""
    cq("train", "--dag", f"dags/{dag}", "--out", tmp_path / "run", "--n", 2000, "--epochs", 1, "--batch-size", 64, "--eval-n", 512)
    query = tmp_path / "q.cq"
    if dag == "pendulum.yaml":  # light, pendulum -> shadow_x, shadow_len; all four -> img
        query.write_text("given pendulum[12], do(light=100deg) samples 2\n")
        [record] = [json.loads(line) for line in cq("query", query, "--model", tmp_path / "run", "--out", tmp_path, "--json").stdout.splitlines()]
        factual = record["factual"]["labels"]
        for s in record["samples"]:
            assert s["labels"]["light"] == 100 and s["labels"]["pendulum"] == factual["pendulum"]  # upstream of nothing moved
            assert s["labels"]["shadow_x"] != factual["shadow_x"]  # the shadow follows the light
        return
    query.write_text("given dsprites[696848], do(shape=square) samples 2\n")
    [record] = [json.loads(line) for line in cq("query", query, "--model", tmp_path / "run", "--out", tmp_path, "--json").stdout.splitlines()]
    assert [s["labels"]["shape"] for s in record["samples"]] == ["square", "square"]
    if dag == "dsprites_independent.yaml":  # roots only: nothing but the shape moves
        assert all({k: v for k, v in s["labels"].items() if k != "shape"} == {k: v for k, v in record["factual"]["labels"].items() if k != "shape"} for s in record["samples"])
    if dag in ("dsprites_hidden_orientation.yaml", "dsprites_hidden_turn.yaml"):
        assert "orientation" not in record["factual"]["labels"]
    message = user_error("query", query, "--model", tmp_path / "run", "--dag", "dags/dsprites.yaml")
    assert f"trained on DAG '{dag[:-5]}'" in message and "dags/dsprites.yaml" in message
    assert json.loads((tmp_path / "run" / "report.json").read_text())["test"]["img"]["units"] == 512


def test_bad_flags_and_files_exit_cleanly(tmp_path):
    result = cq("data", "resample", "--n", -5, "--out", tmp_path / "x.npz", check=False)
    assert result.returncode == 2 and "whole number >= 1" in result.stderr and "Traceback" not in result.stderr
    for flag, value in [("--lr", -1), ("--lr", "nan"), ("--minutes", 0)]:
        result = cq("train", "--out", tmp_path / "never", flag, value, check=False)
        assert result.returncode == 2 and "number > 0" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "never").exists()
    assert "no such checkpoint" in user_error("train-oracles", "--model", tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()
    (tmp_path / "labels.npz").write_text("not an npz")
    assert "not a resampled label set" in user_error("data", "check", "--data", tmp_path / "labels.npz")


def test_a_folder_of_the_users_own_images_trains_and_answers(tmp_path):
    """2,000 pendulum units exported as PNGs + labels.csv, trained on as a user would, then asked a counterfactual."""
    from PIL import Image

    from engine.model.dag import load_dag
    from engine.worlds.world import build_world

    world = build_world(load_dag(ROOT / "dags" / "pendulum.yaml"))
    units = world.units(np.arange(2000))
    folder = tmp_path / "pictures"
    folder.mkdir()
    rows = ["file,light,pendulum,shadow_x,shadow_len"]
    for i, image in enumerate(world.images(units)):
        Image.fromarray(image, mode="L").save(folder / f"{i}.png")
        rows.append(f"{i}.png," + ",".join(f"{units.labels[k][i]:.6f}" for k in ("light", "pendulum", "shadow_x", "shadow_len")))
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    text = (ROOT / "dags" / "pendulum.yaml").read_text().replace("world: pendulum", "world: {files: pictures}")
    text = text.replace("mechanism: uniform", "mechanism: normal\n    params: {loc: 90, sigma: 30}")
    dag = tmp_path / "mine.yaml"
    dag.write_text(text)
    cq("data", "check", "--dag", dag, "--n", 2000)
    cq("train", "--dag", dag, "--out", tmp_path / "run", "--epochs", 1, "--batch-size", 64)
    query = tmp_path / "q.cq"
    query.write_text("given data[7], do(pendulum=30deg)\n")
    [record] = [json.loads(line) for line in cq("query", query, "--model", tmp_path / "run", "--out", tmp_path / "answers", "--json").stdout.splitlines()]
    assert record["samples"][0]["labels"]["pendulum"] == 30
    assert record["samples"][0]["labels"]["light"] == record["factual"]["labels"]["light"]


def test_a_rerun_replaces_its_own_answers_and_nothing_else(tmp_path):
    """cq query keeps a manifest: a rerun with fewer statements removes its stale answers, never a user's file."""
    out = tmp_path / "answers"
    query = tmp_path / "q.cq"
    query.write_text("P(scale | shape=heart)\nP(shape)\n")
    cq("query", query, "--dag", "dags/dsprites.yaml", "--out", out)
    assert (out / "01_distribution.png").exists() and (out / "02_distribution.png").exists()
    (out / "notes.txt").write_text("mine")
    query.write_text("P(shape)\n")
    cq("query", query, "--dag", "dags/dsprites.yaml", "--out", out)
    assert (out / "01_distribution.png").exists() and not (out / "02_distribution.png").exists()
    assert (out / "notes.txt").read_text() == "mine"
    (out / "01_distribution.png").unlink()
    (out / "01_distribution.png").write_text("a file cq did not write")
    (out / ".cq-manifest.json").unlink()
    assert "was not written by cq" in user_error("query", query, "--dag", "dags/dsprites.yaml", "--out", out)
    assert (out / "01_distribution.png").read_text() == "a file cq did not write"
