"""NCSN v1 score network (Song & Ermon 2019, "Generative Modeling by Estimating Gradients of the
Data Distribution"): CondRefineNetDilated with conditional instance norm++ on the noise level.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from models import ncsn_layers, normalization
from utils import bcast, require


def sigma_to_index(sigma, sigma_min: float, sigma_max: float, num_scales: int):
    """Index i of sigma in the geometric table sigma_i = exp(linspace(log sigma_max,
    log sigma_min, num_scales)) (i = 0 is sigma_max); off-table sigmas go to the nearest
    index in log space, clipped to [0, num_scales - 1].

    Args:
      sigma: noise std, [B].
      sigma_min, sigma_max, num_scales: the table.

    Returns:
      int32 [B].
    """
    sigma = jnp.asarray(sigma, jnp.float32)
    if num_scales == 1:
        return jnp.zeros(sigma.shape, jnp.int32)
    log_ratio = float(np.log(sigma_max) - np.log(sigma_min))
    frac = (float(np.log(sigma_max)) - jnp.log(sigma)) / log_ratio
    idx = jnp.clip(jnp.round(frac * (num_scales - 1)), 0, num_scales - 1)
    return idx.astype(jnp.int32)


class NCSN(nn.Module):
    """NCSN v1: the noise-conditional dilated RefineNet, s(x, sigma_i) for one of L levels.

    Encoder: 4 stages of 2 residual blocks (nf, 2nf down, 2nf dilation 2, 2nf dilation 4; one
    real 2x downsampling); decoder: 4 RefineBlocks with conditional norms and average-pooling
    CRP. Every norm is conditional instance norm++ indexed by the noise level.

    The SDE paper's 'ncsn' model returns the raw network output as the score (its config sets
    model.scale_by_sigma=False and the model never divides); `scale_by_sigma=True` divides
    by sigma as NCSNv2 does.

    Attributes:
      nf: base channels.
      normalization: model.normalization; only 'InstanceNorm++' has a conditional form.
      nonlinearity: model.nonlinearity ('elu').
      interpolation: MSF resize, 'bilinear' or 'nearest'.
      sigma_min, sigma_max, num_scales: the geometric noise table the index is read from.
      scale_by_sigma: divide the output by sigma.
      image_size, num_channels: input H = W and C.
      centered: inputs already in [-1, 1]; otherwise x in [0, 1] is mapped to 2x - 1.
    """

    nf: int = 128
    normalization: str = "InstanceNorm++"
    nonlinearity: str = "elu"
    interpolation: str = "bilinear"
    sigma_min: float = 0.01
    sigma_max: float = 1.0
    num_scales: int = 10
    scale_by_sigma: bool = False
    image_size: int = 32
    num_channels: int = 3
    centered: bool = False

    STAGES: ClassVar[tuple[ncsn_layers.Stage, ...]] = (
        (1, False, 1),
        (2, True, 1),
        (2, True, 2),
        (2, True, 4),
    )
    REFINE_MULTS: ClassVar[tuple[int, ...]] = (2, 2, 1, 1)

    def _check(self, x):
        ncsn_layers.check_refinenet_config("ncsn", x, self, self.STAGES)
        require(self.num_scales >= 1, "model.num_scales", f"must be >= 1, got {self.num_scales}")
        require(
            0 < self.sigma_min < self.sigma_max,
            "model.sigma_min/model.sigma_max",
            f"need 0 < sigma_min < sigma_max, got {self.sigma_min} and {self.sigma_max}",
        )

    @nn.compact
    def __call__(self, x, labels, train: bool = False):
        """Score of the sigma-perturbed data.

        Args:
          x: [B, H, W, C] noisy images.
          labels: [B] noise std sigma (mapped to its index in the noise table).
          train: unused (no dropout or batch statistics).

        Returns:
          [B, H, W, C].
        """
        self._check(x)
        norm = normalization.get_norm(self.normalization, num_classes=self.num_scales)
        idx = sigma_to_index(labels, self.sigma_min, self.sigma_max, self.num_scales)  # [B]
        h = x if self.centered else 2.0 * x - 1.0  # [B, H, W, C]
        h = ncsn_layers.RefineNet(
            nf=self.nf,
            out_channels=x.shape[-1],
            stages=self.STAGES,
            refine_mults=self.REFINE_MULTS,
            norm=norm,
            act=ncsn_layers.get_act(self.nonlinearity),
            conditional_refine=True,
            interpolation=self.interpolation,
        )(h, idx)  # [B, H, W, C]
        if self.scale_by_sigma:
            h = h / bcast(labels, h)
        return h
