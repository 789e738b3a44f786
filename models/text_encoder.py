"""Contextual token embeddings for text conditioning: a CLIP-style text transformer (Radford et
al., 2021, Sec. 2.4: pre-LayerNorm blocks, causal mask, final LayerNorm, the EOS token's state as
the pooled vector) with names mirroring transformers' `CLIPTextModel`, and a byte tokenizer.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from models.ldm_layers import attention
from utils import ConfigError, choose

# The frozen pretrained encoder (all-MiniLM-L6-v2) is `load_minilm` in models/minilm.py; it is
# re-exported from this module beside the trainable CLIP-style encoder below.

ACTIVATIONS = {
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),  # CLIP ViT-L/14 (SD 1.x)
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # OpenCLIP ViT-H/14 (SD 2.x)
}


class ByteTokenizer:
    """UTF-8 bytes (0..255) between BOS (256) and EOS (257), padded with PAD (258) to max_length.

    Attributes:
      max_length: text.max_length, the token count L including BOS and EOS.
    """

    BOS, EOS, PAD = 256, 257, 258
    vocab_size = 259

    def __init__(self, max_length: int = 77):
        if max_length < 2:
            raise ConfigError(f"text.max_length={max_length} must be >= 2 (BOS and EOS)")
        self.max_length = max_length

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Tokenize prompts; one warning line if any is cut to text.max_length (EOS kept).

        Args:
          texts: B strings.

        Returns:
          (ids int32 [B, L], mask int32 [B, L]: 1 on BOS, bytes and EOS, 0 on padding).
        """
        n = len(texts)
        ids = np.full((n, self.max_length), self.PAD, np.int32)
        room = self.max_length - 2
        cut = []
        for i, text in enumerate(texts):
            body = list(text.encode("utf-8"))
            if len(body) > room:
                cut.append(text)
                body = body[:room]
            row = [self.BOS] + body + [self.EOS]
            ids[i, : len(row)] = row
        if cut:
            logging.warning("%d prompt(s) longer than text.max_length=%d tokens were truncated, "
                            "e.g. %r", len(cut), self.max_length, cut[0])
        return ids, (ids != self.PAD).astype(np.int32)

    def decode(self, ids) -> list[str]:
        """Token ids [B, L] back to strings (special tokens dropped; bytes read as UTF-8).

        Args:
          ids: [B, L] ints.

        Returns:
          B strings.
        """
        rows = np.asarray(ids)
        return [bytes(int(t) for t in row if t < 256).decode("utf-8", errors="replace")
                for row in rows]


class CLIPAttention(nn.Module):
    """Multi-head self-attention with biased q_proj, k_proj, v_proj and out_proj."""

    heads: int

    @nn.compact
    def __call__(self, x, mask):
        """x: [B, L, D]; mask: boolean [B, 1, L, L]. Returns [B, L, D]."""
        d = x.shape[-1]
        q, k, v = (nn.Dense(d, name=n)(x) for n in ("q_proj", "k_proj", "v_proj"))
        return nn.Dense(d, name="out_proj")(attention(q, k, v, self.heads, mask))


class CLIPMLP(nn.Module):
    """fc1, activation, fc2."""

    intermediate_size: int
    activation: str

    @nn.compact
    def __call__(self, x):
        h = ACTIVATIONS[self.activation](nn.Dense(self.intermediate_size, name="fc1")(x))
        return nn.Dense(x.shape[-1], name="fc2")(h)


class CLIPEncoderLayer(nn.Module):
    """x + self_attn(layer_norm1(x)), then x + mlp(layer_norm2(x))."""

    heads: int
    intermediate_size: int
    activation: str
    eps: float

    @nn.compact
    def __call__(self, x, mask):
        ln = lambda n: nn.LayerNorm(epsilon=self.eps, use_fast_variance=False, name=n)
        x = x + CLIPAttention(self.heads, name="self_attn")(ln("layer_norm1")(x), mask)
        return x + CLIPMLP(self.intermediate_size, self.activation, name="mlp")(
            ln("layer_norm2")(x))


