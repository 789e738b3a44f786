"""Make tests/data/inception_reference.npz: pytorch-fid's FID Inception on synthetic weights.

The weights are `inception.random_state_dict(seed)` (numpy only, so the test can rebuild them
without torch); pytorch-fid's own `fid_inception_v3` is built and loaded with them, and its pool
features and logits on a few deterministic images are saved with the inputs. Needs torch,
torchvision and pytorch-fid (`pip install --no-deps pytorch-fid`); no network access.

    python tools/make_inception_reference.py [--seed 0] [--out tests/data/inception_reference.npz]
"""

from __future__ import annotations

import argparse
import os
import sys
import types

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import inception  # noqa: E402


def import_pytorch_fid():
    """Import pytorch_fid.inception, tolerating a torchvision whose compiled ops fail to load.

    A torchvision wheel built for another torch (a CUDA wheel next to CPU torch) fails in
    `torchvision._meta_registrations`; the Inception model code is plain Python and needs none
    of those ops, so that one module is replaced by an empty one and the import retried.
    """
    try:
        import torchvision  # noqa: F401
    except (RuntimeError, OSError) as e:
        print(f"torchvision ops unavailable ({e}); importing its model code without them")
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("_meta_registrations")
        import torchvision  # noqa: F401
    from pytorch_fid import inception as pytorch_fid_inception

    return pytorch_fid_inception


def build_reference_model(state: dict[str, np.ndarray]):
    """pytorch-fid's (feature wrapper, full fid_inception_v3) loaded strictly with `state`."""
    import torch

    pfid = import_pytorch_fid()
    tensors = {k: torch.from_numpy(v) for k, v in state.items()}
    # fid_inception_v3() fetches the published weights through this one function: serve ours.
    pfid.load_state_dict_from_url = lambda *args, **kwargs: dict(tensors)
    features = pfid.InceptionV3(output_blocks=[pfid.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    classifier = pfid.fid_inception_v3().eval()
    return features, classifier


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="tests/data/inception_reference.npz")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(2)
    state = inception.random_state_dict(args.seed)
    features, classifier = build_reference_model(state)

    torch_shapes = {
        k: tuple(v.shape)
        for k, v in classifier.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    ours = inception.state_dict_shapes()
    if torch_shapes != ours:
        diff = sorted(set(torch_shapes.items()) ^ set(ours.items()))
        raise SystemExit(f"state-dict layout differs from pytorch-fid's, first: {diff[0]}")
    param_count = sum(p.numel() for p in classifier.parameters())
    buffer_count = sum(
        b.numel() for n, b in classifier.named_buffers() if not n.endswith("num_batches_tracked")
    )

    rng = np.random.default_rng(args.seed)
    images = rng.uniform(size=(2, 28, 36, 3)).astype(np.float32)  # NHWC in [0, 1]
    resize_in = rng.standard_normal((1, 7, 9, 2)).astype(np.float32)
    with torch.no_grad():
        pool = features(torch.from_numpy(images).permute(0, 3, 1, 2))[0][:, :, 0, 0]
        logits_unbiased = pool @ classifier.fc.weight.T
        logits = classifier.fc(pool)
        resized = {}
        for size in ((5, 13), (4, 4), (16, 3)):
            out = F.interpolate(
                torch.from_numpy(resize_in).permute(0, 3, 1, 2),
                size=size,
                mode="bilinear",
                align_corners=False,
            )
            resized[f"resize_{size[0]}x{size[1]}"] = out.permute(0, 2, 3, 1).numpy()

    layout = "\n".join(f"{k} {' '.join(map(str, s))}" for k, s in torch_shapes.items())
    np.savez(
        args.out,
        seed=args.seed,
        images=images,
        pool=pool.numpy(),
        logits=logits.numpy(),
        logits_unbiased=logits_unbiased.numpy(),
        resize_in=resize_in,
        **resized,
        torch_param_count=param_count,
        torch_buffer_count=buffer_count,
        torch_layout=np.bytes_(layout.encode()),
        torch_version=torch.__version__,
    )
    print(
        f"wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} KiB): {param_count:,} "
        f"parameters, {buffer_count:,} BN running-stat values; pool mean "
        f"{pool.mean():.3f} std {pool.std():.3f}, logits std {logits.std():.3f}"
    )


if __name__ == "__main__":
    main()
