"""NCSNv2 score networks (Song & Ermon 2020, "Improved Techniques for Training Score-Based
Generative Models"): unconditional dilated RefineNets whose output is divided by sigma.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn

from models import ncsn_layers, normalization
from utils import bcast


class NCSNv2(nn.Module):
    """NCSNv2 for 32-64 px (CIFAR-10 32, CelebA 64): s(x, sigma) = RefineNet(x) / sigma.

    Encoder stages (two residual blocks each): nf; 2nf down; 2nf down, dilation 2; 2nf down,
    dilation 4 (one real 2x downsampling). Decoder: RefineBlocks without norms, max-pooling
    CRP. Technique 3 of the paper: the network is unconditional and the output is divided by
    sigma.

    Attributes:
      nf: base channels.
      normalization: model.normalization: 'InstanceNorm++' (paper), 'InstanceNorm' or
        'VarianceNorm'.
      nonlinearity: model.nonlinearity ('elu').
      interpolation: MSF resize, 'bilinear' or 'nearest'.
      image_size, num_channels: input H = W and C.
      centered: inputs already in [-1, 1]; otherwise x in [0, 1] is mapped to 2x - 1.
    """

    nf: int = 128
    normalization: str = "InstanceNorm++"
    nonlinearity: str = "elu"
    interpolation: str = "bilinear"
    image_size: int = 32
    num_channels: int = 3
    centered: bool = False

    MODEL_NAME: ClassVar[str] = "ncsnv2"
    STAGES: ClassVar[tuple[ncsn_layers.Stage, ...]] = (
        (1, False, 1),
        (2, True, 1),
        (2, True, 2),
        (2, True, 4),
    )
    REFINE_MULTS: ClassVar[tuple[int, ...]] = (2, 2, 1, 1)

    @nn.compact
    def __call__(self, x, labels, train: bool = False):
        """Score of the sigma-perturbed data.

        Args:
          x: [B, H, W, C] noisy images.
          labels: [B] noise std sigma.
          train: unused (no dropout or batch statistics).

        Returns:
          [B, H, W, C].
        """
        ncsn_layers.check_refinenet_config(self.MODEL_NAME, x, self, self.STAGES)
        norm = normalization.get_norm(self.normalization)
        h = x if self.centered else 2.0 * x - 1.0  # [B, H, W, C]
        h = ncsn_layers.RefineNet(
            nf=self.nf,
            out_channels=x.shape[-1],
            stages=self.STAGES,
            refine_mults=self.REFINE_MULTS,
            norm=norm,
            act=ncsn_layers.get_act(self.nonlinearity),
            conditional_refine=False,
            interpolation=self.interpolation,
        )(h)  # [B, H, W, C]
        return h / bcast(labels, h)


class NCSNv2_128(NCSNv2):
    """NCSNv2 for 96-128 px (NCSNv2Deeper in the paper: LSUN church 96, tower/bedroom 128).

    Encoder stages: nf; 2nf down; 2nf down; 4nf down, dilation 2; 4nf down, dilation 4 (two
    real 2x downsamplings). Decoder outputs 4nf, 2nf, 2nf, nf, nf. Same fields as `NCSNv2`.
    """

    image_size: int = 128

    MODEL_NAME: ClassVar[str] = "ncsnv2_128"
    STAGES: ClassVar[tuple[ncsn_layers.Stage, ...]] = (
        (1, False, 1),
        (2, True, 1),
        (2, True, 1),
        (4, True, 2),
        (4, True, 4),
    )
    REFINE_MULTS: ClassVar[tuple[int, ...]] = (4, 2, 2, 1, 1)


class NCSNv2_256(NCSNv2):
    """NCSNv2 for 256 px (NCSNv2Deepest in the paper: FFHQ 256).

    Encoder stages: nf; 2nf down; 2nf down; 2nf down; 4nf down, dilation 2; 4nf down,
    dilation 4 (three real 2x downsamplings). Decoder outputs 4nf, 2nf, 2nf, 2nf, nf, nf.
    Same fields as `NCSNv2`.
    """

    image_size: int = 256

    MODEL_NAME: ClassVar[str] = "ncsnv2_256"
    STAGES: ClassVar[tuple[ncsn_layers.Stage, ...]] = (
        (1, False, 1),
        (2, True, 1),
        (2, True, 1),
        (2, True, 1),
        (4, True, 2),
        (4, True, 4),
    )
    REFINE_MULTS: ClassVar[tuple[int, ...]] = (4, 2, 2, 2, 1, 1)