class CLIPEncoder(nn.Module):
    """layers_0 .. layers_{n-1}."""

    layers: int
    heads: int
    intermediate_size: int
    activation: str
    eps: float

    @nn.compact
    def __call__(self, x, mask):
        for i in range(self.layers):
            x = CLIPEncoderLayer(self.heads, self.intermediate_size, self.activation, self.eps,
                                 name=f"layers_{i}")(x, mask)
        return x


class CLIPEmbeddings(nn.Module):
    """token_embedding(ids) + position_embedding(0..L-1)."""

    vocab_size: int
    max_length: int
    width: int

    @nn.compact
    def __call__(self, ids):
        tok = nn.Embed(self.vocab_size, self.width, name="token_embedding")(ids)
        pos = nn.Embed(self.max_length, self.width, name="position_embedding")(
            jnp.arange(ids.shape[1]))
        return tok + pos[None]


class CLIPTextTransformer(nn.Module):
    """A CLIP-style text transformer (transformers' `CLIPTextModel` tree without the
    'text_model' prefix: embeddings, encoder, final_layer_norm).

    Attributes:
      vocab_size: token count (ByteTokenizer: 259). max_length: positions L.
      width: D. layers: encoder layers. heads: attention heads. intermediate_size: MLP width.
      activation: 'quick_gelu' (CLIP ViT-L) | 'gelu' (OpenCLIP ViT-H).
      causal: each token attends only to itself and earlier ones.
      layer_norm_eps: LayerNorm epsilon. eos_token_id: the token whose state is pooled.
    """

    vocab_size: int = ByteTokenizer.vocab_size
    max_length: int = 77
    width: int = 512
    layers: int = 12
    heads: int = 8
    intermediate_size: int = 2048
    activation: str = "quick_gelu"
    causal: bool = True
    layer_norm_eps: float = 1e-5
    eos_token_id: int = ByteTokenizer.EOS

    @nn.compact
    def __call__(self, ids, mask=None):
        """Token embeddings in context.

        Args:
          ids: [B, L] int token ids, L <= max_length. mask: [B, L] (1 = token, 0 = padding;
            padded keys get no attention) or None (attend to all).

        Returns:
          (hidden [B, L, width] after the final LayerNorm, pooled [B, width]: the hidden state
          at the first eos_token_id, or at the last unmasked token where there is none).
        """
        choose("text.activation", self.activation, ACTIVATIONS)
        b, length = ids.shape
        if length > self.max_length:
            raise ConfigError(f"{length} tokens exceed text.max_length={self.max_length}")
        keep = jnp.ones((b, 1, length, length), bool)
        if mask is not None:
            keep = keep & mask.astype(bool)[:, None, None, :]
        if self.causal:
            keep = keep & jnp.tril(jnp.ones((length, length), bool))[None, None]
        x = CLIPEmbeddings(self.vocab_size, self.max_length, self.width, name="embeddings")(ids)
        x = CLIPEncoder(self.layers, self.heads, self.intermediate_size, self.activation,
                        self.layer_norm_eps, name="encoder")(x, keep)
        hidden = nn.LayerNorm(epsilon=self.layer_norm_eps, use_fast_variance=False,
                              name="final_layer_norm")(x)  # [B, L, D]
        is_eos = ids == self.eos_token_id
        last = (length if mask is None else jnp.sum(mask, axis=1).astype(jnp.int32)) - 1
        pos = jnp.where(is_eos.any(axis=1), jnp.argmax(is_eos, axis=1), jnp.maximum(last, 0))
        return hidden, hidden[jnp.arange(b), pos]


def load_minilm(dtype=jnp.float32):
    """The frozen all-MiniLM-L6-v2 encoder: (module, params, tokenize) (see `models.minilm`).

    `tokenize(list_of_str, max_length)` gives (ids, mask) [B, L]; `module.apply({'params':
    params}, ids, mask)` the last hidden states [B, L, 384]. A ConfigError names the pip command
    when the weights package is not installed.
    """
    from models import minilm  # reads the weights package only when asked for

    return minilm.load_minilm(dtype)
