"""Tiny Stable Diffusion checkpoints in the diffusers directory layout and reference outputs of
diffusers / transformers for them: an SD 1.x-shaped one (conv proj_in, quick_gelu CLIP,
epsilon prediction, pad token <|endoftext|>) and an SD 2.x-shaped one (linear proj_in, per-level
head counts, gelu CLIP, v_prediction, pad token '!'), random weights, a tiny CLIP BPE vocabulary.

Run once in a separate environment (never a project requirement):

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 diffusers transformers safetensors numpy
    /tmp/torchenv/bin/python tools/make_sd_fixtures.py

Made with torch 2.13.0+cpu, diffusers 0.42.1, transformers 5.25.0, tokenizers 0.23.3.
Writes tests/data/sd_tiny/{sd1,sd2}/ (model_index.json, unet/, vae/, text_encoder/, tokenizer/,
scheduler/) and tests/data/sd_tiny/{sd1,sd2}_reference.npz: token ids of PROMPTS, the UNet,
VAE (encode mean / logvar, decode) and text-encoder outputs for fixed inputs (images NHWC), and
the latents after each of 5 steps of DDIMScheduler and DPMSolverMultistepScheduler (2M) driven
by the tiny UNet with classifier-free guidance.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "sd_tiny")
WORDS = ("a", "photo", "of", "the", "cat", "astronaut", "riding", "horse", "on", "mars",
         "painting", "red", "blue")
PROMPTS = ["a photo of a cat", "An astronaut   riding a HORSE on mars!",
           "painting of the red cat, the blue horse " * 10, "", "it's 42 cats\tand\n a CAFÉ :)"]
GUIDANCE, STEPS = 7.5, 5
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                beta_schedule="scaled_linear")
UNET = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16, 16),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            layers_per_block=1, norm_num_groups=4)
VAE = dict(in_channels=3, out_channels=3, block_out_channels=(8, 16),
           down_block_types=("DownEncoderBlock2D", "AttnDownEncoderBlock2D"),
           up_block_types=("AttnUpDecoderBlock2D", "UpDecoderBlock2D"), layers_per_block=1,
           latent_channels=4, norm_num_groups=4, sample_size=16)
CLIP = dict(intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=77, bos_token_id=0, eos_token_id=2, pad_token_id=1)
FAMILIES = {
    "sd1": dict(unet=dict(UNET, attention_head_dim=2, cross_attention_dim=16),
                vae=dict(VAE, scaling_factor=0.18215),
                clip=dict(CLIP, hidden_size=16, hidden_act="quick_gelu"),
                pad="<|endoftext|>", prediction_type="epsilon"),
    "sd2": dict(unet=dict(UNET, attention_head_dim=(2, 4, 4), cross_attention_dim=24,
                          use_linear_projection=True),
                vae=dict(VAE, scaling_factor=0.5),
                clip=dict(CLIP, hidden_size=24, hidden_act="gelu"),
                pad="!", prediction_type="v_prediction"),
}


def byte_alphabet() -> list[str]:
    """GPT-2 / CLIP's printable stand-ins for the 256 bytes, in CLIP's vocabulary order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    extra = [b for b in range(256) if b not in keep]
    codes = keep + [256 + i for i in range(len(extra))]
    return [chr(c) for c in codes]


