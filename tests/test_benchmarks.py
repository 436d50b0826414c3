"""The training benchmarks still drive the trainer's own pieces (a smoke test: tiny sizes, no timing asserted)."""

from benchmarks import train_scaling, train_speed
from engine.model.dag import load_dag
from tests.conftest import ROOT

DAG = str(ROOT / "dags" / "dsprites.yaml")


def test_train_speed_loads_units_through_the_trainers_loader():
    assert train_speed.loading_rate(load_dag(DAG), "img", 64, units=128) > 0


def test_train_scaling_steps_the_trainers_svi_in_one_process():
    images_per_s, summing = train_scaling.rate(DAG, 16, 1, 1)
    assert images_per_s > 0 and 0 <= summing < 1
