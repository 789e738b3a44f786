"""Train the digits feature network (feature_net.DigitsCNN) and store its weights.

    python tools/train_digits_classifier.py [--out assets/digits_classifier.npz]

Deterministic for a given seed and machine: Adam on the 1,500 training digits (16x16 grey)
with random shifts of up to 1 pixel; the held-out 297-digit test accuracy is printed and
recorded in the file's metadata. About half a minute on a laptop CPU.
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import datasets  # noqa: E402
import feature_net  # noqa: E402
from utils import ConfigError, require  # noqa: E402


def digits_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """float32 images [N, 16, 16, 1] in [0, 1] and int32 labels [N] of a digits split."""
    source = datasets.get_dataset("digits", split, image_size=16, num_channels=1)
    images, labels = zip(*(source[i] for i in range(len(source))), strict=True)
    return np.stack(images).astype(np.float32) / 255.0, np.asarray(labels, np.int32)


def random_shift(rng, images, max_shift: int):
    """Shift each image [B, H, W, C] by up to `max_shift` pixels each way, zero-filled."""
    b, h, w, _ = images.shape
    padded = jnp.pad(images, ((0, 0), (max_shift,) * 2, (max_shift,) * 2, (0, 0)))
    offsets = jax.random.randint(rng, (b, 2), 0, 2 * max_shift + 1)
    crop = lambda x, o: jax.lax.dynamic_slice(x, (o[0], o[1], 0), (h, w, x.shape[-1]))
    return jax.vmap(crop)(padded, offsets)


def loss_fn(params, constants, images, labels):
    _, logits = feature_net.DigitsCNN().apply({"params": params, "constants": constants}, images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_train_step(optimizer, constants, max_shift: int):
    """Jitted `step(params, opt_state, rng, images, labels) -> (params, opt_state, loss)`."""

    @jax.jit
    def step(params, opt_state, rng, images, labels):
        if max_shift:
            images = random_shift(rng, images, max_shift)
        loss, grads = jax.value_and_grad(loss_fn)(params, constants, images, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def accuracy(net: feature_net.FeatureNet, images, labels) -> float:
    _, logits = feature_net.features(net, images)
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def train(seed: int, epochs: int, batch_size: int, lr: float, max_shift: int) -> dict:
    """Train from scratch; returns the Flax variables, feature scale calibrated."""
    images, labels = digits_arrays("train")
    n = len(images)
    steps_per_epoch = n // batch_size
    optimizer = optax.adam(optax.cosine_decay_schedule(lr, epochs * steps_per_epoch))
    variables = feature_net.init_variables(seed)
    params, constants = variables["params"], variables["constants"]
    step = make_train_step(optimizer, constants, max_shift)
    opt_state = optimizer.init(params)
    order_rng = np.random.default_rng(seed)
    rng = jax.random.PRNGKey(seed + 1)
    for epoch in range(epochs):
        order = order_rng.permutation(n)
        losses = []
        for s in range(steps_per_epoch):
            idx = order[s * batch_size : (s + 1) * batch_size]
            rng, step_rng = jax.random.split(rng)
            params, opt_state, loss = step(params, opt_state, step_rng, images[idx], labels[idx])
            losses.append(loss)
        if epoch % 5 == 4 or epoch == epochs - 1:
            print(f"epoch {epoch + 1:3d}  loss {float(np.mean(losses)):.4f}", flush=True)
    return feature_net.calibrate_feature_scale(dict(variables, params=params), images)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=feature_net.DEFAULT_PATH, help="weights file (.npz)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--max-shift", type=int, default=1, help="augmentation, pixels")
    args = parser.parse_args()
    require(args.epochs >= 1, "--epochs", f"must be >= 1, got {args.epochs}")
    require(1 <= args.batch_size <= 1500, "--batch-size", "must be in 1..1500 (training digits)")
    require(args.lr > 0, "--lr", f"must be positive, got {args.lr}")
    require(args.max_shift >= 0, "--max-shift", f"must be >= 0, got {args.max_shift}")
    start = time.time()
    variables = train(args.seed, args.epochs, args.batch_size, args.lr, args.max_shift)
    seconds = time.time() - start
    net = feature_net.from_variables(variables)
    train_acc = accuracy(net, *digits_arrays("train"))
    test_acc = accuracy(net, *digits_arrays("test"))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    metadata = {
        "command": feature_net.TRAIN_COMMAND,
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "max_shift": args.max_shift,
        "train_accuracy": train_acc,
        "test_accuracy": test_acc,
        "num_test": len(digits_arrays("test")[1]),
        "train_seconds": round(seconds, 1),
        "jax_version": jax.__version__,
    }
    feature_net.save(args.out, variables, metadata)
    print(
        f"{net.identity}: train accuracy {train_acc:.4f}, test accuracy {test_acc:.4f} "
        f"({seconds:.0f} s); wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} KiB)"
    )


if __name__ == "__main__":
    try:
        main()
    except ConfigError as e:
        sys.exit(f"error: {e}")
