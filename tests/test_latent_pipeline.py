"""The two-stage latent text-to-image pipeline through the CLI on tiny sizes: an autoencoder
run (with the PatchGAN path), then a latent text run that trains, resumes exactly after an
interruption, and samples from prompts; bad input stops with one line and writes nothing."""

import json
import os

import numpy as np
import pytest

from tests import image_runs

AE = "tests/text_tiny.py:autoencoder"
TEXT = "tests/text_tiny.py"


def _main(tmp_root, config, workdir, *overrides, mode="train"):
    return image_runs.start([f"--config={config}", f"--workdir={workdir}", f"--mode={mode}",
                             *overrides], tmp_root)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An autoencoder run, then (in parallel) a 4-step text run and a 2-step one to resume."""
    root = tmp_path_factory.mktemp("latent")
    ae = str(root / "ae")
    image_runs.check(image_runs.finish(_main(root, AE, ae)), "autoencoder run")
    latent = f"--config.latent.autoencoder_workdir={ae}"
    full, part = str(root / "full"), str(root / "part")
    procs = [_main(root, TEXT, full, latent), _main(root, TEXT, part, latent,
                                                     "--config.training.n_iters=2")]
    for p in procs:
        image_runs.check(image_runs.finish(p), "text run")
    image_runs.check(image_runs.finish(_main(root, TEXT, part, latent)), "resumed text run")
    return root, ae, full, part


def test_autoencoder_run_writes_reconstructions_and_scale_factor(runs):
    _, ae, _, _ = runs
    with open(os.path.join(ae, "autoencoder.json")) as f:
        info = json.load(f)
    assert info["latent_shape"] == [4, 4, 2] and info["step"] == 4
    assert 0 < info["scale_factor"] < 100 and np.isfinite(info["psnr_test"])
    assert os.path.exists(os.path.join(ae, "samples", "reconstructions_4.png"))
    losses = image_runs.losses(ae)
    assert len(losses) == 4 and all(np.isfinite(losses))


def test_text_run_resumes_exactly(runs):
    _, _, full, part = runs
    assert image_runs.losses(full) == pytest.approx(image_runs.losses(part), rel=1e-6)
    a = np.load(os.path.join(full, "samples", "samples_4.npz"))
    b = np.load(os.path.join(part, "samples", "samples_4.npz"))
    np.testing.assert_array_equal(a["samples"], b["samples"])
    assert a["samples"].shape == (2, 8, 8, 1) and len(a["prompts"]) == 2
    assert os.path.exists(os.path.join(full, "samples", "samples_4.png"))


def test_sample_from_prompts_through_the_cli(runs):
    root, ae, full, _ = runs
    prompts = os.path.join(str(root), "prompts.txt")
    with open(prompts, "w") as f:
        f.write("a handwritten seven\n\na handwritten one\n")
    rc, out, err = image_runs.finish(_main(
        root, TEXT, full, f"--config.latent.autoencoder_workdir={ae}",
        f"--config.sampling.prompts_file={prompts}", "--config.sampling.samples_per_prompt=2",
        "--config.sampling.guidance_scale=3.0", mode="sample"))
    assert rc == 0, err[-3000:]
    path = out.strip().split()[-1]
    data = np.load(path)
    assert list(data["prompts"]) == ["a handwritten seven"] * 2 + ["a handwritten one"] * 2
    assert data["samples"].shape == (4, 8, 8, 1) and float(data["guidance_scale"]) == 3.0
    assert 0.0 <= data["samples"].min() and data["samples"].max() <= 1.0
    assert os.path.exists(path[:-4] + ".png")


BAD = [
    ("--config.sampling.guidance_scale=-1.0", "sampling.guidance_scale"),
    ("--config.sampling.prompts= ; ", "sampling.prompts"),
    ("--config.model.context_dim=12", "model.context_dim"),
    ("--config.model.out_channels=3", "model.out_channels"),
]


@pytest.mark.parametrize("override,key", BAD)
def test_bad_sampling_input_is_one_line(runs, override, key):
    root, ae, full, _ = runs
    before = sorted(os.listdir(os.path.join(full, "samples")))
    prompts = [] if "prompts" in override else ["--config.sampling.prompts=a handwritten one"]
    rc, out, err = image_runs.finish(_main(root, TEXT, full,
                                           f"--config.latent.autoencoder_workdir={ae}",
                                           *prompts, override, mode="sample"))
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert rc == 1 and len(lines) == 1 and key in lines[0], err[-2000:]
    assert "Traceback" not in err
    assert sorted(os.listdir(os.path.join(full, "samples"))) == before


def test_missing_or_untrained_autoencoder_is_one_line(runs, tmp_path):
    root, ae, _, _ = runs
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    with open(os.path.join(ae, "config.json")) as f:
        (untrained / "config.json").write_text(f.read())
    for workdir, words in [(str(tmp_path / "nowhere"), "no run there"),
                           (str(untrained), "has not finished")]:
        rc, _, err = image_runs.finish(_main(root, TEXT, str(tmp_path / "w"),
                                             f"--config.latent.autoencoder_workdir={workdir}"))
        assert rc == 1 and "latent.autoencoder_workdir" in err and words in err, err[-2000:]
        assert "Traceback" not in err
        assert not os.path.exists(tmp_path / "w" / "checkpoints")


def test_inpaint_and_img2img_on_the_latent_text_run(runs):
    """sampling.task on a text run: the mask goes to the 4x4 latent grid, the test captions
    (or sampling.prompts) steer the edit, the known pixels come back exactly; --mode eval
    writes the task metrics."""
    root, ae, full, _ = runs
    latent = f"--config.latent.autoencoder_workdir={ae}"
    procs = [_main(root, TEXT, full, latent, "--config.sampling.task=inpaint",
                   "--config.sampling.mask=left_half", "--config.sampling.num_samples=3",
                   mode="sample"),
             _main(root, TEXT, full, latent, "--config.sampling.task=img2img",
                   "--config.sampling.strength=0.6", "--config.eval.num_samples=3",
                   "--config.sampling.prompts=a handwritten one", mode="eval")]
    (rc, out, err), (rc2, _, err2) = (image_runs.finish(p) for p in procs)
    assert rc == 0, err[-3000:]
    assert rc2 == 0, err2[-3000:]
    data = np.load(os.path.join(full, "samples", "inpaint_4.npz"))
    x, y, m = data["samples"], data["inputs"], data["masks"]
    assert x.shape == y.shape == (3, 8, 8, 1) and m[:, :, :4].max() == 0 and m[:, :, 4:].min() == 1
    np.testing.assert_array_equal(x[:, :, 4:], y[:, :, 4:])
    assert np.abs(x[:, :, :4] - y[:, :, :4]).max() > 0 and 0 <= x.min() and x.max() <= 1
    assert all(p.startswith("a handwritten") for p in data["prompts"])
    with open(os.path.join(full, "eval", "img2img_4.json")) as f:
        metrics = json.load(f)
    assert metrics["num_samples"] == 3 and np.isfinite(metrics["masked_mse"])
    prompts = np.load(os.path.join(full, "samples", "img2img_4.npz"))["prompts"]
    assert list(prompts) == ["a handwritten one"] * 3


def test_text_loss_reads_the_edm_noise_distribution(monkeypatch):
    """A text run's loss is built with the config's training.P_mean / P_std (EDM's ln sigma ~
    N(P_mean, P_std^2)), not the EDM paper's defaults."""
    import losses
    import pipeline
    from tests.text_tiny import get_config

    config = get_config()
    config.training.sde, config.training.method = "edmsde", "edm"
    config.model.sigma_min, config.model.sigma_max, config.model.sigma_data = 0.002, 80.0, 1.0
    config.training.P_mean, config.training.P_std = 1.0, 1.4
    seen = {}
    real = losses.get_edm_loss_fn

    def spy(sde, model, train, reduce_mean=True, P_mean=-1.2, P_std=1.2):
        seen.update(P_mean=P_mean, P_std=P_std)
        return real(sde, model, train, reduce_mean, P_mean, P_std)

    monkeypatch.setattr(losses, "get_edm_loss_fn", spy)
    pipeline.get_text_loss_fn(pipeline.build(config))
    assert seen == {"P_mean": 1.0, "P_std": 1.4}
