"""The VAE decoder mechanism: noise sites, exact pixel abduction, decoders, training, validation."""

# shape ─┐
# turn ──┼─► img        (turn is an angle; x and y move the sprite)
# x, y ──┘

import math
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
        ("{translate: [x, y], decoder: unet}", "decoder must be one of affine, geometric, mlp, conv"),
        ("{translate: [x, z]}", "translate: 'z' is not a parent; parents are shape, turn, x, y"),
        ("{translate: [shape, y]}", "translate: 'shape' must have a numeric domain"),
        ("{}", r"affine decoder needs translate: \[horizontal, vertical\]"),
        ("{decoder: mlp, translate: [x, y]}", "translate is a parameter of the affine and geometric decoders only"),
        ("{translate: [x, y], hidden: [16, -2]}", "hidden must be a list of 1 to 16 layer widths"),
        ("{translate: [x, y], hidden: [1000000000]}", "widths from 1 to 16,384"),
        ("{translate: [x, y], latent_dim: 1000000000}", "latent_dim must be a whole number from 0 to 16,384"),
        ("{translate: [x, y], latent_dim: -1}", "latent_dim must be a whole number from 0"),
        ("{translate: [x, y], angles: turn}", "angles must be a list of parent names"),
        ("{translate: [x, y], canvas: 8, pool: 3}", "pool must divide the image sides"),
        ("{translate: [x, y]}", r"canvas \(32\) must fit in the binary image 16x16"),
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


# ---- gray images ------------------------------------------------------------------------------
# light ──► img        (gray 16x16: levels 0..255, discretised normal pixels)

from engine.causal.inference import counterfactual
from engine.learn.svi import SVI as EngineSVI
from plugins.gray_image import GrayImage, gray_assign


def gray_dag(params: str = "{decoder: mlp, hidden: [16], latent_dim: 2, encoder_hidden: 8, pool: 4}"):
    return parse_dag(textwrap.dedent(f"""
        name: gray
        nodes:
          light: {{mechanism: categorical, domain: {{linspace: [0, 1, 5]}}, params: {{probs: [0.2, 0.2, 0.2, 0.2, 0.2]}}}}
          img:
            mechanism: vae_decoder
            parents: [light]
            domain: {{image: [16, 16], pixels: gray}}
            params: {params}
    """), "gray.yaml")


@pytest.fixture
def gray():
    pyro.set_rng_seed(0)
    return build_scm(gray_dag())


def bits(x):
    return x.contiguous().view(torch.int32)


def test_gray_noise_sites_and_drawn_levels(gray):
    trace = poutine.trace(gray).get_trace(5)
    assert trace.nodes["U_img_z"]["value"].shape == (5, 2)
    pix = trace.nodes["U_img_pix"]
    assert pix["value"].shape == (5, 16, 16) and pix["fn"].event_dim == 2
    assert isinstance(pix["fn"].base_dist, pyro.distributions.Normal)  # U_pix ~ N(0, 1)
    img = trace.nodes["img"]["value"]
    assert img.dtype == torch.float32 and torch.equal(img, img.round()) and img.min() >= 0 and img.max() <= 255
    m = gray.mechanisms["img"]
    mu = m.loc(gray.parents("img", trace.nodes["_RETURN"]["value"]), trace.nodes["U_img_z"]["value"])
    assert torch.equal(img, gray_assign(mu, m.scale(), pix["value"]))


@pytest.mark.parametrize("bias", [0.0, 40.0, -40.0])
def test_gray_null_intervention_reproduces_the_image_bit_for_bit(gray, bias):
    """assign(parents, abduct(image, parents)) == image, also where mu sits at 0 or 255, far from the pixel."""
    m = gray.mechanisms["img"]
    with torch.no_grad():
        m.decoder[-1].bias.add_(bias)  # +-40: mu = 255 or 0 everywhere
        m.scale.log_excess.fill_(-30.0)  # sigma at its floor 0.5: a foreign level is up to 510 sigmas out
        values = gray(200)
        parents = gray.parents("img", values)
        foreign = torch.randint(0, 256, (200, 16, 16)).float()
        foreign[:, 0, :2] = torch.tensor([0.0, 255.0])
        for image in (values["img"], foreign):
            for deterministic in (False, True):
                noise = m.abduct(image, parents, deterministic=deterministic)
                assert torch.isfinite(noise["U_img_pix"]).all()
                assert torch.equal(bits(m.assign(parents, noise)), bits(image))


