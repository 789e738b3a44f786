"""FID Inception-v3 (inception.py) against pytorch-fid's network, weight loading, input checks.

tests/data/inception_reference.npz holds pytorch-fid's outputs on synthetic weights; it is made
by tools/make_inception_reference.py. The weights are rebuilt here with numpy alone.
"""

import importlib.util
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evaluation
import inception
from utils import ConfigError

REFERENCE = os.path.join(os.path.dirname(__file__), "data", "inception_reference.npz")


@pytest.fixture(scope="module")
def ref():
    with np.load(REFERENCE, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def state(ref):
    return inception.random_state_dict(int(ref["seed"]))


@pytest.fixture(scope="module")
def weights_file(state, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "synthetic_inception.npz"
    np.savez(path, **state)
    return str(path)


@pytest.fixture(scope="module")
def net(weights_file):
    with pytest.warns(inception.InceptionWeightsWarning, match="not comparable"):
        return evaluation.load_inception(weights_file)


@pytest.fixture(scope="module")
def outputs(net, ref):
    return evaluation.inception_features(net, ref["images"])  # the module's one compilation


def _load_quietly(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", inception.InceptionWeightsWarning)
        return inception.load(path)


# --- the network -----------------------------------------------------------------------------


def test_parameter_count_equals_pytorch_fid(ref):
    image = jax.ShapeDtypeStruct((1, 299, 299, 3), jnp.float32)
    abstract = jax.eval_shape(inception.FIDInceptionV3().init, jax.random.key(0), image)
    count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))
    assert count(abstract["params"]) == int(ref["torch_param_count"]) == 23_850_960
    assert count(abstract["batch_stats"]) == int(ref["torch_buffer_count"]) == 34_432


def test_state_dict_layout_equals_pytorch_fid(ref):
    lines = bytes(ref["torch_layout"]).decode().splitlines()
    torch_layout = {k: tuple(map(int, s)) for k, *s in (line.split() for line in lines)}
    assert torch_layout == inception.state_dict_shapes()


def test_output_shapes(outputs):
    pool, logits = outputs
    assert pool.shape == (2, 2048) and logits.shape == (2, 1008)
    assert pool.dtype == logits.dtype == np.float32


def test_features_match_pytorch_fid(outputs, ref, net):
    pool, logits = outputs
    bias = np.asarray(net.variables["params"]["fc"]["bias"])
    for name, ours, theirs in (
        ("pool", pool, ref["pool"]),
        ("logits_unbiased", logits, ref["logits_unbiased"]),
        ("logits", logits + bias, ref["logits"]),
    ):
        err = np.abs(ours - theirs).max()
        rel = err / np.abs(theirs).max()
        print(f"{name}: max abs error {err:.3g}, relative to max |value| {rel:.3g}")
        assert rel < 1e-5, name
    assert np.abs(ref["pool"]).max() > 1 and ref["pool"].std() > 0.1  # activations are alive


def test_resize_matches_torch_interpolate(ref):
    for key in [k for k in ref if k.startswith("resize_") and k != "resize_in"]:
        out = inception.bilinear_resize(jnp.asarray(ref["resize_in"]), ref[key].shape[1:3])
        np.testing.assert_allclose(out, ref[key], atol=1e-6, err_msg=key)


def test_random_state_dict_is_deterministic(state, ref):
    again = inception.random_state_dict(int(ref["seed"]))
    assert inception.content_sha256(again) == inception.content_sha256(state)


# --- weight files ----------------------------------------------------------------------------


def test_loaded_variables_are_torch_tensors_transposed(net, state):
    params = net.variables["params"]
    np.testing.assert_array_equal(
        params["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"],
        state["Mixed_6b.branch7x7_2.conv.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(params["fc"]["kernel"], state["fc.weight"].T)
    np.testing.assert_array_equal(
        net.variables["batch_stats"]["Mixed_7c"]["branch_pool"]["bn"]["var"],
        state["Mixed_7c.branch_pool.bn.running_var"],
    )
    assert not net.published and net.identity.startswith(inception.NETWORK_NAME)


def _write(tmp_path, name, arrays):
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("Mixed_5b.branch1x1.conv.weight"), "missing key 'Mixed_5b.branch1x1"),
        (lambda s: s.update(extra=np.zeros(3, np.float32)), "unexpected key 'extra'"),
        (
            lambda s: s.update({"fc.weight": np.zeros((1000, 2048), np.float32)}),
            r"'fc.weight' has shape \(1000, 2048\), expected \(1008, 2048\)",
        ),
        (lambda s: s.update({"fc.bias": np.zeros(1008, np.int32)}), "'fc.bias' has dtype int32"),
    ],
)
def test_mismatched_weights_raise_one_line(tmp_path, state, edit, message):
    bad = dict(state)
    edit(bad)
    path = _write(tmp_path, "bad.npz", bad)
    with pytest.raises(ConfigError, match=message) as info:
        evaluation.load_inception(path)
    assert path in str(info.value) and "\n" not in str(info.value)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        evaluation.load_inception(tmp_path / "absent.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(ConfigError, match="garbage.npz: not a readable .npz"):
        evaluation.load_inception(garbage)


def test_npz_with_published_source_hash_loads_without_warning(tmp_path, state):
    recorded = {
        inception.SOURCE_KEY: np.str_(inception.PUBLISHED_HASH_PREFIX + "0" * 56),
        inception.CONTENT_KEY: np.str_(inception.content_sha256(state)),
    }
    path = _write(tmp_path, "converted.npz", {**state, **recorded})
    with warnings.catch_warnings():
        warnings.simplefilter("error", inception.InceptionWeightsWarning)
        net = inception.load(path)
    assert net.published and net.identity == f"{inception.NETWORK_NAME}/pool3"
    edited = dict(state, **{"fc.bias": state["fc.bias"] + 1})  # changed after conversion
    path = _write(tmp_path, "edited.npz", {**edited, **recorded})
    with pytest.warns(inception.InceptionWeightsWarning):
        assert not inception.load(path).published


def test_pth_and_converted_npz_load_the_same_weights(tmp_path, state, net):
    torch = pytest.importorskip("torch")
    pth = str(tmp_path / "synthetic.pth")
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, pth)
    from_pth = _load_quietly(pth)
    assert from_pth.identity == net.identity and not from_pth.published
    for a, b in zip(
        jax.tree_util.tree_leaves(from_pth.variables),
        jax.tree_util.tree_leaves(net.variables),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    tool = os.path.join(os.path.dirname(__file__), "..", "tools", "inception_to_npz.py")
    spec = importlib.util.spec_from_file_location("inception_to_npz", tool)
    converter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(converter)
    npz = str(tmp_path / "synthetic.npz")
    assert converter.convert(pth, npz) is False  # not the published file
    with np.load(npz) as f:
        assert len(str(f[inception.SOURCE_KEY])) == 64
    assert _load_quietly(npz).identity == net.identity


# --- inception_features: batching and input checks -------------------------------------------


def _fake_net():
    """A stand-in network (no compile of the Inception): pool = channel means, logits = corner."""
    apply = jax.jit(lambda variables, x: (x.mean(axis=(1, 2)), x[:, 0, 0, :] * variables))
    return inception.InceptionNet(2.0, apply, "fake", False, "test")


def test_inception_features_batches_and_pads():
    images = np.random.default_rng(0).uniform(size=(7, 5, 4, 3)).astype(np.float32)
    pool, logits = evaluation.inception_features(_fake_net(), images, batch_size=3)
    np.testing.assert_allclose(pool, images.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(logits, 2 * images[:, 0, 0, :])
    pool_jax, _ = evaluation.inception_features(_fake_net(), jnp.asarray(images), batch_size=50)
    np.testing.assert_allclose(pool_jax, pool, rtol=1e-6)


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((2, 8, 8, 3), np.uint8), "dtype uint8"),
        (np.full((2, 8, 8, 3), 1.5, np.float32), r"lie in \[0, 1\]"),
        (np.full((2, 8, 8, 3), -0.5, np.float32), r"lie in \[0, 1\]"),
        (np.full((2, 8, 8, 3), np.nan, np.float32), r"lie in \[0, 1\]"),
        (np.zeros((8, 8, 3), np.float32), r"\[B, H, W, 3\]"),
        (np.zeros((2, 8, 8, 1), np.float32), r"\[B, H, W, 3\]"),
        (np.zeros((2, 3, 8, 8), np.float32), r"got shape \(2, 3, 8, 8\)"),
        (np.zeros((0, 8, 8, 3), np.float32), r"\[B, H, W, 3\]"),
    ],
)
def test_bad_images_raise_config_error(images, message):
    with pytest.raises(ConfigError, match=message):
        evaluation.inception_features(_fake_net(), images)
