"""The VAE decoder mechanism: noise sites, exact pixel abduction, decoders, training, validation."""

# shape ─┐
# turn ──┼─► img        (turn is an angle; x and y move the sprite)
# x, y ──┘

import textwrap

import pyro
import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO

from engine.model.dag import parse_dag
from engine.errors import DagError
from engine.model.scm import build_scm
from plugins.vae_decoder import paste, place

TINY = "{angles: [turn], translate: [x, y], hidden: [16], canvas: 8, latent_dim: 2, encoder_hidden: 8, pool: 4}"


def tiny_dag(params: str = TINY, image: str = "[16, 16]"):
    return parse_dag(textwrap.dedent(f"""
        name: tiny
        nodes:
          shape: {{mechanism: categorical, domain: [a, b], params: {{probs: [0.5, 0.5]}}}}
          turn: {{mechanism: categorical, domain: {{linspace: [0, 2pi, 4]}}, params: {{probs: [0.25, 0.25, 0.25, 0.25]}}}}
          x: {{mechanism: categorical, domain: {{linspace: [0, 1, 3]}}, params: {{probs: [0.3, 0.3, 0.4]}}}}
          y: {{mechanism: categorical, domain: {{linspace: [0, 1, 3]}}, params: {{probs: [0.3, 0.3, 0.4]}}}}
          img:
            mechanism: vae_decoder
            parents: [shape, turn, x, y]
            domain: {{image: {image}}}
            params: {params}
    """), "tiny.yaml")


@pytest.fixture
def scm():
    pyro.set_rng_seed(0)
    return build_scm(tiny_dag())


