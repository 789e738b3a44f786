"""Pictures of samples: 2-D scatter plots beside the data, and image grids, as PNG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def scatter_figure(samples, data=None, title: str = "samples"):
    """A matplotlib figure: samples (and the data, if given) as 2-D scatter plots."""
    panels = [(title, samples)] + ([("data", data)] if data is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
    ref = np.asarray(data if data is not None else samples)
    lo, hi = np.percentile(ref, 0.5, axis=0), np.percentile(ref, 99.5, axis=0)
    pad = 0.15 * (hi - lo)
    for ax, (name, pts) in zip(axes[0], panels, strict=True):
        pts = np.asarray(pts)
        ax.scatter(pts[:, 0], pts[:, 1], s=1.5, alpha=0.5, color="tab:blue")
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        ax.set_aspect("equal")
        ax.set_title(f"{name} (n={len(pts)})")
    fig.tight_layout()
    return fig


def save_scatter(path: str, samples, data=None, title: str = "samples") -> None:
    fig = scatter_figure(samples, data, title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def image_grid(images, ncol: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile [N, H, W, C] images in [0, 1] into one uint8 [rows*H, ncol*W, C] array."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    n, h, w, c = images.shape
    ncol = ncol or int(np.ceil(np.sqrt(n)))
    nrow = int(np.ceil(n / ncol))
    grid = np.ones((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), np.float32)
    for k in range(n):
        r, q = divmod(k, ncol)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h,
             pad + q * (w + pad): pad + q * (w + pad) + w] = images[k]
    return (grid * 255).round().astype(np.uint8)


def save_image_grid(path: str, images, ncol: int | None = None, scale: int = 1) -> np.ndarray:
    """Write an image grid PNG (nearest-neighbour upscaled by `scale`); returns the grid."""
    grid = image_grid(images, ncol)
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    img.save(path)
    return grid


def save_labelled_grid(path: str, images, labels, ncol: int | None = None, scale: int = 4,
                       width: int = 18) -> np.ndarray:
    """Write a PNG grid of [N, H, W, C] images in [0, 1], each upscaled by `scale` with its
    label (a prompt, wrapped at `width` characters) printed under it; returns the uint8 grid."""
    import textwrap

    from PIL import ImageDraw

    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    n, h, w, c = images.shape
    ncol = ncol or int(np.ceil(np.sqrt(n)))
    nrow = int(np.ceil(n / ncol))
    cell_w = max(w * scale, 6 * width + 4)
    text_h = 12 * 3
    canvas = Image.new("RGB", (ncol * cell_w, nrow * (h * scale + text_h)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for k in range(n):
        r, q = divmod(k, ncol)
        tile = (images[k] * 255).round().astype(np.uint8)
        tile = Image.fromarray(tile[..., 0] if c == 1 else tile).convert("RGB")
        tile = tile.resize((w * scale, h * scale), Image.NEAREST)
        x0, y0 = q * cell_w, r * (h * scale + text_h)
        canvas.paste(tile, (x0 + (cell_w - w * scale) // 2, y0))
        lines = textwrap.wrap(str(labels[k]), width)[:3]
        draw.multiline_text((x0 + 2, y0 + h * scale + 1), "\n".join(lines), fill=(0, 0, 0),
                            spacing=1)
    canvas.save(path)
    return np.asarray(canvas)
