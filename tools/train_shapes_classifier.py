"""Train the shapes attribute classifier (feature_net.ShapesCNN) and store its weights.

    python tools/train_shapes_classifier.py [--out assets/shapes_classifier.npz]

Deterministic for a given seed and machine: Adam on single-object shapes from their own stream
('classifier_train', not the datasets' train or test streams), with random colour scaling,
pixel noise and blur so that it reads imperfect model samples too. Per-attribute accuracy on
clean, blurred and noisy held-out images is printed and recorded in the file's metadata.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import ndimage

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import datasets  # noqa: E402
import feature_net  # noqa: E402
import shapes  # noqa: E402
from utils import ConfigError, require  # noqa: E402

HEADS = tuple(feature_net.SHAPES_HEADS)


def single_object_set(stream: str, num: int) -> tuple[np.ndarray, dict]:
    """uint8 images [N, 32, 32, 3] and {attribute: int32 [N]} of one-object shapes."""
    images, attributes, _ = shapes.generate(stream, num, 32, num_objects=1)
    return images, {k: np.asarray(attributes[k][:, 0]) for k in HEADS}


def augment(rng, x):
    """Random per-channel colour scale in [0.7, 1], a blend with a 3x3 box blur, Gaussian
    pixel noise of std up to 0.08; each applied to about 70% of the images [B, H, W, C]."""
    b = x.shape[0]
    k = jax.random.split(rng, 7)
    on = lambda key: jax.random.bernoulli(key, 0.7, (b, 1, 1, 1))
    scale = jax.random.uniform(k[0], (b, 1, 1, 3), minval=0.7, maxval=1.0)
    x = jnp.where(on(k[1]), x * scale, x)
    box = jax.lax.reduce_window(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), 0.0, jax.lax.add,
                                (1, 3, 3, 1), (1, 1, 1, 1), "VALID") / 9.0
    blend = jax.random.uniform(k[2], (b, 1, 1, 1)) * on(k[3])
    x = (1 - blend) * x + blend * box
    std = jax.random.uniform(k[4], (b, 1, 1, 1), maxval=0.08) * on(k[5])
    return jnp.clip(x + std * jax.random.normal(k[6], x.shape), 0.0, 1.0)


def loss_fn(params, constants, images, labels):
    _, logits = feature_net.ShapesCNN().apply({"params": params, "constants": constants}, images)
    terms = [optax.softmax_cross_entropy_with_integer_labels(logits[k], labels[k]) for k in HEADS]
    return sum(t.mean() for t in terms)


def make_train_step(optimizer, constants):
    """Jitted `step(params, opt_state, rng, uint8 images, labels) -> (params, opt_state, loss)`."""

    @jax.jit
    def step(params, opt_state, rng, images, labels):
        x = augment(rng, images.astype(jnp.float32) / 255.0)
        loss, grads = jax.value_and_grad(loss_fn)(params, constants, x, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def train(seed: int, num_train: int, epochs: int, batch_size: int, lr: float) -> dict:
    """Train from scratch; returns the Flax variables, feature scale calibrated."""
    images, labels = single_object_set("classifier_train", num_train)
    steps_per_epoch = num_train // batch_size
    optimizer = optax.adam(optax.cosine_decay_schedule(lr, epochs * steps_per_epoch))
    variables = feature_net.init_shapes_variables(seed)
    params, constants = variables["params"], variables["constants"]
    step = make_train_step(optimizer, constants)
    opt_state = optimizer.init(params)
    order_rng = np.random.default_rng(seed)
    rng = jax.random.PRNGKey(seed + 1)
    for epoch in range(epochs):
        order = order_rng.permutation(num_train)
        losses = []
        for s in range(steps_per_epoch):
            idx = order[s * batch_size : (s + 1) * batch_size]
            rng, step_rng = jax.random.split(rng)
            batch = {k: v[idx] for k, v in labels.items()}
            params, opt_state, loss = step(params, opt_state, step_rng, images[idx], batch)
            losses.append(loss)
        print(f"epoch {epoch + 1:3d}  loss {float(np.mean(losses)):.4f}", flush=True)
    variables = dict(variables, params=params)
    return feature_net.calibrate_feature_scale(variables, images[:5000] / np.float32(255.0),
                                               wrap=feature_net.shapes_from_variables)


def corrupt(images: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """float32 images in [0, 1] as 'clean', 'blur' (Gaussian, sigma 0.7 px), 'noise' (Gaussian,
    std 0.05), 'blur+noise', or 'dim' (colours times 0.75); values clipped to [0, 1]."""
    x = images.astype(np.float32) / 255.0
    if "blur" in kind:
        x = ndimage.gaussian_filter(x, sigma=(0, 0.7, 0.7, 0), mode="constant")
    if "noise" in kind:
        x = x + 0.05 * np.random.default_rng(seed).standard_normal(x.shape, np.float32)
    if kind == "dim":
        x = 0.75 * x
    return np.clip(x, 0.0, 1.0).astype(np.float32)


CORRUPTIONS = ("clean", "blur", "noise", "blur+noise", "dim")


def accuracies(net, images: np.ndarray, labels: dict) -> dict:
    """{corruption: {attribute: accuracy, 'all': all four right}} on uint8 images."""
    out = {}
    for kind in CORRUPTIONS:
        got = feature_net.shapes_attributes(net, corrupt(images, kind))
        right = {k: got[k] == labels[k] for k in HEADS}
        out[kind] = {k: float(np.mean(v)) for k, v in right.items()}
        out[kind]["all"] = float(np.mean(np.all(list(right.values()), axis=0)))
    return out


def dataset_test_set() -> tuple[np.ndarray, dict]:
    """The single-object images of the shapes dataset's test split, with their attributes."""
    source = datasets.get_dataset("shapes", "test", 32, 3)
    keep = np.flatnonzero(source.attributes["num_objects"] == 1)
    images = np.stack([source[i][0] for i in keep])
    return images, {k: np.asarray(source.attributes[k][keep, 0]) for k in HEADS}


