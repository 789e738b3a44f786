"""The one place that maps time to network labels and network output to a score, per SDE family.

VE networks are conditioned on sigma and output the score (dividing by sigma inside when
`scale_by_sigma`); VP / sub-VP networks predict the noise z of x_t = alpha x_0 + std z, so the
score is -output / std (Ho et al. 2020; Song et al. 2021, appendix), or they predict
v = alpha eps - sigma x_0 (Salimans & Ho 2022; Stable Diffusion 2.x). EDM networks are
preconditioned (Karras et al. 2022, Table 1): D(x) = c_skip x + c_out F(c_in x, c_noise) and the
score is (D - x) / sigma^2.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

import sde_lib
from utils import ConfigError, bcast, choose


def _identity_input(x, t):
    return x


class Parameterization(NamedTuple):
    """For one SDE and mode: label_fn(t) -> labels [B]; to_score(output, x, t) -> score;
    input_fn(x, t) -> the network's input (x itself unless preconditioned)."""

    label_fn: callable
    to_score: callable
    input_fn: callable = _identity_input


def _ve(sde: sde_lib.VESDE, continuous: bool) -> Parameterization:
    if continuous:
        label_fn = lambda t: sde.marginal_coef(t)[1]
    else:
        label_fn = lambda t: sde.discrete_sigmas[sde.timestep(t)]
    return Parameterization(label_fn, lambda out, x, t: out)


def _vp(sde: sde_lib.VPSDE, continuous: bool, prediction_type: str = "epsilon"
        ) -> Parameterization:
    if continuous:
        # discrete schedules: diffusers' timestep n at t_n = (n + 1) / N (fractional between)
        label_fn = (lambda t: t * sde.N - 1.0) if sde.discrete else (lambda t: t * 999.0)
        coef_fn = sde.marginal_coef
    else:
        label_fn = lambda t: sde.timestep(t).astype(jnp.float32)
        coef_fn = lambda t: (sde.sqrt_alphas_cumprod[sde.timestep(t)],
                             sde.sqrt_1m_alphas_cumprod[sde.timestep(t)])
    if prediction_type == "epsilon":
        return Parameterization(label_fn, lambda out, x, t: -out / bcast(coef_fn(t)[1], out))

    def v_to_score(out, x, t):
        # v = alpha eps - sigma x0 and x = alpha x0 + sigma eps with alpha^2 + sigma^2 = 1
        # give eps = sigma x + alpha v (Salimans & Ho 2022, App. D); the score is -eps / sigma.
        alpha, sigma = coef_fn(t)
        eps = bcast(sigma, x) * x + bcast(alpha, out) * out
        return -eps / bcast(sigma, out)

    return Parameterization(label_fn, v_to_score)


def _subvp(sde: sde_lib.subVPSDE, continuous: bool) -> Parameterization:
    if not continuous:
        raise ConfigError(
            "training.continuous=False is not defined for training.sde='subvpsde'; "
            "use continuous training"
        )
    return _vp(sde, continuous)


def edm_preconditioning(sigma, sigma_data: float):
    """EDM's preconditioning (Karras et al. 2022, Table 1) at noise level sigma.

    Args:
      sigma: [B] noise levels (> 0). sigma_data: the data's standard deviation.
    Returns:
      (c_skip, c_out, c_in, c_noise), each [B]: sigma_data^2 / (sigma^2 + sigma_data^2),
      sigma sigma_data / sqrt(sigma^2 + sigma_data^2), 1 / sqrt(sigma^2 + sigma_data^2) and
      log(sigma) / 4.
    """
    total = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data / jnp.sqrt(total)
    c_in = 1.0 / jnp.sqrt(total)
    c_noise = 0.25 * jnp.log(sigma)
    return c_skip, c_out, c_in, c_noise


def _edm(sde: sde_lib.EDMSDE, continuous: bool) -> Parameterization:
    if not continuous:
        raise ConfigError(
            "training.continuous=False is not defined for training.sde='edmsde'; "
            "use continuous training"
        )
    sigma_data = sde.sigma_data
    coef = lambda t: edm_preconditioning(sde.marginal_coef(t)[1], sigma_data)

    def input_fn(x, t):
        return bcast(coef(t)[2], x) * x

    def to_score(out, x, t):
        # (D - x) / sigma^2 with D = c_skip x + c_out F, written without the cancellation of
        # D - x at small sigma: c_out / sigma^2 F - (1 - c_skip) / sigma^2 x.
        sigma = sde.marginal_coef(t)[1]
        total = sigma**2 + sigma_data**2
        scale = sigma_data / (sigma * jnp.sqrt(total))
        return bcast(scale, out) * out - x / bcast(total, x)

    return Parameterization(lambda t: coef(t)[3], to_score, input_fn)


PARAMETERIZATIONS = {sde_lib.VESDE: _ve, sde_lib.VPSDE: _vp, sde_lib.subVPSDE: _subvp,
                     sde_lib.EDMSDE: _edm}
# What a network predicts: the noise (every family's default) or, for the VP SDE only,
# v = alpha eps - sigma x0 (diffusers' names).
PREDICTION_TYPES = ("epsilon", "v_prediction")


