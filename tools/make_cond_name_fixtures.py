"""Reference fixtures for the latent text-to-image modules: parameter names/shapes, tiny random
weights, inputs and outputs of diffusers' AutoencoderKL and UNet2DConditionModel (conv and
linear proj_in) and transformers' CLIPTextModel (quick_gelu and gelu).

Run once in a separate environment with torch, diffusers and transformers (never a project
requirement):

    /tmp/torchenv/bin/python tools/make_cond_name_fixtures.py

Writes tests/data/cond_names.json (configs, state_dict names and shapes) and
tests/data/cond_parity.npz ('<model>/<tensor name>' weights, '<model>/in_*' inputs and
'<model>/out_*' outputs, images NHWC).
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

OUT_DIR = os.path.join(os.path.dirname(__file__), "..", "tests", "data")

AE_CONFIG = dict(in_channels=3, out_channels=3, block_out_channels=(8, 16),
                 down_block_types=("DownEncoderBlock2D", "AttnDownEncoderBlock2D"),
                 up_block_types=("AttnUpDecoderBlock2D", "UpDecoderBlock2D"),
                 layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=16)
UNET_BASE = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16, 16),
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                 layers_per_block=1, cross_attention_dim=12, norm_num_groups=4)
UNET_CONFIGS = {
    # SD 1.x style: conv proj_in, one head count for every level (diffusers calls it
    # attention_head_dim), one transformer block.
    "unet_conv": dict(UNET_BASE, attention_head_dim=2),
    # SD 2.x style: linear proj_in, per-level head counts giving head_dim 4, two transformer
    # blocks, and a class embedding.
    "unet_linear": dict(UNET_BASE, attention_head_dim=(2, 4, 4), use_linear_projection=True,
                        transformer_layers_per_block=2, num_class_embeds=3),
}
CLIP_BASE = dict(vocab_size=259, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                 num_attention_heads=2, max_position_embeddings=12, bos_token_id=256,
                 eos_token_id=257, pad_token_id=258, projection_dim=16)
CLIP_CONFIGS = {
    "clip_quick_gelu": dict(CLIP_BASE, hidden_act="quick_gelu"),
    "clip_gelu": dict(CLIP_BASE, hidden_act="gelu"),
}


def randomise(model: torch.nn.Module, seed: int):
    """Add noise to every parameter so that norms, biases and zero-initialised layers matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return model.eval()


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().permute(0, 2, 3, 1).numpy().astype(np.float32)


def nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()


def autoencoder_case(rng: np.random.Generator) -> tuple[torch.nn.Module, dict]:
    ae = randomise(AutoencoderKL(**AE_CONFIG), 0)
    x = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    z = rng.standard_normal((2, 8, 8, 4)).astype(np.float32)
    with torch.no_grad():
        post = ae.encode(nchw(x)).latent_dist
        recon = ae.decode(nchw(z)).sample
    return ae, {"in_x": x, "in_z": z, "out_mean": nhwc(post.mean),
                "out_logvar": nhwc(post.logvar), "out_decoded": nhwc(recon)}


def unet_case(name: str, rng: np.random.Generator) -> tuple[torch.nn.Module, dict]:
    cfg = UNET_CONFIGS[name]
    unet = randomise(UNet2DConditionModel(**cfg), 1)
    x = rng.standard_normal((2, 8, 8, 4)).astype(np.float32)
    t = np.array([3.0, 517.0], np.float32)
    ctx = rng.standard_normal((2, 5, 12)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], np.float32)
    extra = {}
    if cfg.get("num_class_embeds"):
        extra["class_labels"] = np.array([0, 2], np.int64)
    with torch.no_grad():
        out = unet(nchw(x), torch.from_numpy(t), torch.from_numpy(ctx),
                   encoder_attention_mask=torch.from_numpy(mask),
                   class_labels=(torch.from_numpy(extra["class_labels"]) if extra else None)).sample
    case = {"in_x": x, "in_t": t, "in_context": ctx, "in_mask": mask, "out": nhwc(out)}
    case.update({f"in_{k}": v for k, v in extra.items()})
    return unet, case


def clip_case(name: str) -> tuple[torch.nn.Module, dict]:
    model = randomise(CLIPTextModel(CLIPTextConfig(**CLIP_CONFIGS[name])), 2)
    ids = np.array([[256, 97, 32, 114, 101, 100, 257, 258, 258, 258],
                    [256, 98, 108, 117, 101, 32, 115, 113, 117, 257]], np.int64)
    mask = (ids != 258).astype(np.int64)
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    return model, {"in_ids": ids.astype(np.int32), "in_mask": mask.astype(np.int32),
                   "out_hidden": out.last_hidden_state.numpy(),
                   "out_pooled": out.pooler_output.numpy()}


def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cases = {"autoencoder": autoencoder_case(rng)}
    cases.update({n: unet_case(n, rng) for n in UNET_CONFIGS})
    cases.update({n: clip_case(n) for n in CLIP_CONFIGS})
    configs = {"autoencoder": AE_CONFIG, **UNET_CONFIGS, **CLIP_CONFIGS}
    names, arrays = {}, {}
    for model_name, (model, io) in cases.items():
        sd = model.state_dict()
        names[model_name] = {"config": configs[model_name],
                             "params": {k: list(v.shape) for k, v in sd.items()}}
        arrays.update({f"{model_name}/{k}": v.numpy().astype(np.float32) for k, v in sd.items()})
        arrays.update({f"{model_name}/{k}": v for k, v in io.items()})
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, "cond_names.json"), "w") as f:
        json.dump(names, f, indent=1, sort_keys=True)
    np.savez_compressed(os.path.join(OUT_DIR, "cond_parity.npz"), **arrays)
    total = sum(a.nbytes for a in arrays.values())
    print(f"wrote {len(arrays)} arrays ({total / 1e6:.2f} MB raw) to {OUT_DIR}")


if __name__ == "__main__":
    main()
