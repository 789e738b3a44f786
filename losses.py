"""Score-matching objectives and the train-step factory.

Denoising score matching in continuous time (Song et al. 2021, eq. 7; likelihood weighting of
Song et al. 2021b), discrete SMLD (Song & Ermon 2019) and DDPM (Ho et al. 2020) losses, sliced
score matching (Song et al. 2019) and exact score matching (Hyvarinen 2005) on perturbed data,
and EDM's preconditioned denoiser loss (Karras et al. 2022, eq. 2, 8 and Table 1).
Loss functions return per-example terms [B]; the caller reduces.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import optax

import sde_lib
from models import classifier as classifier_mod
from models import utils as mutils
from utils import ConfigError, batch_sum, bcast, choose


def _reduce(x, reduce_mean: bool):
    """Per-example reduction over data dims: [B, ...] -> [B]."""
    s = batch_sum(x)
    return s / (x[0].size) if reduce_mean else s


COND_KEYS = ("context", "context_mask", "class_labels")


def split_batch(batch):
    """(x [B, ...], condition dict) of a batch: an array, or a dict {'x': ..., **condition}."""
    if isinstance(batch, dict):
        return batch["x"], {k: batch[k] for k in COND_KEYS if k in batch}
    return batch, {}


def drop_class_labels(rng, class_labels, p_drop: float, num_classes: int):
    """Classifier-free guidance training (Ho & Salimans 2021): each label replaced by the null
    class `num_classes` with probability `p_drop`.

    Args:
      rng: PRNG key. class_labels: [B] int in [0, num_classes). p_drop: in [0, 1).
      num_classes: K; the null class is K.
    Returns:
      [B] int32 labels.
    """
    drop = jax.random.uniform(rng, class_labels.shape) < p_drop
    return jnp.where(drop, num_classes, class_labels).astype(jnp.int32)


def with_label_dropout(loss_fn, p_drop: float, num_classes: int):
    """loss_fn(rng, params, batch) on dict batches {'x', 'class_labels', ...} with
    `drop_class_labels` applied first (p_drop 0: the labels pass unchanged)."""
    if not 0.0 <= p_drop < 1.0:
        raise ConfigError(f"training.cond_drop_prob={p_drop} must be in [0, 1)")

    def dropped_loss_fn(rng, params, batch):
        r_drop, r_loss = jax.random.split(rng)
        labels = drop_class_labels(r_drop, batch["class_labels"], p_drop, num_classes)
        return loss_fn(r_loss, params, {**batch, "class_labels": labels})

    return dropped_loss_fn


def get_sde_loss_fn(sde, model, train, reduce_mean=True, likelihood_weighting=False):
    """Continuous-time DSM: E_t lambda(t) |s(x_t, t) - grad log p_0t(x_t | x_0)|^2.

    lambda(t) = std(t)^2 by default, or g(t)^2 with `likelihood_weighting`.
    """

    def loss_fn(rng, params, batch):
        batch, cond = split_batch(batch)
        t_rng, z_rng, d_rng = jax.random.split(rng, 3)
        b = batch.shape[0]
        t = jax.random.uniform(t_rng, (b,), minval=sde.eps, maxval=sde.T)
        z = jax.random.normal(z_rng, batch.shape)
        mean, std = sde.marginal_prob(batch, t)
        x_t = mean + bcast(std, batch) * z
        score_fn = mutils.get_score_fn(sde, model, {"params": params}, True, train, d_rng,
                                       **cond)
        score = score_fn(x_t, t)
        if likelihood_weighting:
            g2 = sde.sde(jnp.zeros_like(batch), t)[1] ** 2
            return _reduce((score + z / bcast(std, z)) ** 2, reduce_mean) * g2
        return _reduce((score * bcast(std, z) + z) ** 2, reduce_mean)

    return loss_fn


def _grid_time(sde, idx):
    """Time t_i whose discrete index is i, so sde.timestep(t_i) == i."""
    return idx.astype(jnp.float32) * sde.T / max(sde.N - 1, 1)


def get_smld_loss_fn(sde, model, train, reduce_mean=False):
    """NCSN loss: sigma_i^2 |s(x + sigma_i z, sigma_i) + z / sigma_i|^2, i ~ U{0..N-1}."""
    if not isinstance(sde, sde_lib.VESDE):
        raise ConfigError("training.continuous=False with the SMLD loss needs training.sde='vesde'")

    def loss_fn(rng, params, batch):
        batch, cond = split_batch(batch)
        i_rng, z_rng, d_rng = jax.random.split(rng, 3)
        idx = jax.random.randint(i_rng, (batch.shape[0],), 0, sde.N)
        sigma = sde.discrete_sigmas[idx]
        z = jax.random.normal(z_rng, batch.shape)
        score_fn = mutils.get_score_fn(sde, model, {"params": params}, False, train, d_rng,
                                       **cond)
        score = score_fn(batch + bcast(sigma, z) * z, _grid_time(sde, idx))
        return _reduce((score * bcast(sigma, z) + z) ** 2, reduce_mean)

    return loss_fn


def get_ddpm_loss_fn(sde, model, train, reduce_mean=True, prediction_type="epsilon"):
    """DDPM loss: |eps_theta(sqrt(abar_i) x + sqrt(1 - abar_i) z, i) - z|^2, i ~ U{0..N-1}.

    prediction_type 'v_prediction' regresses v = sqrt(abar_i) z - sqrt(1 - abar_i) x instead
    (Salimans & Ho 2022; Stable Diffusion 2.x), the network's own output and target."""
    choose("prediction_type", prediction_type, mutils.PREDICTION_TYPES)
    if type(sde) is not sde_lib.VPSDE:
        raise ConfigError("training.continuous=False with the DDPM loss needs training.sde='vpsde'")

    def loss_fn(rng, params, batch):
        batch, cond = split_batch(batch)
        i_rng, z_rng, d_rng = jax.random.split(rng, 3)
        idx = jax.random.randint(i_rng, (batch.shape[0],), 0, sde.N)
        z = jax.random.normal(z_rng, batch.shape)
        x_t = bcast(sde.sqrt_alphas_cumprod[idx], z) * batch
        x_t = x_t + bcast(sde.sqrt_1m_alphas_cumprod[idx], z) * z
        labels = idx.astype(jnp.float32)
        out = mutils.get_model_fn(model, {"params": params}, train, d_rng, **cond)(x_t, labels)
        target = z
        if prediction_type == "v_prediction":
            target = bcast(sde.sqrt_alphas_cumprod[idx], z) * z - bcast(
                sde.sqrt_1m_alphas_cumprod[idx], z) * batch
        return _reduce((out - target) ** 2, reduce_mean)

    return loss_fn