def get_parameterization(sde, continuous: bool, prediction_type: str = "epsilon"
                         ) -> Parameterization:
    """Labels and output->score map for `sde` (continuous or discrete training).

    Args:
      sde: the forward SDE. continuous: continuous-time labels or grid indices.
      prediction_type: 'epsilon' (the family's own output) or 'v_prediction' (VP SDE only).
    Returns:
      the Parameterization.
    """
    choose("model.prediction_type", prediction_type, PREDICTION_TYPES)
    try:
        make = PARAMETERIZATIONS[type(sde)]
    except KeyError:
        raise ConfigError(f"no score parameterization for SDE type {type(sde).__name__}") from None
    if prediction_type == "epsilon":
        return make(sde, continuous)
    if type(sde) is not sde_lib.VPSDE:
        raise ConfigError(f"model.prediction_type={prediction_type!r} needs training.sde="
                          f"'vpsde' (alpha^2 + sigma^2 = 1), got {type(sde).__name__}")
    return _vp(sde, continuous, prediction_type)


def get_model_fn(model, variables, train: bool = False, rng=None, **cond):
    """model_fn(x, labels) -> network output, with dropout rng when training.

    `cond` holds conditioning keyword arguments (context, context_mask, class_labels); those
    that are None are not passed, so unconditional networks are called as before.
    """
    cond = {k: v for k, v in cond.items() if v is not None}

    def model_fn(x, labels):
        rngs = {"dropout": rng} if (train and rng is not None) else None
        return model.apply(variables, x, labels, train=train, rngs=rngs, **cond)

    return model_fn


def _null_like(null, like):
    """The unconditional half of a condition: `null` broadcast to the batch of `like`."""
    null = jnp.asarray(null).astype(like.dtype)
    if null.ndim == like.ndim - 1:
        null = null[None]
    return jnp.broadcast_to(null, like.shape)


def _doubled(cond: dict, null: dict) -> dict:
    """Each condition [B, ...] stacked over its null [B, ...] -> [2B, ...]."""
    out = {}
    for key, value in cond.items():
        if value is None:
            continue
        if null.get(key) is None:
            raise ConfigError(f"guidance needs a null_{key} beside {key}")
        out[key] = jnp.concatenate([value, _null_like(null[key], value)], axis=0)
    return out


def get_score_fn(sde, model, variables, continuous: bool = True, train: bool = False, rng=None,
                 *, context=None, context_mask=None, class_labels=None, guidance_scale=None,
                 null_context=None, null_context_mask=None, null_class_labels=None,
                 prediction_type: str = "epsilon"):
    """score_fn(x [B, ...], t [B]) -> score [B, ...] of a network under `sde`.

    Args:
      sde: the forward SDE the network was trained for.
      model: a Flax module called as model.apply(variables, x, labels, train=..., **cond).
      variables: its variables, e.g. {'params': params}.
      continuous: continuous-time labels (sigma(t) / 999 t / EDM's c_noise) or discrete ones
        (grid index).
      train: dropout on (needs `rng`).
      context, context_mask, class_labels: the condition ([B, L, D], [B, L], [B]), closed over.
      guidance_scale: None for the plain conditional score; otherwise w of classifier-free
        guidance, s_u + w (s_c - s_u), with the unconditional half from the null_* conditions
        ([L, D] or [B, L, D], ...), both halves in one batched network call. w may be traced.
      prediction_type: 'epsilon' or 'v_prediction' (VP SDE; Stable Diffusion 2.x).
    Returns:
      A pure function score_fn(x, t).
    """
    param = get_parameterization(sde, continuous, prediction_type)
    cond = dict(context=context, context_mask=context_mask, class_labels=class_labels)
    if guidance_scale is None:
        model_fn = get_model_fn(model, variables, train, rng, **cond)

        def score_fn(x, t):
            return param.to_score(model_fn(param.input_fn(x, t), param.label_fn(t)), x, t)

        return score_fn

    if isinstance(guidance_scale, (int, float)) and guidance_scale < 0:
        raise ConfigError(f"sampling.guidance_scale={guidance_scale} must be >= 0")
    null = dict(context=null_context, context_mask=null_context_mask,
                class_labels=null_class_labels)
    both = get_model_fn(model, variables, train, rng, **_doubled(cond, null))

    def guided_score_fn(x, t):
        x2, t2 = jnp.concatenate([x, x], axis=0), jnp.concatenate([t, t], axis=0)
        out = both(param.input_fn(x2, t2), param.label_fn(t2))
        s_c, s_u = jnp.split(param.to_score(out, x2, t2), 2, axis=0)
        return s_u + guidance_scale * (s_c - s_u)

    return guided_score_fn


def classifier_guided_score_fn(score_fn, log_prob_fn, label, scale):
    """Classifier guidance (Song et al. 2021, Sec. 5 and App. I; Dhariwal & Nichol 2021):
    score_fn(x, t) + scale * grad_x log p_t(y | x).

    Args:
      score_fn: the (unconditional) score, score_fn(x, t) -> [B, ...].
      log_prob_fn: log_prob_fn(x, t) -> [B, K] log p_t(k | x) of a noise-conditional
        classifier (normalised over k), e.g. `GaussianMixture.log_class_posterior` closed over
        its SDE.
      label: the class y, an int or [B] ints in [0, K).
      scale: the guidance scale (1: the class-conditional score; may be traced).
    Returns:
      A pure function guided_score_fn(x, t) -> [B, ...].
    """

    def log_p_y(x, t):  # sum over the batch: each example's gradient is its own
        log_p = log_prob_fn(x, t)  # [B, K]
        y = jnp.broadcast_to(jnp.asarray(label, jnp.int32), log_p.shape[:1])
        return jnp.sum(jnp.take_along_axis(log_p, y[:, None], axis=-1))

    grad_fn = jax.grad(log_p_y)

    def guided_score_fn(x, t):
        return score_fn(x, t) + scale * grad_fn(x, t)

    return guided_score_fn
