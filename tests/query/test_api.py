"""The Python API (engine.api) and `cq query` with numeric statements, on the DAG alone (no training)."""

import json

import pytest

from engine.api import load
from engine.errors import QueryError
import cli
from tests.conftest import ROOT

DAG = str(ROOT / "dags" / "dsprites.yaml")


@pytest.fixture(scope="module")
def model():
    return load(DAG)


def test_ask_an_exact_probability(model):
    answer = model.ask("P(y > 0.5 | do(scale=1.0))")
    assert answer.kind == "probability" and answer.method == "exact enumeration" and answer.stderr == 0
    assert 0 < answer.value < 1
    assert repr(answer).startswith("P(y > 0.5 | do(scale=1.0)) = 0.") and "exact enumeration" in repr(answer)
    assert "<b>" in answer._repr_html_()


def test_bound_units_stay_bound(model):
    assert model.ask("u = dsprites[245760]") is None
    answer = model.ask("P(scale@do(shape=square) = scale | u)")
    assert answer.value == 1.0  # Gumbel-max: the ellipse's scale 0.5 is the square's likeliest by ratio, so it stays
    table = model.ask("P(y | u, do(shape=heart)) draws 2000")
    assert table.kind == "distribution" and sum(table.value.values()) == pytest.approx(1.0)
    assert "<table>" in table._repr_html_()


def test_seeds(model):
    a = model.ask("P(y@do(shape=heart) > 0.5 | shape=square) draws 5000", seed=3)
    b = model.ask("P(y@do(shape=heart) > 0.5 | shape=square) draws 5000", seed=3)
    assert a.value == b.value and a.stderr > 0


def test_label_only_models_refuse_image_statistics(model):
    with pytest.raises(QueryError, match="needs the image mechanism"):
        model.ask("E[area(img) | do(scale=1.0)]")


def cq(capsys, *args) -> str:
    """Run the command line in this process (torch is imported once); its stdout."""
    assert cli.main([str(a) for a in args]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def user_error(capsys, *args) -> str:
    """A command that must fail on user input: exit 2, one message on stderr."""
    assert cli.main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cq: error: ") and "Traceback" not in err
    return err


def test_cli_answers_numbers_from_the_dag_alone(tmp_path, capsys):
    query = tmp_path / "n.cq"
    query.write_text("P(y > 0.5 | do(scale=1.0))\nP(shape | y > 0.8)\nu = dsprites[245760]\nP(y@do(shape=heart) > 0.3 | u) draws 4000\n")
    out = cq(capsys, "query", query, "--dag", DAG, "--out", tmp_path / "answers")
    assert "P(y > 0.5 | do(scale=1.0)) = 0." in out and "exact enumeration" in out
    assert "heart" in out and "chart" in out and " ± " in out
    assert (tmp_path / "answers" / "02_distribution.png").stat().st_size > 1000
    records = [json.loads(line) for line in cq(capsys, "query", query, "--dag", DAG, "--out", tmp_path / "answers", "--json").splitlines()]
    assert [r["kind"] for r in records] == ["probability", "distribution", "probability"]
    for r in records:
        assert {"kind", "statement", "line", "value", "stderr", "method", "draws"} <= set(r)
    assert records[2]["draws"] == 4000 and records[0]["draws"] == 0


def test_cli_errors_point_at_the_statement(tmp_path, capsys):
    query = tmp_path / "bad.cq"
    query.write_text("P(y > 0.5)\nE[area(img) | do(scale=1.0)]\n")
    message = user_error(capsys, "query", query, "--dag", DAG, "--out", tmp_path)
    assert f"{query}:2:3:" in message and "--model" in message
    query.write_text("P(shape < heart)\n")
    assert "'<' compares numbers" in user_error(capsys, "query", query, "--dag", DAG, "--out", tmp_path)
    query.write_text("P(y > 0.5 | do(scale=0.5), shape=heart, scale=1.0)\n")
    assert "is 0 under do(scale=0.5)" in user_error(capsys, "query", query, "--dag", DAG, "--out", tmp_path)


def test_sample_answers_show_their_images_inline():
    import torch

    from engine.api import Model
    from engine.model.dag import load_dag
    from engine.model.scm import build_scm

    torch.manual_seed(0)
    dag = load_dag(DAG)
    answer = Model(dag, build_scm(dag)).ask("given dsprites[3], do(shape=heart) samples 2")  # an untrained decoder
    assert answer.kind == "counterfactual" and answer._repr_html_().count("data:image/png;base64,") == 3


def test_population_answers_keep_their_archive_and_show_their_examples():
    import torch

    from engine.api import Model
    from engine.model.dag import load_dag
    from engine.model.scm import build_scm

    torch.manual_seed(0)
    dag = load_dag(DAG)
    answer = Model(dag, build_scm(dag)).ask("given dsprites[shape=heart, scale=1.0, x=0.0, y=0.0], do(scale=0.5)")  # 40 units
    try:
        assert answer.kind == "population" and answer.summary["units"] == 40
        assert answer.arrays()["cf_scale"].tolist() == [0.5] * 40
        assert "40 units" in repr(answer) and answer._repr_html_().count("data:image/png;base64,") == 1
    finally:
        answer.path.unlink()