def test_gray_counterfactual_under_a_null_intervention_returns_the_image(gray):
    with torch.no_grad():
        factual = gray(64)
        for interventions in ({}, {"light": factual["light"]}):
            draw = counterfactual(gray, factual, interventions, means=True)
            assert torch.equal(bits(draw.values["img"]), bits(factual["img"]))
            assert draw.means["img"].shape == (64, 16, 16) and 0 <= draw.means["img"].min() and draw.means["img"].max() <= 1


def test_gray_maps_are_mu_over_255_and_the_encoder_reads_image_over_255(gray):
    m = gray.mechanisms["img"]
    with torch.no_grad():
        values = gray(4)
        parents = gray.parents("img", values)
        z = torch.randn(4, 2)
        mu = m.loc(parents, z)
        torch.testing.assert_close(mu, 255 * torch.sigmoid(m.logits(parents, z)))
        assert torch.equal(m.probs(parents, z), mu / 255)
        assert torch.equal(m.mean(parents, {"U_img_z": z, "U_img_pix": torch.randn(4, 16, 16)}), mu / 255)
        image = values["img"]
        pooled = F.avg_pool2d(image[:, None] / 255, 4).flatten(1)
        out = m.encoder(torch.cat([pooled, m.encode(parents, m.parents, 4)], 1))
        assert torch.equal(m.posterior(image, parents)[0], out.chunk(2, 1)[0])


def test_gray_svi_lowers_the_loss_and_learns_sigma(gray):
    """A few SVI steps on images whose brightness follows light: the ELBO loss falls, sigma moves."""
    m = gray.mechanisms["img"]
    pyro.clear_param_store()
    torch.manual_seed(0)
    with torch.no_grad():
        light = gray(64)["light"]
    parents = {"light": light}
    level = 40 + 180 * m.values_light[light]  # 40 (dark) .. 220 (bright)
    image = (level[:, None, None] + 3 * torch.randn(64, 16, 16)).round().clamp(0, 255)
    image[:, :4, :4] = 0.0  # a dark corner in every picture
    svi = EngineSVI({"img": (m.model, m.guide)}, lr=1e-2)
    losses = [svi.step({"img": (image, parents)}) for _ in range(40)]
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    assert m.scale().item() != pytest.approx(16.0) and "img_scale$$$log_excess" in pyro.get_param_store()
    trace = poutine.trace(m.model).get_trace(image, parents)
    assert isinstance(trace.nodes["img"]["fn"], GrayImage) and trace.nodes["img"]["is_observed"]


@pytest.mark.parametrize("params", [
    "{decoder: conv, hidden: [16], channels: 8, latent_dim: 2, encoder_hidden: 8}",
    "{decoder: affine, translate: [light, light], hidden: [16], canvas: 8, latent_dim: 2, encoder_hidden: 8}",
])
def test_gray_conv_and_affine_decoders_draw_and_reconstruct(params):
    scm = build_scm(gray_dag(params))
    m = scm.mechanisms["img"]
    with torch.no_grad():
        values = scm(16)
        parents = scm.parents("img", values)
        noise = m.abduct(values["img"], parents)
        assert torch.equal(bits(m.assign(parents, noise)), bits(values["img"]))
        if m.config["decoder"] == "affine":  # the sprite sits on a background of level 0
            mu = m.loc(parents, noise["U_img_z"])
            assert (mu < 1e-6).float().mean() >= 1 - 64 / 256 and mu.max() <= 255


def test_binary_images_keep_their_parameters_and_config():
    binary = build_scm(tiny_dag()).mechanisms["img"]
    gray_m = build_scm(gray_dag()).mechanisms["img"]
    assert not any(k.startswith("scale") for k in binary.state_dict()) and "sigma" not in binary.config
    assert "scale.log_excess" in gray_m.state_dict() and gray_m.config["sigma"] == 16.0 and gray_m.config["sigma_min"] == 0.5
    assert gray_m.scale().item() == pytest.approx(16.0)