def tiny_bpe() -> tuple[dict, list[str]]:
    """CLIP's layout: the bytes, the bytes with '</w>', merges spelling WORDS left to right,
    then <|startoftext|> and <|endoftext|> as the two highest ids."""
    chars = byte_alphabet()
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars])}
    merges = []
    for word in WORDS:
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        while len(symbols) > 1:
            pair = f"{symbols[0]} {symbols[1]}"
            joined = symbols[0] + symbols[1]
            if pair not in merges:
                merges.append(pair)
                vocab.setdefault(joined, len(vocab))
            symbols = [joined] + symbols[2:]
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def randomise(model: torch.nn.Module, seed: int, scale: float = 0.2) -> torch.nn.Module:
    """Add noise to every parameter so that norms, biases and zero-initialised layers matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return model.eval()


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().permute(0, 2, 3, 1).numpy().astype(np.float32)


def nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()


def write_json(path: str, obj: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)


def write_tokenizer(root: str, pad: str) -> CLIPTokenizer:
    vocab, merges = tiny_bpe()
    tok_dir = os.path.join(root, "tokenizer")
    write_json(os.path.join(tok_dir, "vocab.json"), vocab)
    with open(os.path.join(tok_dir, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>", "pad_token": pad}
    write_json(os.path.join(tok_dir, "special_tokens_map.json"), special)
    write_json(os.path.join(tok_dir, "tokenizer_config.json"),
               dict(special, model_max_length=77, do_lower_case=True,
                    tokenizer_class="CLIPTokenizer"))
    return CLIPTokenizer(vocab=os.path.join(tok_dir, "vocab.json"),
                         merges=os.path.join(tok_dir, "merges.txt"), pad_token=pad)


def token_ids(tokenizer: CLIPTokenizer, prompts: list[str]) -> np.ndarray:
    out = tokenizer(prompts, padding="max_length", max_length=77, truncation=True,
                    return_tensors="np")
    return out["input_ids"].astype(np.int32)


def guided_steps(scheduler, unet, x: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor):
    """STEPS steps of `scheduler` with eps_u + w (eps_c - eps_u), as the SD pipeline does."""
    scheduler.set_timesteps(STEPS)
    path = []
    with torch.no_grad():
        for t in scheduler.timesteps:
            out = unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
            out_u, out_c = out.chunk(2)
            x = scheduler.step(out_u + GUIDANCE * (out_c - out_u), t, x).prev_sample
            path.append(nhwc(x))
    return scheduler.timesteps.numpy().astype(np.int32), np.stack(path)


def make(name: str, spec: dict, rng: np.random.Generator) -> dict:
    root = os.path.join(OUT, name)
    tokenizer = write_tokenizer(root, spec["pad"])
    vocab_size = len(tokenizer.get_vocab())
    clip = randomise(CLIPTextModel(CLIPTextConfig(vocab_size=vocab_size, **spec["clip"])), 1)
    unet = randomise(UNet2DConditionModel(**spec["unet"]), 2)
    vae = randomise(AutoencoderKL(**spec["vae"]), 3)
    clip.save_pretrained(os.path.join(root, "text_encoder"))
    unet.save_pretrained(os.path.join(root, "unet"))
    vae.save_pretrained(os.path.join(root, "vae"))
    sched = dict(SCHEDULE, prediction_type=spec["prediction_type"], clip_sample=False,
                 set_alpha_to_one=False, steps_offset=1)
    DDIMScheduler(**sched).save_pretrained(os.path.join(root, "scheduler"))
    write_json(os.path.join(root, "model_index.json"),
               {"_class_name": "StableDiffusionPipeline",
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "scheduler": ["diffusers", "DDIMScheduler"]})

    ids = token_ids(tokenizer, PROMPTS)
    ref = {"prompts": np.array(PROMPTS), "ids": ids}
    with torch.no_grad():
        hidden = clip(input_ids=torch.from_numpy(ids).long()).last_hidden_state
    ref["text_hidden"] = hidden.numpy()
    cond, uncond = hidden[:2], hidden[3:4].expand(2, -1, -1)  # prompts 0, 1 against ""

    x = rng.standard_normal((2, 8, 8, 4)).astype(np.float32)
    t = np.array([999, 3], np.int64)
    with torch.no_grad():
        out = unet(nchw(x), torch.from_numpy(t), encoder_hidden_states=cond).sample
    ref["unet_out"] = nhwc(out)
    ref.update(unet_x=x, unet_t=t.astype(np.int32))

    image = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    z = rng.standard_normal((2, 8, 8, 4)).astype(np.float32)
    with torch.no_grad():
        post = vae.encode(nchw(image)).latent_dist
        ref.update(vae_image=image, vae_z=z, vae_mean=nhwc(post.mean),
                   vae_logvar=nhwc(post.logvar), vae_decoded=nhwc(vae.decode(nchw(z)).sample))

    x_T = rng.standard_normal((2, 8, 8, 4)).astype(np.float32)
    ref["x_T"] = x_T
    ddim = DDIMScheduler(**sched)
    ref["ddim_timesteps"], ref["ddim_path"] = guided_steps(ddim, unet, nchw(x_T), cond, uncond)
    dpm = DPMSolverMultistepScheduler(**SCHEDULE, prediction_type=spec["prediction_type"],
                                      algorithm_type="dpmsolver++", solver_order=2)
    ref["dpm_timesteps"], ref["dpm_path"] = guided_steps(dpm, unet, nchw(x_T), cond, uncond)
    np.savez_compressed(os.path.join(OUT, f"{name}_reference.npz"), **ref)
    return ref


def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    for name, spec in FAMILIES.items():
        ref = make(name, spec, rng)
        print(name, {k: v.shape for k, v in ref.items()})
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {total / 1e6:.2f} MB to {OUT}")


if __name__ == "__main__":
    main()