def _divergence(score_fn, x, t, rng, mode):
    """Per-example divergence of score_fn in x: exact trace, or a sliced (v^T J v) estimate."""
    if mode == "exact":
        d = x[0].size
        flat = x.reshape(x.shape[0], d)

        def diag(k):
            e = jnp.zeros_like(flat).at[:, k].set(1.0).reshape(x.shape)
            jv = jax.jvp(lambda y: score_fn(y, t), (x,), (e,))[1]
            return jv.reshape(x.shape[0], d)[:, k]

        return jnp.sum(jax.vmap(diag)(jnp.arange(d)), axis=0)
    v = jax.random.rademacher(rng, x.shape, dtype=x.dtype)
    jv = jax.jvp(lambda y: score_fn(y, t), (x,), (v,))[1]
    return batch_sum(v * jv)


def get_score_matching_loss_fn(sde, model, train, mode="sliced", reduce_mean=True):
    """Implicit score matching at noise level t on x_t ~ p_t, weighted by std(t)^2:

    std^2 [tr(grad_x s(x_t, t)) + |s(x_t, t)|^2 / 2]; `mode` 'exact' takes the full Jacobian
    trace (low-dimensional data), 'sliced' the Rademacher projection v^T (grad_x s) v.
    """
    choose("training.method", mode, ("sliced", "exact"))

    def loss_fn(rng, params, batch):
        batch, cond = split_batch(batch)
        t_rng, z_rng, v_rng, d_rng = jax.random.split(rng, 4)
        b = batch.shape[0]
        t = jax.random.uniform(t_rng, (b,), minval=sde.eps, maxval=sde.T)
        mean, std = sde.marginal_prob(batch, t)
        x_t = mean + bcast(std, batch) * jax.random.normal(z_rng, batch.shape)
        score_fn = mutils.get_score_fn(sde, model, {"params": params}, True, train, d_rng,
                                       **cond)
        div = _divergence(score_fn, x_t, t, v_rng, mode)
        sq = batch_sum(score_fn(x_t, t) ** 2)
        per = (div + 0.5 * sq) * std**2
        return per / batch[0].size if reduce_mean else per

    return loss_fn


