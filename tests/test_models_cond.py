"""Tests of the latent text-to-image modules: the KL autoencoder's Gaussian posterior, the
cross-attention UNet, the CLIP-style text transformer and byte tokenizer, their parameter names
against diffusers / transformers, and outputs against reference fixtures (tiny sizes; CPU).
Fixtures: tools/make_cond_name_fixtures.py.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

import models
from models import autoencoder, pretrained, text_encoder, unet_cond
from utils import ConfigError

DATA = os.path.join(os.path.dirname(__file__), "data")
UNETS = ("unet_conv", "unet_linear")
CLIPS = ("clip_quick_gelu", "clip_gelu")


@pytest.fixture(scope="module")
def names():
    with open(os.path.join(DATA, "cond_names.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def parity():
    with np.load(os.path.join(DATA, "cond_parity.npz")) as f:
        return dict(f)


def _case(parity, model: str) -> tuple[dict, dict]:
    """(state_dict, inputs/outputs) of one fixture model."""
    items = {k[len(model) + 1:]: v for k, v in parity.items() if k.startswith(model + "/")}
    io = {k: v for k, v in items.items() if k.startswith(("in_", "out_")) or k == "out"}
    return {k: v for k, v in items.items() if k not in io}, io


def _module(names, model: str):
    cfg = names[model]["config"]
    if model == "autoencoder":
        return pretrained.autoencoder_from_config(cfg)
    if model.startswith("unet"):
        return pretrained.unet_from_config(cfg)
    return pretrained.clip_from_config(cfg)


def _init_args(model: str):
    if model == "autoencoder":
        return (jnp.zeros((1, 16, 16, 3)),), {}
    if model.startswith("unet"):
        kw = dict(context=jnp.zeros((1, 5, 12)), context_mask=jnp.ones((1, 5)))
        if model == "unet_linear":
            kw["class_labels"] = jnp.zeros((1,), jnp.int32)
        return (jnp.zeros((1, 8, 8, 4)), jnp.ones((1,))), kw
    return (jnp.zeros((1, 10), jnp.int32),), {}


def _param_shapes(module, model: str) -> dict:
    args, kw = _init_args(model)
    init = functools.partial(module.init, **kw)
    shapes = jax.eval_shape(init, {"params": jax.random.key(0), "posterior": jax.random.key(1)},
                            *args)
    return shapes["params"]


def _load(names, parity, model: str):
    module = _module(names, model)
    state_dict, io = _case(parity, model)
    params = pretrained.params_from_state_dict(state_dict, _param_shapes(module, model))
    return module, {"params": params}, io


def _close(ours, ref, rel=1e-4):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=rel, atol=rel * np.abs(ref).max())


# ---------------------------------------------------------------- diagonal Gaussian posterior


def test_diagonal_gaussian_kl_nll_match_numpy():
    rng = np.random.default_rng(0)
    mean = rng.standard_normal((3, 2, 2, 4))
    logvar = rng.uniform(-40, 25, (3, 2, 2, 4))
    post = autoencoder.DiagonalGaussian.from_moments(
        jnp.asarray(np.concatenate([mean, logvar], -1), jnp.float32))
    lv = np.clip(logvar, -30, 20)
    np.testing.assert_allclose(post.logvar, lv, rtol=1e-6)
    kl = 0.5 * np.sum(mean**2 + np.exp(lv) - 1 - lv, axis=(1, 2, 3))
    np.testing.assert_allclose(post.kl(), kl, rtol=1e-5)
    x = rng.standard_normal(mean.shape)
    nll = -np.sum(-0.5 * np.log(2 * np.pi) - 0.5 * lv - 0.5 * (x - mean) ** 2 / np.exp(lv),
                  axis=(1, 2, 3))
    np.testing.assert_allclose(post.nll(jnp.asarray(x, jnp.float32)), nll, rtol=1e-4)
    np.testing.assert_array_equal(post.mode(), post.mean)


def test_diagonal_gaussian_sample_moments():
    mean = jnp.array([[[[1.5, -2.0]]]])
    logvar = jnp.log(jnp.array([[[[0.25, 4.0]]]]))
    post = autoencoder.DiagonalGaussian(mean, logvar)
    keys = jax.random.split(jax.random.key(0), 20000)
    z = jax.vmap(post.sample)(keys).reshape(-1, 2)
    n = z.shape[0]
    assert np.all(np.abs(z.mean(0) - np.array([1.5, -2.0])) < 4 * np.array([0.5, 2.0]) / n**0.5)
    np.testing.assert_allclose(z.std(0), [0.5, 2.0], rtol=0.03)
    point = autoencoder.DiagonalGaussian.from_moments(mean, deterministic=True)
    np.testing.assert_array_equal(point.sample(jax.random.key(1)), mean)
    assert float(point.kl()[0]) == 0.0


# ---------------------------------------------------------------- shapes and factories


def test_autoencoder_shapes_and_discriminator():
    ae = autoencoder.AutoencoderKL(ch=8, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=3,
                                   embed_dim=2, attn_resolutions=(8,), resolution=16,
                                   norm_num_groups=4)
    x = jnp.zeros((2, 16, 16, 3))
    rngs = {"params": jax.random.key(0), "posterior": jax.random.key(1)}
    variables = jax.eval_shape(ae.init, rngs, x)
    recon, post = jax.eval_shape(functools.partial(ae.apply, rngs=rngs), variables, x)
    assert recon.shape == (2, 16, 16, 3) and post.mean.shape == (2, 4, 4, 2)
    z = jax.eval_shape(functools.partial(ae.apply, method=ae.decode), variables,
                       jnp.zeros((1, 4, 4, 2)))
    assert z.shape == (1, 16, 16, 3)
    flat = traverse_util.flatten_dict(variables["params"], sep="/")
    assert "encoder/down_blocks_1/attentions_0/to_q/kernel" in flat
    assert "encoder/down_blocks_0/attentions_0/to_q/kernel" not in flat
    assert "decoder/up_blocks_1/attentions_1/to_q/kernel" in flat
    disc = autoencoder.PatchDiscriminator(ndf=8, n_layers=2, norm_num_groups=4)
    logits = jax.eval_shape(disc.apply, jax.eval_shape(disc.init, jax.random.key(0), x), x)
    assert logits.shape == (2, 2, 2, 1)
    with pytest.raises(ConfigError, match="norm_num_groups"):
        autoencoder.AutoencoderKL(ch=6, norm_num_groups=4).init(jax.random.key(0), x)


def _cond_config(**model) -> ml_collections.ConfigDict:
    fields = dict(name="unet_cond", block_out_channels=[8, 16], layers_per_block=1,
                  attention_levels=[True, False], num_heads=2, context_dim=6, norm_num_groups=4)
    return ml_collections.ConfigDict({
        "model": {**fields, **model},
        "data": dict(image_size=8, num_channels=3),
    })


def test_unet_cond_factory_shapes_and_errors():
    model = models.get_model(_cond_config(out_channels=5, num_classes=4))
    assert isinstance(model, unet_cond.UNetCond) and model.attention_levels == (True, False)
    x, t = jnp.zeros((2, 8, 8, 3)), jnp.ones((2,))
    kw = dict(context=jnp.zeros((2, 7, 6)), context_mask=jnp.ones((2, 7)),
              class_labels=jnp.zeros((2,), jnp.int32))
    variables = jax.eval_shape(functools.partial(model.init, **kw), jax.random.key(0), x, t)
    out = jax.eval_shape(functools.partial(model.apply, **kw), variables, x, t)
    assert out.shape == (2, 8, 8, 5)
    dropout = models.get_model(_cond_config(out_channels=5, num_classes=4, dropout=0.1))
    train = functools.partial(dropout.apply, context=kw["context"], train=True,
                              class_labels=kw["class_labels"], rngs={"dropout": jax.random.key(2)})
    assert jax.eval_shape(train, variables, x, t).shape == (2, 8, 8, 5)
    assert "class_embedding" in variables["params"]
    half = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, jnp.bfloat16), variables)
    out = jax.eval_shape(functools.partial(model.apply, **kw), half, x.astype(jnp.bfloat16), t)
    assert out.dtype == jnp.bfloat16  # half-precision parameters: half-precision compute
    bad = dict(context=jnp.zeros((2, 7, 5)))
    with pytest.raises(ConfigError, match="model.context_dim=6"):
        jax.eval_shape(functools.partial(model.init, **bad), jax.random.key(0), x, t)
    both = models.get_model(_cond_config(head_dim=4))
    with pytest.raises(ConfigError, match="exactly one"):
        jax.eval_shape(functools.partial(both.init, **kw), jax.random.key(0), x, t)



def test_unet_cond_coordinate_channels():
    """coord_channels feeds (row, column) in [-1, 1] to conv_in: two more input channels, and
    the pixel-centre grid is exact (first row -1 + 1/H, last column 1 - 1/W)."""
    grid = np.asarray(unet_cond.coordinates(jnp.zeros((1, 4, 8, 3))))
    assert grid.shape == (1, 4, 8, 2)
    np.testing.assert_allclose(grid[0, :, 0, 0], [-0.75, -0.25, 0.25, 0.75])
    np.testing.assert_allclose(grid[0, 0, :, 1], (np.arange(8) + 0.5) / 4 - 1)
    assert np.all(grid[0, :, :, 0] == grid[0, :, :1, 0])  # rows constant along columns
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    t = jnp.ones((2,))
    kw = dict(context=jax.random.normal(jax.random.key(2), (2, 7, 6)),
              context_mask=jnp.ones((2, 7)))
    with_coord = models.get_model(_cond_config(coord_channels=True, out_channels=3))
    plain = models.get_model(_cond_config(out_channels=3))
    variables = with_coord.init(jax.random.key(0), x, t, **kw)
    shapes = {True: variables["params"]["conv_in"]["kernel"].shape,
              False: plain.init(jax.random.key(0), x, t, **kw)["params"]["conv_in"]["kernel"].shape}
    # The same weights on the input with the grid appended by hand: the same output.
    by_hand = plain.apply(variables, jnp.concatenate([x, unet_cond.coordinates(x)], -1), t, **kw)
    np.testing.assert_allclose(with_coord.apply(variables, x, t, **kw), by_hand, atol=1e-6)
    assert shapes == {False: (3, 3, 3, 8), True: (3, 3, 5, 8)}


def test_unet_cond_pooled_context_embedding():
    """pooled_context adds MLP(masked mean of the context) to the time embedding: the
    add_embedding output equals that formula, and padded tokens change nothing."""
    ctx = jax.random.normal(jax.random.key(3), (2, 7, 6))
    mask = jnp.array([[1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
    emb = unet_cond.PooledContextEmbedding(32)
    p = emb.init(jax.random.key(0), ctx, mask)["params"]
    mean = np.stack([np.asarray(ctx[0, :3]).mean(0), np.asarray(ctx[1]).mean(0)])
    h = mean @ np.asarray(p["linear_1"]["kernel"]) + np.asarray(p["linear_1"]["bias"])
    h = h / (1 + np.exp(-h))
    want = h @ np.asarray(p["linear_2"]["kernel"]) + np.asarray(p["linear_2"]["bias"])
    np.testing.assert_allclose(emb.apply({"params": p}, ctx, mask), want, rtol=1e-5, atol=1e-6)
    model = models.get_model(_cond_config(pooled_context=True, attention_levels=[False, False]))
    x, t = jax.random.normal(jax.random.key(1), (2, 8, 8, 3)), jnp.ones((2,))
    variables = model.init(jax.random.key(0), x, t, context=ctx, context_mask=mask)
    assert "add_embedding" in variables["params"]
    out = model.apply(variables, x, t, context=ctx, context_mask=mask)
    padded = ctx.at[0, 3:].set(100.0)  # only masked-out tokens change
    np.testing.assert_allclose(model.apply(variables, x, t, context=padded, context_mask=mask),
                               out, atol=1e-5)
    assert float(jnp.abs(model.apply(variables, x, t, context=ctx.at[0, 0].add(1.0),
                                     context_mask=mask)[0] - out[0]).max()) > 1e-6


def test_resnet_scale_shift():
    """resnet_time_scale_shift: time_emb_proj gives 2C (scale, shift) and the block computes
    silu(GN(h) (1 + scale) + shift); with a zero projection it is the plain block with a zero
    projection, and a set scale / shift is applied exactly."""
    from models.ldm_layers import ResnetBlock, group_norm

    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 8))
    temb = jax.random.normal(jax.random.key(1), (2, 12))
    ss, plain = ResnetBlock(8, 4, scale_shift=True), ResnetBlock(8, 4)
    p = ss.init(jax.random.key(2), x, temb)["params"]
    q = plain.init(jax.random.key(2), x, temb)["params"]
    assert p["time_emb_proj"]["kernel"].shape == (12, 16)
    assert q["time_emb_proj"]["kernel"].shape == (12, 8)
    zero = lambda tree: jax.tree.map(jnp.zeros_like, tree)
    p = {**p, "time_emb_proj": zero(p["time_emb_proj"])}
    q = {**p, "time_emb_proj": zero(q["time_emb_proj"])}  # the same weights otherwise
    np.testing.assert_allclose(ss.apply({"params": p}, x, temb),
                               plain.apply({"params": q}, x, temb), atol=1e-6)
    scale, shift = np.linspace(-0.5, 0.5, 8), np.linspace(1.0, -1.0, 8)
    p["time_emb_proj"]["bias"] = jnp.asarray(np.concatenate([scale, shift]), jnp.float32)
    got = ss.apply({"params": p}, x, temb)

    def by_hand():
        h = nn_silu(group_norm(4, 1e-6, "norm1").apply({"params": p["norm1"]}, x))
        h = jax.lax.conv_general_dilated(h, p["conv1"]["kernel"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        h = group_norm(4, 1e-6, "norm2").apply({"params": p["norm2"]}, h + p["conv1"]["bias"])
        h = nn_silu(h * (1 + scale) + shift)
        h = jax.lax.conv_general_dilated(h, p["conv2"]["kernel"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return x + h + p["conv2"]["bias"]

    np.testing.assert_allclose(got, by_hand(), atol=1e-5)


def nn_silu(h):
    return h * jax.nn.sigmoid(h)


def test_unet_cond_attention_pos_embed():
    """attention_pos_embed adds a learned [H W, inner] vector per token to the normalised
    inputs of both attentions: zero vectors give the network without it (same weights), and
    non-zero ones change the output (proj_out made non-zero: it is zero-initialised)."""
    x, t = jax.random.normal(jax.random.key(1), (2, 8, 8, 3)), jnp.ones((2,))
    kw = dict(context=jax.random.normal(jax.random.key(2), (2, 7, 6)),
              context_mask=jnp.ones((2, 7)))
    with_pos = models.get_model(_cond_config(attention_pos_embed=True))
    plain = models.get_model(_cond_config())
    variables = with_pos.init(jax.random.key(0), x, t, **kw)
    pos = variables["params"]["down_blocks_0"]["attentions_0"]["pos_embed"]
    assert pos.shape == (64, 8)  # 8x8 tokens at the first level, 2 heads x 4
    flat = traverse_util.flatten_dict(variables["params"])
    flat = {k: (0.3 * jax.random.normal(jax.random.key(len(k)), v.shape)
                if "proj_out" in k else v) for k, v in flat.items()}  # zero at init
    variables = {"params": traverse_util.unflatten_dict(flat)}
    stripped = traverse_util.unflatten_dict({k: v for k, v in flat.items() if k[-1] != "pos_embed"})
    zeroed = traverse_util.unflatten_dict({k: (jnp.zeros_like(v) if k[-1] == "pos_embed" else v)
                                           for k, v in flat.items()})
    assert set(traverse_util.flatten_dict(plain.init(jax.random.key(0), x, t, **kw)["params"])) \
        == set(traverse_util.flatten_dict(stripped))
    out = plain.apply({"params": stripped}, x, t, **kw)
    np.testing.assert_allclose(with_pos.apply({"params": zeroed}, x, t, **kw), out, atol=1e-6)
    assert float(jnp.abs(with_pos.apply(variables, x, t, **kw) - out).max()) > 1e-3

def test_text_factories():
    config = ml_collections.ConfigDict({"text": dict(encoder="clip", max_length=9, width=16,
                                                     layers=1, heads=2, intermediate_size=32),
                                        "autoencoder": dict(ch=8, ch_mult=[1, 2]),
                                        "data": dict(image_size=16)})
    enc = models.get_text_encoder(config)
    assert (enc.width, enc.max_length, enc.vocab_size) == (16, 9, 259)
    assert models.get_tokenizer(config).max_length == 9
    ae = models.get_autoencoder(config)
    assert ae.ch_mult == (1, 2) and ae.resolution == 16
    config.text.encoder = "bert"
    with pytest.raises(ConfigError, match="text.encoder"):
        models.get_text_encoder(config)


# ---------------------------------------------------------------- names mirror the references


@pytest.mark.parametrize("model", ("autoencoder",) + UNETS + CLIPS)
def test_param_names_mirror_reference(names, model):
    ours = traverse_util.flatten_dict(_param_shapes(_module(names, model), model))
    mapped = {pretrained.torch_name(path): (path[-1], tuple(a.shape)) for path, a in ours.items()}
    ref = {k: tuple(v) for k, v in names[model]["params"].items()}
    assert sorted(mapped) == sorted(ref)
    for name, (leaf, shape) in mapped.items():
        assert pretrained.to_flax_layout(leaf, np.empty(ref[name])).shape == shape, name


def _n_params(module, *args, **kw) -> int:
    shapes = jax.eval_shape(functools.partial(module.init, **kw), jax.random.key(0), *args)
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes))


def test_stable_diffusion_sizes_have_the_published_parameter_counts():
    """SD 1.5: UNet 859,520,964, VAE 83,653,863, CLIP ViT-L/14 text 123,060,480 (the counts of
    the diffusers / transformers models with SD 1.5's configs)."""
    x, t = jnp.zeros((1, 8, 8, 4)), jnp.ones((1,))
    sd15 = unet_cond.UNetCond(out_channels=4)
    assert _n_params(sd15, x, t, context=jnp.zeros((1, 2, 768))) == 859_520_964
    vae = autoencoder.AutoencoderKL(resolution=512)
    assert _n_params(vae, jnp.zeros((1, 8, 8, 3))) == 83_653_863
    clip = text_encoder.CLIPTextTransformer(vocab_size=49408, width=768, layers=12, heads=12,
                                            intermediate_size=3072)
    assert _n_params(clip, jnp.zeros((1, 77), jnp.int32)) == 123_060_480


def test_torch_name_rule():
    assert (pretrained.torch_name("down_blocks_0/resnets_1/conv1/kernel")
            == "down_blocks.0.resnets.1.conv1.weight")
    assert (pretrained.torch_name(("time_embedding", "linear_1", "bias"))
            == "time_embedding.linear_1.bias")
    assert (pretrained.torch_name("embeddings/token_embedding/embedding", "text_model.")
            == "text_model.embeddings.token_embedding.weight")


def test_loader_transposes_and_names_bad_tensors():
    template = {"net_0": {"proj": {"kernel": np.zeros((3, 2)), "bias": np.zeros(2)}},
                "conv": {"kernel": np.zeros((3, 3, 4, 5))}}
    w = np.arange(6.0).reshape(2, 3)
    conv = np.random.default_rng(0).standard_normal((5, 4, 3, 3))
    sd = {"net.0.proj.weight": w, "net.0.proj.bias": np.ones(2), "conv.weight": conv,
          "embeddings.position_ids": np.arange(3)}
    params = pretrained.params_from_state_dict(sd, template)
    np.testing.assert_array_equal(params["net_0"]["proj"]["kernel"], w.T)
    np.testing.assert_array_equal(params["conv"]["kernel"][1, 2, 3], conv[:, 3, 1, 2])
    with pytest.raises(ConfigError, match="no tensor conv.weight"):
        pretrained.params_from_state_dict({k: v for k, v in sd.items() if k[0] != "c"}, template)
    with pytest.raises(ConfigError, match=r"net.0.proj.weight has shape \(2, 2\)"):
        pretrained.params_from_state_dict(dict(sd, **{"net.0.proj.weight": w[:, :2]}), template)
    with pytest.raises(ConfigError, match="extra.weight"):
        pretrained.params_from_state_dict(dict(sd, **{"extra.weight": w}), template)


# ---------------------------------------------------------------- numerical parity


@pytest.fixture(scope="module")
def unets(names, parity):
    out = {}
    for model in UNETS:
        module, variables, io = _load(names, parity, model)
        out[model] = (jax.jit(functools.partial(module.apply, variables)), io)
    return out


@pytest.mark.parametrize("model", UNETS)
def test_unet_matches_reference(unets, model):
    apply, io = unets[model]
    out = apply(io["in_x"], io["in_t"], context=io["in_context"], context_mask=io["in_mask"],
                class_labels=io.get("in_class_labels"))
    _close(out, io["out"])


@pytest.mark.parametrize("model", UNETS)
def test_cross_attention_reads_context_but_not_padding(unets, model):
    apply, io = unets[model]
    run = lambda ctx: np.asarray(apply(io["in_x"], io["in_t"], context=ctx,
                                       context_mask=io["in_mask"],
                                       class_labels=io.get("in_class_labels")))
    base = run(io["in_context"])
    padded = io["in_context"].copy()
    padded[1, 3:] = 100.0 * np.random.default_rng(1).standard_normal(padded[1, 3:].shape)
    np.testing.assert_array_equal(run(padded), base)
    real = io["in_context"].copy()
    real[1, 0] += 1.0
    changed = run(real)
    assert np.abs(changed[1] - base[1]).max() > 1e-3
    np.testing.assert_array_equal(changed[0], base[0])


def test_autoencoder_matches_reference(names, parity):
    ae, variables, io = _load(names, parity, "autoencoder")
    post = jax.jit(functools.partial(ae.apply, variables, method=ae.encode))(io["in_x"])
    _close(post.mean, io["out_mean"])
    _close(post.logvar, io["out_logvar"])
    decoded = jax.jit(functools.partial(ae.apply, variables, method=ae.decode))(io["in_z"])
    _close(decoded, io["out_decoded"])


@pytest.fixture(scope="module")
def clips(names, parity):
    out = {}
    for model in CLIPS:
        module, variables, io = _load(names, parity, model)
        out[model] = (jax.jit(functools.partial(module.apply, variables)), io)
    return out


@pytest.mark.parametrize("model", CLIPS)
def test_clip_matches_reference(clips, model):
    apply, io = clips[model]
    hidden, pooled = apply(io["in_ids"], io["in_mask"])
    _close(hidden, io["out_hidden"])
    _close(pooled, io["out_pooled"])


def test_text_transformer_is_causal_and_ignores_padding(clips):
    apply, io = clips["clip_quick_gelu"]
    ids, mask = io["in_ids"], io["in_mask"]
    base, _ = apply(ids, mask)
    later = ids.copy()
    later[:, 4] = 120
    changed, _ = apply(later, mask)
    np.testing.assert_array_equal(changed[:, :4], base[:, :4])
    assert np.abs(changed[:, 4:6] - base[:, 4:6]).max() > 1e-3
    pads = ids.copy()
    pads[0, 7:] = 66  # row 0 is padded from position 7; the mask hides those keys
    repadded, _ = apply(pads, mask)
    np.testing.assert_array_equal(repadded[0, :7], base[0, :7])
    unmasked, pooled = apply(ids)  # row 1 has no padding: no mask changes nothing there
    np.testing.assert_allclose(unmasked[1], base[1], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(pooled[1], unmasked[1, 9])  # its EOS is the last token


# ---------------------------------------------------------------- tokenizer


def test_byte_tokenizer_round_trip_padding_and_truncation(monkeypatch):
    tok = text_encoder.ByteTokenizer(max_length=8)
    ids, mask = tok(["a red", "é"])
    assert ids.dtype == np.int32 and ids.shape == (2, 8)
    np.testing.assert_array_equal(ids[0], [256, 97, 32, 114, 101, 100, 257, 258])
    np.testing.assert_array_equal(mask[1], [1, 1, 1, 1, 0, 0, 0, 0])  # é is two UTF-8 bytes
    assert tok.decode(ids) == ["a red", "é"]
    warnings = []
    monkeypatch.setattr(text_encoder.logging, "warning", lambda *a: warnings.append(a[0] % a[1:]))
    ids, mask = tok(["a small blue square", "a big one", "ok"])
    assert len(warnings) == 1 and "text.max_length=8" in warnings[0]
    assert ids[0, -1] == tok.EOS and mask[0].all() and tok.decode(ids[:1]) == ["a smal"]
    tok(["fits"])
    assert len(warnings) == 1
    with pytest.raises(ConfigError, match="text.max_length"):
        text_encoder.ByteTokenizer(1)
