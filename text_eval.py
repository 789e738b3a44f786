"""Prompt faithfulness of text-to-image runs on the shapes set: per-attribute accuracy of the
offline shapes classifier's reading of samples against their prompts, fd_shapes, and the
guidance-scale sweep (faithfulness against fidelity, as in Ho & Salimans 2021, fig. 1).
"""

from __future__ import annotations

import csv
import json
import os
import time

import jax
import numpy as np

import autoencoder_lib
import evaluation
import feature_net
import pipeline
import run_lib
import shapes
import visualize
from utils import choose, require

PROMPT_SETS = ("grammar", "paraphrase")
ATTRIBUTES = tuple(shapes.SHAPES_ATTRIBUTES)  # colour, shape, size, position

# Words the training captions never use, for each word they do (paraphrase prompts).
SYNONYMS = {
    "red": "crimson", "green": "emerald", "blue": "azure", "yellow": "golden",
    "magenta": "fuchsia", "cyan": "turquoise", "white": "snowy",
    "circle": "disc", "square": "box", "triangle": "wedge",
    "small": "tiny", "large": "big",
    "left": "on the left side", "right": "towards the right", "top": "near the top",
    "bottom": "near the bottom", "centre": "in the middle",
}


def grammar_prompts(num: int, seed: int = 0) -> list[dict]:
    """`num` single-object requests naming all four attributes (all 210 combinations cycled
    in a fixed shuffled order): [{'colour', 'shape', 'size', 'position', 'prompt'}]."""
    combos = [dict(colour=c, shape=s, size=z, position=p) for c in shapes.SHAPES_COLOURS
              for s in shapes.SHAPES_SHAPES for z in shapes.SHAPES_SIZES
              for p in shapes.SHAPES_POSITIONS]
    order = np.random.default_rng(seed).permutation(len(combos))
    out = []
    for k in range(num):
        req = dict(combos[order[k % len(combos)]])
        phrase = shapes.SHAPES_POSITION_PHRASES[req["position"]]
        req["prompt"] = f"a {req['size']} {req['colour']} {req['shape']} {phrase}"
        out.append(req)
    return out


def paraphrase(req: dict) -> dict:
    """The same request in words outside the training grammar ('a tiny crimson disc on the
    left side')."""
    words = {k: SYNONYMS[req[k]] for k in ATTRIBUTES}
    return dict(req, prompt=f"a {words['size']} {words['colour']} {words['shape']} "
                            f"{words['position']}")


def requests(config) -> list[dict]:
    """The evaluation's prompt set (eval.prompt_set, eval.num_prompts)."""
    e = config.eval
    kind = choose("eval.prompt_set", e.get("prompt_set", "grammar"), PROMPT_SETS)
    num = int(e.get("num_prompts", 140))
    require(num >= 1, "eval.num_prompts", f"must be >= 1, got {num}")
    reqs = grammar_prompts(num, int(config.seed))
    return [paraphrase(r) for r in reqs] if kind == "paraphrase" else reqs


def faithfulness(reqs: list[dict], read: dict) -> dict:
    """Accuracy of the classifier's reading of each sample against its request: one value per
    attribute and 'all' (every attribute right)."""
    right = {k: np.asarray([shapes.SHAPES_ATTRIBUTES[k][read[k][i]] == r[k]
                            for i, r in enumerate(reqs)]) for k in ATTRIBUTES}
    out = {f"acc_{k}": float(v.mean()) for k, v in right.items()}
    out["acc_all"] = float(np.mean(np.all(np.stack(list(right.values())), axis=0)))
    return out


def reference_features(config, net) -> np.ndarray:
    """Classifier features of single-object test images (the prompts ask for one object)."""
    test = autoencoder_lib.image_source(config, "test")
    one = np.flatnonzero(test.attributes["num_objects"] == 1)
    one = one[: int(config.eval.get("num_reference", 2000))]
    images = autoencoder_lib.read_images(test, one).astype(np.float32) / 255.0
    return feature_net.features(net, images)[0]


def sweep(config, run, params, net, ref, reqs, scales, sampler) -> list[dict]:
    """One row per guidance scale: faithfulness, fd_shapes; also the samples of each."""
    k = int(config.eval.get("samples_per_prompt", 2))
    require(k >= 1, "eval.samples_per_prompt", f"must be >= 1, got {k}")
    reqs = [r for r in reqs for _ in range(k)]
    prompts = [r["prompt"] for r in reqs]
    rows, samples = [], {}
    for j, w in enumerate(scales):
        rng = jax.random.fold_in(run_lib._key(config, run_lib.STREAM_EVAL), j)
        sampler(rng, params, prompts[: sampler.batch_size], w)  # compile outside the timing
        start = time.time()
        images = sampler(rng, params, prompts, w)
        seconds = time.time() - start
        read = feature_net.shapes_attributes(net, images)
        feats = feature_net.features(net, images)[0]
        row = {"guidance_scale": float(w), **faithfulness(reqs, read),
               "fd_shapes": float(evaluation.fid(feats, ref)), "num_samples": len(images),
               "nfe": sampler.nfe, "seconds_per_image": seconds / len(images)}
        rows.append(row)
        samples[float(w)] = images
        print(json.dumps(row), flush=True)
    return rows, samples, prompts


def plot_tradeoff(path: str, rows: list[dict], title: str) -> None:
    """Faithfulness (all attributes right) against fd_shapes, one point per guidance scale."""
    fig, ax = visualize.plt.subplots(figsize=(5, 4))
    fd = [r["fd_shapes"] for r in rows]
    acc = [r["acc_all"] for r in rows]
    ax.plot(fd, acc, "o-")
    for r in rows:
        ax.annotate(f"w={r['guidance_scale']:g}", (r["fd_shapes"], r["acc_all"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("fd_shapes (lower: closer to the data)")
    ax.set_ylabel("all attributes right (fraction)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    visualize.plt.close(fig)


def evaluate(config, workdir: str) -> dict:
    """--mode eval for a text run: the guidance sweep eval.guidance_scales over the prompt
    set; writes eval/text_<set>_<step>.csv, .json, a trade-off PNG and a sample grid."""
    scales = [pipeline.check_guidance(w, "eval.guidance_scales")
              for w in config.eval.get("guidance_scales", (1.0,))]
    require(len(scales) > 0, "eval.guidance_scales", "give at least one guidance scale")
    require(config.data.dataset == "shapes", "data.dataset",
            f"prompt faithfulness is measured on 'shapes' (got {config.data.dataset!r})")
    reqs = requests(config)
    run, params, step = pipeline.load(config, workdir)
    net = feature_net.load_shapes_classifier(config.eval.get("classifier_path", None))
    ref = reference_features(config, net)
    sampler = pipeline.TextSampler(run, int(config.eval.batch_size))
    rows, samples, prompts = sweep(config, run, params, net, ref, reqs, scales, sampler)
    name = f"text_{config.eval.get('prompt_set', 'grammar')}_{step}"
    if run_lib.is_main_process():
        out = os.path.join(workdir, "eval")
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, name + ".csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump({"step": step, "rows": rows}, f, indent=2)
        plot_tradeoff(os.path.join(out, name + ".png"), rows,
                      f"{config.text.get('encoder', 'clip')} text encoder, step {step}")
        w = float(config.sampling.get("guidance_scale", scales[-1]))
        w = w if w in samples else scales[-1]
        visualize.save_labelled_grid(os.path.join(out, name + f"_w{w:g}.png"),
                                     samples[w][:36], prompts[:36], scale=3)
    return {"results": [{"step": step, **r} for r in rows]}