def get_edm_loss_fn(sde, model, train, reduce_mean=True, P_mean=-1.2, P_std=1.2):
    """EDM loss: lambda(sigma) |D(x + sigma n; sigma) - x|^2 with ln sigma ~ N(P_mean, P_std^2)
    and lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 (Karras et al. 2022, Table 1).

    The denoiser is D = x_t + sigma^2 s(x_t, sigma), s the preconditioned score of
    models/utils.py, so conditioning and the network call are those of every other loss.
    """
    if not isinstance(sde, sde_lib.EDMSDE):
        raise ConfigError(f"training.method='edm' needs training.sde='edmsde', got "
                          f"{type(sde).__name__}")
    if not P_std > 0:
        raise ConfigError(f"training.P_std must be > 0, got {P_std}")
    sigma_data = sde.sigma_data

    def loss_fn(rng, params, batch):
        batch, cond = split_batch(batch)
        s_rng, n_rng, d_rng = jax.random.split(rng, 3)
        sigma = jnp.exp(P_mean + P_std * jax.random.normal(s_rng, (batch.shape[0],)))  # [B]
        x_t = batch + bcast(sigma, batch) * jax.random.normal(n_rng, batch.shape)
        score_fn = mutils.get_score_fn(sde, model, {"params": params}, True, train, d_rng,
                                       **cond)
        denoised = x_t + bcast(sigma**2, x_t) * score_fn(x_t, sigma)  # D(x_t; sigma)
        weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
        return weight * _reduce((denoised - batch) ** 2, reduce_mean)

    return loss_fn


def get_classifier_loss_fn(sde, classifier, train: bool):
    """Cross-entropy of a noise-conditional classifier on perturbed data of `sde`:
    -log p_t(y | x(t)), x(t) = alpha(t) x(0) + sigma(t) z, t ~ U[eps, T] (Song et al. 2021,
    App. I.1). Batches are {'x' [B, ...], 'class_labels' [B]}; returns [B]."""
    def loss_fn(rng, params, batch):
        x, cond = split_batch(batch)
        t_rng, z_rng, d_rng = jax.random.split(rng, 3)
        t = jax.random.uniform(t_rng, (x.shape[0],), minval=sde.eps, maxval=sde.T)
        mean, std = sde.marginal_prob(x, t)
        x_t = mean + bcast(std, x) * jax.random.normal(z_rng, x.shape)
        logits = classifier_mod.noisy_logits(classifier, {"params": params}, sde, x_t, t,
                                             train, d_rng)
        log_p = jax.nn.log_softmax(logits, axis=-1)  # [B, K]
        y = cond["class_labels"].astype(jnp.int32)
        return -jnp.take_along_axis(log_p, y[:, None], axis=-1)[:, 0]

    return loss_fn


LOSS_METHODS = ("dsm", "sliced", "exact", "edm")


def get_loss_fn(sde, model, train, method="dsm", continuous=True, reduce_mean=True,
                likelihood_weighting=False, P_mean=-1.2, P_std=1.2, prediction_type="epsilon"):
    """Dispatch to one objective. method: 'dsm' (denoising; discrete SMLD/DDPM when not
    `continuous`), 'sliced' or 'exact' score matching (continuous time only), 'edm' (EDM's
    loss with ln sigma ~ N(P_mean, P_std^2); needs the EDM SDE). prediction_type
    'v_prediction' (a v network, e.g. Stable Diffusion 2.x) is the discrete DDPM loss only."""
    choose("training.method", method, LOSS_METHODS)
    if prediction_type != "epsilon":
        if method != "dsm" or continuous or type(sde) is not sde_lib.VPSDE:
            raise ConfigError(f"prediction_type={prediction_type!r} trains with the discrete "
                              "DDPM loss only: training.method='dsm', training.continuous=False")
        return get_ddpm_loss_fn(sde, model, train, reduce_mean, prediction_type)
    if method == "edm":
        if not continuous or likelihood_weighting:
            raise ConfigError("training.method='edm' needs training.continuous=True and "
                              "training.likelihood_weighting=False")
        return get_edm_loss_fn(sde, model, train, reduce_mean, P_mean, P_std)
    if method != "dsm":
        return get_score_matching_loss_fn(sde, model, train, method, reduce_mean)
    if continuous:
        return get_sde_loss_fn(sde, model, train, reduce_mean, likelihood_weighting)
    if isinstance(sde, sde_lib.VESDE):
        return get_smld_loss_fn(sde, model, train, reduce_mean)
    if type(sde) is sde_lib.VPSDE:
        return get_ddpm_loss_fn(sde, model, train, reduce_mean)
    raise ConfigError("training.continuous=False is defined for training.sde='vesde' or 'vpsde'")


