"""CLIP's text tokenizer (Radford et al. 2021, Sec. 2.5): byte-level BPE (Sennrich et al. 2016;
GPT-2's byte alphabet) over lower-cased, whitespace-normalised text, words ending in '</w>',
between <|startoftext|> and <|endoftext|>, cut and padded to 77 tokens; built on `tokenizers`.
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import logging
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

from utils import ConfigError

# CLIP's word pattern: its special tokens, English contractions, letter runs, single digits, and
# runs of other non-space characters; what lies between matches (whitespace) is dropped.
WORDS = (r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]"
         r"|[^\s\p{L}\p{N}]+")
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _token(value) -> str | None:
    """A special token as written in tokenizer_config.json: a string or {'content': ...}."""
    if isinstance(value, dict):
        return value.get("content")
    return value


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _bpe_model(directory: str, unk: str) -> models.BPE:
    """The BPE model from vocab.json + merges.txt, or from tokenizer.json."""
    vocab_path, merges_path = (os.path.join(directory, n) for n in ("vocab.json", "merges.txt"))
    spec = _read_json(os.path.join(directory, "tokenizer.json")).get("model")
    if spec and not os.path.isfile(vocab_path):
        vocab = spec["vocab"]
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in spec["merges"]]
    else:
        for need in (vocab_path, merges_path):
            if not os.path.isfile(need):
                raise ConfigError(f"not a CLIP tokenizer folder: missing {need} (or a "
                                  "tokenizer.json beside it)")
        with open(vocab_path, encoding="utf-8") as f:
            vocab = json.load(f)
        with open(merges_path, encoding="utf-8") as f:
            lines = [line.rstrip("\n") for line in f]
        merges = [tuple(line.split(" ")) for line in lines
                  if line and not line.startswith("#version")]
    return models.BPE(vocab=vocab, merges=merges, continuing_subword_prefix="",
                      end_of_word_suffix="</w>", fuse_unk=False, unk_token=unk)


class CLIPTokenizer:
    """Prompts -> CLIP token ids [B, max_length]: <|startoftext|>, the BPE tokens (cut so that the
    end token stays), <|endoftext|>, then the pad token (SD 1.x: <|endoftext|>; SD 2.x: '!').

    Attributes:
      bos_id, eos_id, pad_id: the special tokens' ids. max_length: tokens per prompt (77).
    """

    def __init__(self, bpe: models.BPE, pad_token: str = EOS, max_length: int = 77):
        if max_length < 2:
            raise ConfigError(f"tokenizer max_length={max_length} must be >= 2 (start and end)")
        self._tok = Tokenizer(bpe)
        self._tok.normalizer = normalizers.Sequence(
            [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
        self._tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(WORDS), behavior="removed", invert=True),
             pre_tokenizers.ByteLevel(add_prefix_space=False)])
        # the special tokens are matched in the raw text first, as transformers does: with
        # SD 2.x's pad token '!', a '!' in a prompt is token '!' (0), not '!</w>'
        self._tok.add_special_tokens([BOS, EOS, pad_token])
        ids = {name: self._tok.token_to_id(name) for name in (BOS, EOS, pad_token)}
        missing = [name for name, i in ids.items() if i is None]
        if missing:
            raise ConfigError(f"tokenizer vocabulary has no token {missing[0]!r}")
        self.bos_id, self.eos_id, self.pad_id = ids[BOS], ids[EOS], ids[pad_token]
        self.max_length = int(max_length)

    @classmethod
    def from_directory(cls, directory: str, max_length: int = 77) -> CLIPTokenizer:
        """The tokenizer of a diffusers `tokenizer/` folder (vocab.json + merges.txt or
        tokenizer.json; the pad token from special_tokens_map.json or tokenizer_config.json).

        Args:
          directory: the folder. max_length: tokens per prompt.
        Returns:
          a CLIPTokenizer.
        """
        config = _read_json(os.path.join(directory, "tokenizer_config.json"))
        config.update(_read_json(os.path.join(directory, "special_tokens_map.json")))
        pad = _token(config.get("pad_token")) or EOS
        return cls(_bpe_model(directory, _token(config.get("unk_token")) or EOS), pad,
                   max_length)

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Token ids of B prompts; one warning line if any is cut to max_length.

        Args:
          texts: B strings.
        Returns:
          int32 [B, max_length].
        """
        if isinstance(texts, str):
            raise ConfigError("tokenizer: pass a list of prompts, not one string")
        rows = self._tok.encode_batch(list(texts), add_special_tokens=False)
        ids = np.full((len(rows), self.max_length), self.pad_id, np.int32)
        room = self.max_length - 2
        cut = [t for t, row in zip(texts, rows, strict=True) if len(row.ids) > room]
        for i, row in enumerate(rows):
            tokens = [self.bos_id] + row.ids[:room] + [self.eos_id]
            ids[i, : len(tokens)] = tokens
        if cut:
            logging.warning("%d prompt(s) longer than %d tokens were truncated, e.g. %r",
                            len(cut), self.max_length, cut[0][:60])
        return ids
