"""Convert pytorch-fid's Inception weights (.pth, needs torch) to an .npz that loads without torch.

    python tools/inception_to_npz.py pt_inception-2015-12-05-6726825d.pth [out.npz]

The .npz keeps torch's key names and layouts (float32) and records the sha256 of the source
file and a checksum of the arrays (`inception.content_sha256`); `inception.load` recognises the
published weights from them.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import inception  # noqa: E402
from utils import ConfigError  # noqa: E402


def convert(src: str, dst: str) -> bool:
    """Write `dst` from the .pth `src`; returns whether `src` is the published file."""
    if not os.path.isfile(src):
        raise ConfigError(f"{src}: file not found")
    state, sha256 = inception.read_pth(src)
    inception.check_state_dict(state, src)
    arrays = {
        k: np.asarray(v, np.float32) for k, v in state.items() if k in inception.state_dict_shapes()
    }
    with open(dst, "wb") as f:  # a file object, so numpy keeps the name as given
        np.savez(
            f,
            **arrays,
            **{
                inception.SOURCE_KEY: np.str_(sha256),
                inception.CONTENT_KEY: np.str_(inception.content_sha256(arrays)),
            },
        )
    return sha256.startswith(inception.PUBLISHED_HASH_PREFIX)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="pytorch-fid state dict (.pth)")
    parser.add_argument("dst", nargs="?", help="output .npz (default: SRC with .npz)")
    args = parser.parse_args()
    dst = args.dst or os.path.splitext(args.src)[0] + ".npz"
    try:
        published = convert(args.src, dst)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    note = "published weights" if published else "NOT the published weights (checksum differs)"
    print(f"wrote {dst} ({note})")


if __name__ == "__main__":
    main()