@pytest.mark.parametrize(
    "dag, message",
    [
        (lambda: tiny_dag("{translate: [x, y], canvas: 8, sigma: 4}"), r"sigma: parameters of gray images only .*pixels: gray.*binary image 16x16"),
        (lambda: gray_dag("{decoder: mlp, sigma: 0.3}"), r"sigma \(0.3\) must be above sigma_min \(0.5\)"),
        (lambda: gray_dag("{decoder: mlp, sigma_min: -1}"), "sigma_min must be a positive number of gray levels, got -1"),
        (lambda: gray_dag("{decoder: mlp, sigma: wide}"), "sigma must be a positive number of gray levels, got 'wide'"),
        (lambda: gray_dag("{decoder: mlp, sigma: 4, sigma_max: 9}"), r"unknown parameter\(s\) \['sigma_max'\].*sigma_min"),
    ],
)
def test_gray_params_are_validated_with_the_node_named(dag, message):
    with pytest.raises(DagError, match=message) as error:
        build_scm(dag())
    assert "node 'img'" in str(error.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gray_cuda_reconstructs_bit_for_bit():
    scm = build_scm(gray_dag()).to("cuda")
    m = scm.mechanisms["img"]
    with torch.no_grad():
        values = scm(64)
        parents = scm.parents("img", values)
        foreign = torch.randint(0, 256, (64, 16, 16), device="cuda").float()
        for image in (values["img"], foreign):
            noise = m.abduct(image, parents)
            assert noise["U_img_pix"].is_cuda and torch.equal(bits(m.assign(parents, noise)), bits(image))


# ---- the geometric decoder --------------------------------------------------------------------
# shape ─┐
# turn ──┼─► img        (a template per shape, turned by turn, sized by size, moved by x and y)
# size ──┤
# x, y ──┘

from plugins.vae_decoder import corner, pasted, turn

GEOMETRIC = "{decoder: geometric, rotate: [turn], scale: [size], translate: [x, y], hidden: [16], canvas: 8, latent_dim: 2, encoder_hidden: 8}"


def geometric_dag(params: str = GEOMETRIC):
    return parse_dag(textwrap.dedent(f"""
        name: geometric
        nodes:
          shape: {{mechanism: categorical, domain: [a, b], params: {{probs: [0.5, 0.5]}}}}
          turn: {{mechanism: categorical, domain: {{linspace: [0, 270, 4], unit: deg}}, params: {{probs: uniform}}}}
          size: {{mechanism: categorical, domain: {{linspace: [0.5, 1, 2]}}, params: {{probs: uniform}}}}
          x: {{mechanism: categorical, domain: {{linspace: [0, 1, 5]}}, params: {{probs: uniform}}}}
          y: {{mechanism: categorical, domain: {{linspace: [0, 1, 5]}}, params: {{probs: uniform}}}}
          img:
            mechanism: vae_decoder
            parents: [shape, turn, size, x, y]
            domain: {{image: [16, 16]}}
            params: {params}
    """), "geometric.yaml")


def test_turning_a_template_by_90_degrees_is_rot90_and_scaling_by_1_is_the_identity():
    torch.manual_seed(0)
    template = torch.randn(4, 16, 16)
    n, quarter, zero, one, still = 4, torch.full((4,), math.pi / 2), torch.zeros(4), torch.ones(4), torch.zeros(4, 2)
    torch.testing.assert_close(turn(template, quarter, one, still, 16, -5.0), torch.rot90(template, 1, (-2, -1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(turn(template, zero, one, still, 16, -5.0), template, atol=1e-5, rtol=0)
    # sampled on a coarser patch (the canvas): turning then sampling is sampling the turned template
    torch.testing.assert_close(turn(template, quarter, one, still, 8, -5.0), turn(torch.rot90(template, 1, (-2, -1)), zero, one, still, 8, -5.0), atol=1e-5, rtol=0)
    half = turn(template, zero, one / 2, still, 16, -5.0)  # half the size: the middle half of the patch, background around it
    assert (half[:, :2] == -5.0).all() and (half[:, :, -2:] == -5.0).all()


def test_the_sub_pixel_move_folded_into_the_sample_is_places_bilinear_move():
    torch.manual_seed(0)
    patch = torch.randn(6, 8, 8)
    patch[:, [0, -1], :] = patch[:, :, [0, -1]] = -5.0
    offset = torch.rand(6, 2) - 0.5
    whole, rest = corner(offset, 8, 16, 16)
    turned = turn(patch, torch.zeros(6), torch.ones(6), rest * (2 / 8), 8, -5.0)
    torch.testing.assert_close(pasted(turned, whole, 16, 16, -5.0).image(), paste(patch, offset, 16, 16, -5.0), atol=1e-5, rtol=0)


def test_the_geometric_decoder_draws_a_template_of_the_shape_only_and_turns_it():
    m = build_scm(geometric_dag(GEOMETRIC.replace("canvas: 8", "canvas: 8, oversample: 1"))).mechanisms["img"]
    assert m.drawn == ("shape",) and m.decoder[-1].out_features == 8 * 8
    parents = {"shape": torch.tensor([1, 1]), "turn": torch.tensor([0, 1]), "size": torch.tensor([1, 1]), "x": torch.tensor([2, 2]), "y": torch.tensor([2, 2])}
    with torch.no_grad():
        m.shift.bias.zero_(), m.shift.weight.zero_()  # centred: no sub-pixel move
        patch = m.sprite(parents, torch.zeros(2, 2)).values.view(2, 8, 8)
    torch.testing.assert_close(patch[1], torch.rot90(patch[0], 1, (-2, -1)), atol=1e-4, rtol=0)  # turn 90deg (a deg domain)
    assert m.decoder[-1].out_features == 64 and build_scm(geometric_dag()).mechanisms["img"].decoder[-1].out_features == 16 * 16


@pytest.mark.parametrize("bias", [0.0, 40.0, -40.0])
def test_geometric_null_intervention_reproduces_the_image_bit_for_bit(bias):
    pyro.set_rng_seed(0)
    scm = build_scm(geometric_dag())
    m = scm.mechanisms["img"]
    with torch.no_grad():
        m.decoder[-1].bias.add_(bias)
        values = scm(300)
        parents = scm.parents("img", values)
        for image in (values["img"], torch.bernoulli(torch.full_like(values["img"], 0.5))):
            noise = m.abduct(image, parents)
            assert torch.equal(m.assign(parents, noise), image)
            assert ((noise["U_img_pix"] >= 0) & (noise["U_img_pix"] < 1)).all()
        z = torch.randn(300, 2)
        assert torch.allclose(m.probs(parents, z), torch.sigmoid(m.logits(parents, z)))


@pytest.mark.parametrize(
    "params, message",
    [
        ("{decoder: affine, rotate: [turn], translate: [x, y], canvas: 8}", "rotate and scale are parameters of the geometric decoder only"),
        ("{decoder: geometric, rotate: [turn, size], translate: [x, y], canvas: 8}", r"rotate takes one parent, got \['turn', 'size'\]"),
        ("{decoder: geometric, scale: [shape], translate: [x, y], canvas: 8}", "scale: 'shape' must have a numeric domain"),
        ("{decoder: geometric, rotate: [x], translate: [x, y], canvas: 8}", "translate, rotate and scale must name different parents"),
        ("{decoder: geometric, canvas: 8}", r"geometric decoder needs translate: \[horizontal, vertical\]"),
        ("{decoder: geometric, translate: [x, y], canvas: 8, oversample: 0}", "oversample must be a whole number from 1"),
    ],
)
def test_geometric_params_are_validated_with_the_node_named(params, message):
    with pytest.raises(DagError, match=message) as error:
        build_scm(geometric_dag(params))
    assert "geometric.yaml:" in str(error.value) and "node 'img'" in str(error.value)


def test_a_scale_parent_must_be_a_positive_factor():
    dag = geometric_dag("{decoder: geometric, scale: [x], translate: [size, y], canvas: 8}")  # x runs from 0
    with pytest.raises(DagError, match="scale: 'x' must be a positive factor"):
        build_scm(dag)


def test_a_patch_just_past_the_edge_stays_at_the_edge_when_its_rest_is_clamped():
    offset = torch.tensor([[-0.5001, 0.0], [0.5001, 0.0]])  # corner 0.003 px left of the image, and right of its last place
    whole, rest = corner(offset, 8, 16, 16, clamp_rest=True)
    assert whole[:, 0].tolist() == [0, 8] and rest[:, 0].tolist() == [0.0, 0.0]
    whole, rest = corner(offset, 8, 16, 16)  # the affine convention: the whole pixels clamped, the rest kept
    assert whole[:, 0].tolist() == [0, 8] and rest[0, 0] > 0.99


# ---- counterfactual images: U_pix's posterior left undrawn ----------------------------------
# shape, turn, x, y ──► img      (the tiny, geometric and mlp decoders above; one unit, many draws)

from plugins.binary_image import pixel_noise
from plugins.vae_decoder import PixelPosterior, probability

MLP = "{angles: [turn], decoder: mlp, hidden: [16], latent_dim: 2, encoder_hidden: 8}"
BINARY = {"affine": lambda: tiny_dag(), "geometric": lambda: geometric_dag(), "mlp": lambda: tiny_dag(MLP)}


@pytest.mark.parametrize("decoder", BINARY)
def test_a_counterfactual_image_keeps_each_decided_pixel_and_draws_the_rest_from_the_posterior(decoder):
    """Under do(shape, x): where q is on the observed side of p the pixel keeps its value in every draw;
    elsewhere it is on with probability q / p (on) or (q - p) / (1 - p) (off), as with U_pix drawn whole."""
    pyro.set_rng_seed(0)
    scm = build_scm(BINARY[decoder]())
    m, n = scm.mechanisms["img"], 20_000
    with torch.no_grad():
        unit = {k: v.expand(n, *v.shape[1:]) for k, v in scm(1).items()}
        image = torch.bernoulli(torch.full((1, 16, 16), 0.5)).expand(n, 16, 16)  # foreign: on pixels off the patch too
        parents = scm.parents("img", unit)
        moved = parents | {"shape": 1 - parents["shape"], "x": (parents["x"] + 1) % 3}  # a patch that moves and overlaps
        z = torch.randn(1, 2).expand(n, 2)
        p, q = m.probs(parents, z).double(), m.probs(moved, z).double()
        factual_map = m.sprite(parents, z).squash(probability) if m.placed else m.probs(parents, z)
        lazy = m.assign(moved, {"U_img_z": z, "U_img_pix": PixelPosterior(image, factual_map)})
        drawn = m.assign(moved, {"U_img_z": z, "U_img_pix": pixel_noise(image, m.probs(parents, z))})
    on = image[0] > 0.5
    decided = torch.where(on, q[0] >= p[0], q[0] <= p[0])
    assert (lazy[:, decided] == image[:, decided]).all() and (drawn[:, decided] == image[:, decided]).all()
    assert (~decided).sum() > 20  # the move leaves pixels to draw
    chance = torch.where(on, q[0] / p[0], (q[0] - p[0]) / (1 - p[0]))[~decided]
    bound = 5 * (chance * (1 - chance) / n).sqrt() + 1 / n
    for draws in (lazy, drawn):
        assert ((draws[:, ~decided].double().mean(0) - chance).abs() < bound).all()


@pytest.mark.parametrize("decoder", BINARY)
@pytest.mark.parametrize("bias", [0.0, 40.0, -40.0])
def test_the_counterfactual_of_a_null_intervention_returns_the_image_bit_for_bit(decoder, bias):
    pyro.set_rng_seed(0)
    scm = build_scm(BINARY[decoder]())
    m = scm.mechanisms["img"]
    with torch.no_grad():
        m.decoder[-1].bias.add_(bias)  # +-40: every pixel at the logit bound
        factual = scm(200)
    for image in (factual["img"], torch.bernoulli(torch.full_like(factual["img"], 0.5))):
        unit = factual | {"img": image}
        for interventions in ({}, {"x": unit["x"], "shape": unit["shape"]}):
            draw = counterfactual(scm, unit, interventions, means=True)  # with gradients on, as a caller may leave them
            assert torch.equal(draw.values["img"], image) and not draw.values["img"].requires_grad
            assert draw.means["img"].shape == image.shape and ((draw.means["img"] > 0) & (draw.means["img"] < 1)).all()


# ---- the latent turn: turns: K, enumerated exactly --------------------------------------------
# shape ─┐
# x, y ──┴─► img        (no node holds the turn: the decoder's latent turn k turns the template by 2 pi k / K)

from engine.causal.inference import counterfactual
from plugins.binary_image import BinaryImage
from plugins.gray_image import GrayImage

LATENT = "{decoder: geometric, turns: 4, translate: [x, y], hidden: [16], canvas: 8, oversample: 1, latent_dim: 2, encoder_hidden: 8}"


def latent_turn_dag(params: str = LATENT, pixels: str = ""):
    return parse_dag(textwrap.dedent(f"""
        name: latent_turn
        nodes:
          shape: {{mechanism: categorical, domain: [square, flag], params: {{probs: uniform}}}}
          x: {{mechanism: categorical, domain: {{linspace: [0, 1, 5]}}, params: {{probs: uniform}}}}
          y: {{mechanism: categorical, domain: {{linspace: [0, 1, 5]}}, params: {{probs: uniform}}}}
          img:
            mechanism: vae_decoder
            parents: [shape, x, y]
            domain: {{image: [16, 16]{pixels}}}
            params: {params}
    """), "latent_turn.yaml")


def drawn_shapes(m) -> None:
    """Make the decoder draw fixed templates, centred: a square (symmetric under quarter turns) and a flag (not)."""
    square, flag = torch.full((8, 8), -20.0), torch.full((8, 8), -20.0)
    square[2:6, 2:6] = 20.0
    flag[1:7, 1:3] = flag[1:3, 3:6] = 20.0  # a pole and a flag at its top right
    with torch.no_grad():
        m.decoder = torch.nn.Linear(4, 64, bias=False)  # input: one-hot shape, then z (ignored)
        m.decoder.weight.zero_()
        m.decoder.weight[:, 0], m.decoder.weight[:, 1] = square.flatten(), flag.flatten()
        m.shift.weight.zero_(), m.shift.bias.zero_()  # centred in the image: no sub-pixel move


def test_k_turns_at_once_are_the_k_single_turns():
    torch.manual_seed(0)
    template, angles, factor, shift = torch.randn(3, 16, 16), torch.rand(3, 5) * 7, torch.rand(3) + 0.5, torch.rand(3, 2) * 0.1
    many = turn(template, angles, factor, shift, 8, -5.0)
    assert many.shape == (3, 5, 8, 8)
    for k in range(5):
        assert torch.equal(many[:, k], turn(template, angles[:, k], factor, shift, 8, -5.0))


@pytest.fixture(params=["", ", pixels: gray"], ids=["binary", "gray"])
def latent_scm(request):
    pyro.set_rng_seed(0)
    return build_scm(latent_turn_dag(pixels=request.param))


def test_the_turn_likelihood_is_the_whole_image_likelihood_at_each_turn(latent_scm):
    scm, m = latent_scm, latent_scm.mechanisms["img"]
    with torch.no_grad():
        values = scm(6)
        parents, image = scm.parents("img", values), values["img"].clone()
        image[:, 0, 0] = 255.0 if m.gray else 1.0  # on pixels outside the patch count too
        z = torch.randn(6, 2)
        ll = m.turn_log_likelihood(image, parents, z)
        pixel = (lambda k: GrayImage(m.loc(parents, z, k), m.scale())) if m.gray else (lambda k: BinaryImage(m.logits(parents, z, k)))
        whole = torch.stack([pixel(torch.full((6,), k)).log_prob(image) for k in range(4)], 1)
    torch.testing.assert_close(ll, whole, rtol=1e-5, atol=1e-3)


def test_the_model_sums_the_turn_out_exactly():
    pyro.set_rng_seed(0)
    scm = build_scm(latent_turn_dag())
    m = scm.mechanisms["img"]
    values = scm(5)
    parents = scm.parents("img", values)
    guide = poutine.trace(m.guide).get_trace(values["img"], parents)
    model = poutine.trace(poutine.replay(m.model, trace=guide)).get_trace(values["img"], parents)
    model.compute_log_prob()
    z = guide.nodes["U_img_z"]["value"]
    whole = torch.stack([BinaryImage(m.logits(parents, z, torch.full((5,), k))).log_prob(values["img"]) for k in range(4)], 1)
    torch.testing.assert_close(model.nodes["img"]["log_prob"], whole.logsumexp(1) - math.log(4), rtol=1e-5, atol=1e-3)
    assert "U_img_turn" not in model.nodes  # summed out, never sampled while training


def test_svi_learns_with_the_latent_turn():
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    scm = build_scm(latent_turn_dag())
    m = scm.mechanisms["img"]
    parents = {"shape": torch.arange(64) % 2, "x": torch.full((64,), 2), "y": torch.full((64,), 2)}  # centred
    image = torch.zeros(64, 16, 16)
    image[:, 5:11, 7:9] = 1.0  # one bar, upright or lying by the (hidden) turn
    image[1::2] = image[1::2].transpose(-1, -2)
    svi = SVI(m.model, m.guide, pyro.optim.Adam({"lr": 0.03}), Trace_ELBO())
    losses = [svi.step(image, parents) for _ in range(40)]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_a_turn_the_image_does_not_show_stays_a_choice_among_the_turns_it_allows():
    """A square looks the same at its four quarter turns: its posterior is uniform over them, and a
    counterfactual flag is drawn, clean, at one of the four turns, each a quarter of the time."""
    pyro.set_rng_seed(0)
    scm = build_scm(latent_turn_dag())
    m = scm.mechanisms["img"]
    drawn_shapes(m)
    n, centre = 4000, torch.full((4000,), 2)
    flags = torch.stack([m.probs({"shape": torch.ones(4, dtype=torch.long), "x": centre[:4], "y": centre[:4]}, torch.zeros(4, 2), torch.arange(4))])[0].round()
    assert len({tuple(f.flatten().tolist()) for f in flags}) == 4  # the flag tells its four turns apart
    with torch.no_grad():
        for shape, expected in ((0, torch.full((4,), 0.25)), (1, torch.eye(4)[1])):
            parents = {"shape": torch.full((1,), shape), "x": centre[:1], "y": centre[:1]}
            image = m.probs(parents, torch.zeros(1, 2), torch.ones(1, dtype=torch.long)).round()
            torch.testing.assert_close(m.turn_posterior(image, parents, torch.zeros(1, 2))[0], expected, atol=1e-6, rtol=0)
        square = m.probs({"shape": torch.zeros(1, dtype=torch.long), "x": centre[:1], "y": centre[:1]}, torch.zeros(1, 2)).round()
        factual = {"shape": torch.zeros(n, dtype=torch.long), "x": centre, "y": centre, "img": square.expand(n, 16, 16)}
        answer = counterfactual(scm, factual, {"shape": torch.ones(n, dtype=torch.long)}).values["img"]
    which = (answer[:, None] == flags[None]).flatten(2).all(2)  # (n, 4): the answer is exactly flag k
    assert which.any(1).all()  # every answer is one clean flag, never a blend of turns
    share = which.float().mean(0)
    assert ((share - 0.25).abs() < 4 * math.sqrt(0.25 * 0.75 / n)).all(), share


def test_a_null_intervention_with_the_latent_turn_returns_the_image_bit_for_bit(latent_scm):
    scm, m = latent_scm, latent_scm.mechanisms["img"]
    with torch.no_grad():
        values = scm(200)
        parents = scm.parents("img", values)
        for deterministic in (False, True):
            noise = m.abduct(values["img"], parents, deterministic=deterministic)
            assert noise["U_img_turn"].shape == (200,) and torch.equal(m.assign(parents, noise), values["img"])
        assert torch.equal(counterfactual(scm, values, {}).values["img"], values["img"])


@pytest.mark.parametrize(
    "params, message",
    [
        ("{decoder: affine, turns: 4, translate: [x, y], canvas: 8}", "turns is a parameter of the geometric decoder only"),
        ("{decoder: geometric, turns: -1, translate: [x, y], canvas: 8}", "turns must be a whole number from 0 .no latent turn. to 360"),
        ("{decoder: geometric, turns: 4.5, translate: [x, y], canvas: 8}", "turns must be a whole number"),
        ("{decoder: geometric, turns: true, translate: [x, y], canvas: 8}", "turns must be a whole number"),
        ("{decoder: geometric, turns: 361, translate: [x, y], canvas: 8}", "got 361"),
    ],
)
def test_turns_is_validated_with_the_node_named(params, message):
    with pytest.raises(DagError, match=message) as error:
        build_scm(latent_turn_dag(params))
    assert "latent_turn.yaml:" in str(error.value) and "node 'img'" in str(error.value)


def test_without_z_the_image_is_drawn_from_its_parents_and_the_latent_turn_alone():
    import warnings

    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no zero-sized layer (torch warns on those)
        scm = build_scm(latent_turn_dag(LATENT.replace("latent_dim: 2", "latent_dim: 0")))
    m = scm.mechanisms["img"]
    assert m.encoder is None
    with torch.no_grad():
        values = scm(50)
        parents = scm.parents("img", values)
        noise = m.abduct(values["img"], parents)
        assert noise["U_img_z"].shape == (50, 0) and torch.equal(m.assign(parents, noise), values["img"])
    svi = SVI(m.model, m.guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
    assert math.isfinite(svi.step(values["img"], parents))