# ---------------------------------------------------------------------------------------------
# Optimiser, train state and step
# ---------------------------------------------------------------------------------------------


@flax.struct.dataclass
class TrainState:
    step: jnp.ndarray
    params: dict
    ema_params: dict
    opt_state: optax.OptState


def get_optimizer(lr=2e-4, beta1=0.9, eps=1e-8, warmup=5000, grad_clip=1.0, weight_decay=0.0,
                  optimizer="adam", schedule="constant", total_steps=None):
    """Adam(W) with linear warm-up to `lr` over `warmup` steps and global-norm clipping
    (`grad_clip` < 0 turns clipping off). `schedule` 'cosine' then decays to 0 at `total_steps`."""
    choose("optim.optimizer", str(optimizer).lower(), ("adam", "adamw"))
    choose("optim.schedule", schedule, ("constant", "cosine"))
    # Always a schedule function and always a clip stage, so the optimiser state has the same
    # structure whatever the values (a checkpoint restores under changed lr/warmup/clip).
    if schedule == "cosine":
        schedule = optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1),
                                                      max(total_steps, warmup + 1))
    elif warmup > 0:
        schedule = optax.linear_schedule(0.0, lr, warmup)
    else:
        schedule = optax.constant_schedule(lr)
    if weight_decay > 0 or optimizer.lower() == "adamw":
        opt = optax.adamw(schedule, b1=beta1, eps=eps, weight_decay=weight_decay)
    else:
        opt = optax.adam(schedule, b1=beta1, eps=eps)
    clip = optax.clip_by_global_norm(grad_clip) if grad_clip >= 0 else optax.identity()
    return optax.chain(clip, opt)


def init_train_state(params, optimizer) -> TrainState:
    """Step 0; the EMA starts as a copy of the parameters (separate buffers for donation)."""
    ema = jax.tree.map(jnp.copy, params)
    return TrainState(jnp.zeros((), jnp.int32), params, ema, optimizer.init(params))


def ema_decay(ema_rate: float, step, warmup: bool = False):
    """The EMA decay applied after update number `step` + 1.

    With `warmup` the decay is min(ema_rate, (1 + n) / (10 + n)) for the n-th update (the
    num_updates rule of TensorFlow's ExponentialMovingAverage): early in training the average
    forgets the random initialisation quickly, which matters for short runs whose length is
    comparable to 1 / (1 - ema_rate).
    """
    if not warmup:
        return jnp.asarray(ema_rate, jnp.float32)
    n = jnp.asarray(step, jnp.float32)
    return jnp.minimum(jnp.float32(ema_rate), (1.0 + n) / (10.0 + n))


def get_step_fn(loss_fn, optimizer, ema_rate: float, ema_warmup: bool = False):
    """One optimisation step: (state, batch [B, ...], rng) -> (state, mean loss).

    The EMA decays at `ema_rate`, or at `ema_decay(ema_rate, step, warmup=True)` with
    `ema_warmup`.
    """

    def step_fn(state: TrainState, batch, rng):
        def mean_loss(params):
            return jnp.mean(loss_fn(rng, params, batch))

        loss, grads = jax.value_and_grad(mean_loss)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        decay = ema_decay(ema_rate, state.step, ema_warmup)
        ema = jax.tree.map(lambda e, p: (e * decay + (1 - decay) * p).astype(e.dtype),
                           state.ema_params, params)
        return TrainState(state.step + 1, params, ema, opt_state), loss

    return step_fn


def get_multi_step_fn(step_fn, train_key):
    """`n` steps under lax.scan: (state, batches [n, B, ...]) -> (state, losses [n]).

    The loss randomness of step s is fold_in(train_key, s), so a resumed run draws the same.
    """

    def body(st, batch):
        return step_fn(st, batch, jax.random.fold_in(train_key, st.step))

    def multi_step(state, batches):
        if jax.tree.leaves(batches)[0].shape[0] == 1:  # one step needs no loop
            state, loss = body(state, jax.tree.map(lambda b: b[0], batches))
            return state, loss[None]
        return jax.lax.scan(body, state, batches)

    return multi_step


# ---------------------------------------------------------------------------------------------
# The KL autoencoder of latent diffusion (Rombach et al. 2022, appendix; Esser et al. 2021)
# ---------------------------------------------------------------------------------------------

REC_LOSSES = ("l1", "l2")


def hinge_d_loss(logits_real, logits_fake):
    """Hinge loss of the discriminator: (mean relu(1 - D(x)) + mean relu(1 + D(x_hat))) / 2."""
    return 0.5 * (jnp.mean(jax.nn.relu(1.0 - logits_real))
                  + jnp.mean(jax.nn.relu(1.0 + logits_fake)))