def test_noise_sites_follow_the_contract(scm):
    trace = poutine.trace(scm).get_trace(5)
    assert trace.nodes["U_img_z"]["value"].shape == (5, 2)
    assert trace.nodes["U_img_z"]["fn"].event_dim == 1
    assert trace.nodes["U_img_pix"]["value"].shape == (5, 16, 16)
    assert trace.nodes["U_img_pix"]["fn"].event_dim == 2
    img = trace.nodes["img"]["value"]
    assert img.shape == (5, 16, 16) and set(img.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("bias", [0.0, 40.0, -40.0])
def test_null_intervention_reproduces_the_image_bit_for_bit(scm, bias):
    """assign(parents, abduct(image, parents)) == image, also where p sits at its bounds."""
    m = scm.mechanisms["img"]
    with torch.no_grad():
        m.decoder[-1].bias.add_(bias)  # +-40 saturates every pixel at the logit bound, where sigmoid rounds to 1
        values = scm(300)
        parents = scm.parents("img", values)
        observed = [values["img"], torch.bernoulli(torch.full_like(values["img"], 0.5))]  # the model's, and foreign noise
        for image in observed:
            for deterministic in (False, True):
                noise = m.abduct(image, parents, deterministic=deterministic)
                assert torch.equal(m.assign(parents, noise), image)
                u = noise["U_img_pix"]
                assert ((u >= 0) & (u < 1)).all()


def test_assign_compares_the_pixel_noise_with_the_probability_map(scm):
    m = scm.mechanisms["img"]
    with torch.no_grad():
        values = scm(50)
        parents = scm.parents("img", values)
        noise = {site: d.sample() for site, d in m.noise(50).items()}
        expected = (noise["U_img_pix"] < m.probs(parents, noise["U_img_z"])).float()
        assert torch.equal(m.assign(parents, noise), expected)


def test_deterministic_abduction_uses_the_encoder_mean(scm):
    m = scm.mechanisms["img"]
    with torch.no_grad():
        values = scm(4)
        parents = scm.parents("img", values)
        z_loc, _ = m.posterior(values["img"], parents)
        assert torch.equal(m.abduct(values["img"], parents, deterministic=True)["U_img_z"], z_loc)
        assert not torch.equal(m.abduct(values["img"], parents)["U_img_z"], z_loc)


def test_probs_are_strictly_inside_the_unit_interval_and_mean_matches(scm):
    m = scm.mechanisms["img"]
    with torch.no_grad():
        m.decoder[-1].bias.add_(100.0)
        values = scm(3)
        parents = scm.parents("img", values)
        z = torch.randn(3, 2)
        p = m.probs(parents, z)
        assert p.shape == (3, 16, 16) and (p > 0).all() and (p < 1).all()
        assert torch.equal(m.mean(parents, {"U_img_z": z, "U_img_pix": torch.rand(3, 16, 16)}), p)
        assert torch.allclose(p, torch.sigmoid(m.logits(parents, z)))


def test_paste_is_grid_sample_for_a_patch_with_a_background_border():
    torch.manual_seed(0)
    patch = torch.randn(6, 8, 8)
    patch[:, [0, -1], :] = -5.0
    patch[:, :, [0, -1]] = -5.0
    offset = torch.rand(6, 2) - 0.5
    theta = torch.zeros(6, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 16 / 8
    theta[:, :, 2] = -offset * 16 / 8
    grid = F.affine_grid(theta, [6, 1, 16, 16], align_corners=False)
    expected = F.grid_sample(patch[:, None] + 5.0, grid, align_corners=False)[:, 0] - 5.0
    assert torch.allclose(paste(patch, offset, 16, 16, -5.0), expected, atol=1e-5)
    squashed = place(patch, offset, 16, 16, -5.0).squash(torch.sigmoid).image()
    assert torch.allclose(squashed, torch.sigmoid(paste(patch, offset, 16, 16, -5.0)))


@pytest.mark.parametrize("decoder", ["mlp", "conv"])
def test_other_decoders_build_and_draw(decoder):
    params = "{angles: [turn], decoder: %s, hidden: [16], channels: 8, latent_dim: 2, encoder_hidden: 8}" % decoder
    scm = build_scm(tiny_dag(params))
    with torch.no_grad():
        values = scm(4)
        m = scm.mechanisms["img"]
        noise = m.abduct(values["img"], scm.parents("img", values))
        assert torch.equal(m.assign(scm.parents("img", values), noise), values["img"])


def test_svi_on_model_and_guide_lowers_the_loss(scm):
    """A few SVI steps on images that depend on the shape: the ELBO loss falls."""
    m = scm.mechanisms["img"]
    pyro.clear_param_store()
    with torch.no_grad():
        values = scm(64)
    parents = scm.parents("img", values)
    image = torch.zeros(64, 16, 16)
    for i, (shape, x, y) in enumerate(zip(parents["shape"], parents["x"], parents["y"])):
        image[i, 2 + 4 * y:6 + 4 * y, 2 + 4 * x:6 + 4 * x] = float(shape)  # shape b: a square centred at (4 + 8x, 4 + 8y)
    svi = SVI(m.model, m.guide, pyro.optim.Adam({"lr": 0.03}), Trace_ELBO())
    losses = [svi.step(image, parents) for _ in range(40)]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_model_and_guide_sites_share_the_noise_name(scm):
    m = scm.mechanisms["img"]
    values = scm(3)
    parents = scm.parents("img", values)
    guide = poutine.trace(m.guide).get_trace(values["img"], parents)
    model = poutine.trace(poutine.replay(m.model, trace=guide)).get_trace(values["img"], parents)
    assert "U_img_z" in guide.nodes and model.nodes["img"]["is_observed"]
    assert model.nodes["img"]["fn"].event_dim == 2


def test_to_moves_every_tensor():
    scm = build_scm(tiny_dag()).to("cpu")
    m = scm.mechanisms["img"]
    assert {t.device.type for t in [*m.parameters(), *m.buffers()]} == {"cpu"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_places_everything_on_the_gpu():
    scm = build_scm(tiny_dag()).to("cuda")
    m = scm.mechanisms["img"]
    assert {t.device.type for t in [*m.parameters(), *m.buffers()]} == {"cuda"}
    with torch.no_grad():
        values = scm(8)
        assert values["img"].is_cuda
        noise = m.abduct(values["img"], scm.parents("img", values))
        assert torch.equal(m.assign(scm.parents("img", values), noise), values["img"])


@pytest.mark.parametrize(
    "params, message",
    [
        ("{translate: [x, y], depth: 3}", r"unknown parameter\(s\) \['depth'\].*valid: .*latent_dim"),
        ("{translate: [x, y], decoder: unet}", "decoder must be one of affine, mlp, conv"),
        ("{translate: [x, z]}", "translate: 'z' is not a parent; parents are shape, turn, x, y"),
        ("{translate: [shape, y]}", "translate: 'shape' must have a numeric grid domain"),
        ("{}", r"affine decoder needs translate: \[horizontal, vertical\]"),
        ("{decoder: mlp, translate: [x, y]}", "translate is a parameter of the affine decoder only"),
        ("{translate: [x, y], hidden: [16, -2]}", "hidden must be a list of positive layer widths"),
        ("{translate: [x, y], latent_dim: 0}", "latent_dim must be a positive integer"),
        ("{translate: [x, y], angles: turn}", "angles must be a list of parent names"),
        ("{translate: [x, y], canvas: 8, pool: 3}", "pool must divide the image sides"),
        ("{translate: [x, y]}", r"canvas \(32\) must fit in the image 16x16"),
    ],
)
def test_params_are_validated_with_the_node_named(params, message):
    with pytest.raises(DagError, match=message) as error:
        build_scm(tiny_dag(params))
    assert "tiny.yaml:" in str(error.value) and "node 'img'" in str(error.value)


def test_image_domain_is_required():
    dag = parse_dag("nodes:\n  a: {mechanism: vae_decoder, domain: [p, q]}\n", "bad.yaml")
    with pytest.raises(DagError, match="bad.yaml:2: node 'a': vae_decoder needs an image domain"):
        build_scm(dag)