def markdown(results: dict) -> str:
    lines = ["| images | corruption | " + " | ".join(HEADS) + " | all |",
             "|---|---|" + "---|" * (len(HEADS) + 1)]
    for split, table in results.items():
        for kind, acc in table.items():
            cells = " | ".join(f"{acc[k]:.4f}" for k in (*HEADS, "all"))
            lines.append(f"| {split} | {kind} | {cells} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=feature_net.SHAPES_DEFAULT_PATH, help="weights (.npz)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=20000)
    parser.add_argument("--num-test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args()
    require(args.epochs >= 1, "--epochs", f"must be >= 1, got {args.epochs}")
    require(1 <= args.batch_size <= args.num_train, "--batch-size", "must be in 1..--num-train")
    require(args.lr > 0, "--lr", f"must be positive, got {args.lr}")
    start = time.time()
    variables = train(args.seed, args.num_train, args.epochs, args.batch_size, args.lr)
    seconds = time.time() - start
    net = feature_net.shapes_from_variables(variables)
    results = {
        f"classifier_test ({args.num_test})": accuracies(
            net, *single_object_set("classifier_test", args.num_test)),
    }
    test_images, test_labels = dataset_test_set()
    results[f"shapes test split, one object ({len(test_images)})"] = accuracies(
        net, test_images, test_labels)
    metadata = {
        "command": feature_net.SHAPES_TRAIN_COMMAND,
        **{k.replace("-", "_"): v for k, v in vars(args).items() if k != "out"},
        "accuracy": results,
        "train_seconds": round(seconds, 1),
        "jax_version": jax.__version__,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    feature_net.save(args.out, variables, metadata, network=feature_net.SHAPES_NETWORK_NAME)
    print(markdown(results))
    print(f"{net.identity}: trained in {seconds:.0f} s; wrote {args.out} "
          f"({os.path.getsize(args.out) / 1024:.0f} KiB)")


if __name__ == "__main__":
    try:
        main()
    except ConfigError as e:
        sys.exit(f"error: {e}")