def adaptive_weight(nll_grad, g_grad, max_weight: float = 1e4):
    """|grad nll| / (|grad g| + 1e-4) at the decoder's last layer, clipped to [0, 1e4] and held
    constant (no gradient): the GAN term's weight relative to reconstruction (Esser et al.)."""
    w = jnp.linalg.norm(nll_grad) / (jnp.linalg.norm(g_grad) + 1e-4)
    return jax.lax.stop_gradient(jnp.clip(w, 0.0, max_weight))


def get_autoencoder_loss_fn(ae, rec_loss: str = "l1", kl_weight: float = 1e-6, disc=None):
    """The generator-side terms of the KL autoencoder for one batch.

    Returns losses_fn(rng, params, x [B, H, W, C]) -> (nll, kl, g, recon): nll the mean over the
    batch of sum |x - x_hat| / exp(s) + s (s = params['logvar'], a learned scalar log-variance;
    squared error for 'l2'), kl the mean posterior KL to N(0, I) (to be weighted by `kl_weight`
    by the caller), g = -mean D(x_hat) (0 without a discriminator), recon [B, H, W, C].
    """
    choose("autoencoder.rec_loss", rec_loss, REC_LOSSES)

    def losses_fn(rng, params, x):
        p_rng, d_rng = jax.random.split(rng)
        recon, posterior = ae.apply({"params": params["ae"]}, x, p_rng, sample_posterior=True,
                                    train=True, rngs={"dropout": d_rng})
        err = jnp.abs(x - recon) if rec_loss == "l1" else (x - recon) ** 2
        logvar = params["logvar"]
        nll = jnp.mean(batch_sum(err / jnp.exp(logvar) + logvar))
        kl = jnp.mean(posterior.kl())
        g = jnp.zeros(()) if disc is None else -jnp.mean(
            disc.apply({"params": params["disc"]}, recon))
        return nll, kl, g, recon

    return losses_fn


def get_autoencoder_step_fn(ae, optimizer, ema_rate: float, rec_loss: str = "l1",
                            kl_weight: float = 1e-6, disc=None, disc_weight: float = 0.5,
                            disc_start: int = 0, last_layer=("decoder", "conv_out", "kernel")):
    """One step of the autoencoder and (optional) PatchGAN discriminator, both updated by one
    optimiser over params {'ae', 'logvar', 'disc'}: (state, images, rng) -> (state, loss).

    Generator loss: nll + kl_weight kl + [step >= disc_start] disc_weight w g, w the adaptive
    weight at `last_layer` of the autoencoder; discriminator loss: the hinge loss on real
    images and (stopped) reconstructions, from `disc_start` on. The reported loss is the
    generator's.
    """
    losses_fn = get_autoencoder_loss_fn(ae, rec_loss, kl_weight, disc)

    def pick(tree):
        for name in last_layer:
            tree = tree[name]
        return tree

    def step_fn(state: TrainState, images, rng):
        params = state.params
        (nll, kl, g, recon), vjp = jax.vjp(lambda p: losses_fn(rng, p, images), params)
        zero_recon = jnp.zeros_like(recon)
        one = jnp.ones(())
        grads = vjp((one, jnp.asarray(kl_weight, jnp.float32), 0.0 * one, zero_recon))[0]
        loss = nll + kl_weight * kl
        if disc is not None:
            on = (state.step >= disc_start).astype(jnp.float32)
            g_grads = vjp((0.0 * one, 0.0 * one, one, zero_recon))[0]
            w = disc_weight * on * adaptive_weight(pick(grads["ae"]), pick(g_grads["ae"]))
            grads = jax.tree.map(lambda a, b: a + w * b, grads, g_grads)

            def d_loss(dp):
                real = disc.apply({"params": dp}, images)
                fake = disc.apply({"params": dp}, jax.lax.stop_gradient(recon))
                return on * hinge_d_loss(real, fake)

            grads["disc"] = jax.grad(d_loss)(params["disc"])
            loss = loss + w * g
        updates, opt_state = optimizer.update(grads, state.opt_state, params)
        new = optax.apply_updates(params, updates)
        decay = ema_decay(ema_rate, state.step, True)
        ema = jax.tree.map(lambda e, p: (e * decay + (1 - decay) * p).astype(e.dtype),
                           state.ema_params, new)
        return TrainState(state.step + 1, new, ema, opt_state), loss

    return step_fn
