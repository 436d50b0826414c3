"""engine.svi.SVI: Pyro's Trace_ELBO with one torch Adam; the same steps as pyro.infer.SVI."""

# mu -> x (a learnable mean, observed data) ; a second pair with its own learnable scale

import copy

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI as PyroSVI
from pyro.infer import Trace_ELBO

from engine.learn.svi import ADAM, SVI, StateMismatch


def mean_model(x):
    mu = pyro.param("mu", torch.tensor(0.0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def scale_model(y):
    s = pyro.param("s", torch.tensor(1.0), constraint=dist.constraints.positive)
    with pyro.plate("more", len(y)):
        pyro.sample("y", dist.Normal(0.0, s), obs=y)


def guide(*_):
    pass


@pytest.fixture(autouse=True)
def fresh_params():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


def test_takes_the_steps_pyro_infer_svi_takes():
    x = torch.randn(50) + 3
    ours = SVI({"x": (mean_model, guide)}, lr=0.1)
    losses = [ours.step({"x": (x,)}) for _ in range(20)]
    mu = pyro.param("mu").item()
    pyro.clear_param_store()
    theirs = PyroSVI(mean_model, guide, pyro.optim.Adam({"lr": 0.1, **ADAM}), Trace_ELBO())
    expected = [theirs.step(x) for _ in range(20)]
    assert losses == pytest.approx(expected)
    assert mu == pytest.approx(pyro.param("mu").item())


def test_pairs_share_one_optimizer_and_each_fits_its_own_data():
    x, y = torch.randn(400) + 2, torch.randn(400) * 3
    svi = SVI({"x": (mean_model, guide), "y": (scale_model, guide)}, lr=0.05)
    for _ in range(400):
        svi.step({"x": (x,), "y": (y,)})
    assert pyro.param("mu").item() == pytest.approx(x.mean().item(), abs=0.05)
    assert pyro.param("s").item() == pytest.approx(y.std().item(), rel=0.05)
    assert len(svi.optimizer.param_groups) == 1


def test_a_saved_state_resumes_bit_for_bit_and_set_lr_applies():
    x = torch.randn(30)
    first = SVI({"x": (mean_model, guide)}, lr=0.1)
    for _ in range(5):
        first.step({"x": (x,)})
    state, mu = copy.deepcopy(first.state_dict()), pyro.param("mu").detach().clone()  # as a checkpoint holds it
    first.step({"x": (x,)})
    expected = pyro.param("mu").item()

    pyro.clear_param_store()
    pyro.param("mu", mu)
    second = SVI({"x": (mean_model, guide)}, lr=0.5)  # the saved state carries lr 0.1
    second.load_state_dict(state)
    second.step({"x": (x,)})
    assert pyro.param("mu").item() == expected
    second.set_lr(0.01)
    assert second.optimizer.param_groups[0]["lr"] == 0.01


def test_parameters_that_appear_later_join_the_optimizer():
    x = torch.randn(10)
    svi = SVI({"x": (mean_model, guide)}, lr=0.1)
    svi.step({"x": (x,)})
    svi.pairs["y"] = (scale_model, guide)
    before = pyro.param("s").item() if "s" in pyro.get_param_store() else 1.0
    svi.step({"x": (x,), "y": (x * 5,)})
    assert len(svi.optimizer.param_groups) == 2
    assert pyro.param("s").item() != before


def test_a_state_saved_for_other_parameters_is_refused():
    x = torch.randn(10)
    first = SVI({"x": (mean_model, guide)}, lr=0.1)
    first.step({"x": (x,)})
    state = copy.deepcopy(first.state_dict())
    assert state["names"] == ["mu"]
    state["names"] = ["s"]
    second = SVI({"x": (mean_model, guide)}, lr=0.1)
    second.load_state_dict(state)
    with pytest.raises(StateMismatch, match="for parameters s, not mu"):
        second.step({"x": (x,)})


def test_pairs_without_parameters_give_their_loss_and_step_nothing():
    def fixed(x):
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)

    x = torch.zeros(4)
    svi = SVI({"x": (fixed, guide)}, lr=0.1)
    assert svi.step({"x": (x,)}) == pytest.approx(4 * 0.5 * torch.log(torch.tensor(2 * torch.pi)).item())
    assert svi.optimizer is None and svi.state_dict() == {}
