"""Controllable generation from an unconditional score: inpainting and colourisation by replacement
(Song et al. 2021, Appendix I), RePaint's resampling (Lugmayr et al. 2022) and SDEdit image-to-image
(Meng et al. 2022), on the PC, ODE and fast samplers; each (rng, score_fn) -> (x, nfe).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

import fast_sampling
import sampling
from utils import ConfigError, bcast, require

# ---------------------------------------------------------------------------------------------
# Masks: 1 = known (kept), 0 = generated. Each name says which coordinates are generated.
# ---------------------------------------------------------------------------------------------

MASKS = {
    "left_half": "the left half of the width axis (of a vector: its first half) is generated",
    "centre_square": "the centre square of half the height and width (of a vector: its middle "
                     "half) is generated",
    "random_pixels": "each pixel (all its channels) is generated with probability 1/2",
}
_MASK_VALID = ", ".join(MASKS) + ", a .png file (white = known) or an array"


def _spatial(shape) -> tuple:
    """The axes a mask varies over: [D] for vectors, [H, W] of [H, W] or [H, W, C] images."""
    return tuple(shape) if len(shape) <= 2 else tuple(shape[:2])


def _named_mask(name, shape, rng):
    space = _spatial(shape)
    keep = np.ones(space, np.float32)
    if name == "left_half":
        keep[..., : space[-1] // 2] = 0.0
    elif name == "centre_square":
        lo = [n // 4 for n in space]
        keep[tuple(slice(a, a + n // 2) for a, n in zip(lo, space, strict=True))] = 0.0
    else:
        rng = jax.random.PRNGKey(0) if rng is None else rng
        keep = np.asarray(jax.random.bernoulli(rng, 0.5, space), np.float32)
    return keep


def _mask_from_array(array, shape):
    """A binary mask of `shape` from an array of `shape`, its spatial shape, or [H, W, 1]."""
    m = np.asarray(array, np.float32)
    space = _spatial(shape)
    if m.shape == space + (1,) and len(shape) == 3:
        m = m[..., 0]
    if m.shape not in (tuple(shape), space):
        raise ConfigError(f"sampling.mask: a mask of shape {m.shape} does not match data of "
                          f"shape {tuple(shape)} (give {tuple(shape)} or {space})")
    return (m >= 0.5).astype(np.float32)


def get_mask(name, shape, rng=None):
    """The inpainting mask of one example.

    Args:
      name: one of MASKS, a path to a PNG (grey >= 1/2 is known), or an array of `shape` or of
        its spatial shape. shape: one example's shape, [D] or [H, W] or [H, W, C].
      rng: key of 'random_pixels' (PRNGKey(0) if None).
    Returns:
      float32 mask of `shape`, 1 = known, 0 = generated (channels share a pixel's value).
    """
    shape = tuple(int(n) for n in shape)
    if isinstance(name, str) and name.lower().endswith(".png"):
        if not os.path.isfile(name):
            raise ConfigError(f"sampling.mask: no such file {name!r}")
        from PIL import Image

        with Image.open(name) as img:
            mask = _mask_from_array(np.asarray(img.convert("L"), np.float32) / 255.0, shape)
    elif isinstance(name, str):
        if name not in MASKS:
            raise ConfigError(f"sampling.mask={name!r} is not valid; choose one of: {_MASK_VALID}")
        mask = _named_mask(name, shape, rng)
    else:
        mask = _mask_from_array(name, shape)
    if mask.shape != shape:
        mask = np.broadcast_to(mask[..., None], shape)
    return np.ascontiguousarray(mask)


# ---------------------------------------------------------------------------------------------
# Colourisation's decoupled colour space: c = M x per pixel, M orthogonal, row 0 = (1, 1, 1)/sqrt 3
# ---------------------------------------------------------------------------------------------

COLOR_MATRIX = np.array([[1.0, 1.0, 1.0], [-2.0, 1.0, 1.0], [0.0, 1.0, -1.0]], np.float32) / \
    np.sqrt(np.array([[3.0], [6.0], [2.0]], np.float32))
GREY_SCALE = float(np.sqrt(3.0))  # decouple(x)[..., 0] = sqrt(3) * grey, grey = mean of R, G, B


def decouple(x):
    """RGB [..., 3] -> decoupled [..., 3]; channel 0 = (R + G + B) / sqrt(3) = sqrt(3) * grey."""
    return x @ jnp.asarray(COLOR_MATRIX).T


def couple(c):
    """Decoupled [..., 3] -> RGB [..., 3], the inverse (transpose) of decouple."""
    return c @ jnp.asarray(COLOR_MATRIX)


def project_to_grey(x, grey, iters: int = 40):
    """The nearest RGB image in [0, 1] whose channel mean is `grey`: the Euclidean projection
    onto the cube intersected with the plane mean(c) = grey, c = clip(x + lam, 0, 1) with the
    scalar lam per pixel found by bisection (mean(c) is non-decreasing in lam). A colourised
    sample leaves the unit cube where the model is unsure; clipping alone would change its
    grey, this keeps it.

    Args:
      x: [..., 3] RGB (any range). grey: [...] target means in [0, 1].
    Returns:
      [..., 3] in [0, 1] with mean over the last axis equal to grey (to bisection precision).
    """
    x, grey = jnp.asarray(x, jnp.float32), jnp.asarray(grey, jnp.float32)[..., None]
    lo = -1.0 - jnp.max(x, -1, keepdims=True)  # mean(c) = 0 here
    hi = 1.0 - jnp.min(x, -1, keepdims=True)  # mean(c) = 1 here

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        low = jnp.mean(jnp.clip(x + mid, 0.0, 1.0), -1, keepdims=True) < grey
        return jnp.where(low, mid, lo), jnp.where(low, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (lo, hi))
    return jnp.clip(x + 0.5 * (lo + hi), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Replacement: known coordinates <- a forward-SDE sample of the data at the current time
# ---------------------------------------------------------------------------------------------


def replacement(sde, y, mask, transform=None):
    """The SDE paper's replacement step as a sampler hook.

    Args:
      sde: forward SDE. y: [B, ...] data whose known coordinates are kept (in the transformed
        space when `transform` is given). mask: broadcasts to y; 1 = known.
      transform: optional (forward, inverse) pair of orthogonal maps, e.g. (decouple, couple).
    Returns:
      project(rng, x [B, ...], t [B]) -> x with forward(x)'s known coordinates replaced by
      alpha(t) y + sigma(t) z, z ~ N(0, I) (an orthogonal map keeps the noise isotropic).
    """
    fwd, inv = transform or (lambda v: v, lambda v: v)
    y, known = jnp.asarray(y), jnp.asarray(mask) > 0.5

    def project(rng, x, t):
        alpha, sigma = sde.marginal_coef(t)
        y_t = bcast(alpha, y) * y + bcast(sigma, y) * jax.random.normal(rng, y.shape, y.dtype)
        return inv(jnp.where(known, y_t, fwd(x)))

    def finish(x):  # the known coordinates of the output equal y exactly
        return inv(jnp.where(known, y, fwd(x)))

    project.finish = finish
    return project


def forward_kernel(sde, rng, x, t_from, t_to):
    """A sample of p(x(t_to) | x(t_from) = x), t_to > t_from [B]: x(t_to) = (alpha_to /
    alpha_from) x + sqrt(sigma_to^2 - (alpha_to / alpha_from)^2 sigma_from^2) z."""
    a_from, s_from = sde.marginal_coef(t_from)
    a_to, s_to = sde.marginal_coef(t_to)
    ratio = a_to / a_from
    std = jnp.sqrt(jnp.maximum(s_to**2 - ratio**2 * s_from**2, 0.0))
    return bcast(ratio, x) * x + bcast(std, x) * jax.random.normal(rng, x.shape, x.dtype)


# ---------------------------------------------------------------------------------------------
# RePaint: reverse steps with replacement, and every jump_length steps a jump back up
# ---------------------------------------------------------------------------------------------


def repaint_schedule(n: int, jump_length: int, resample_times: int) -> np.ndarray:
    """RePaint's time schedule on the PC grid, as state indices (0: time T, n: the end).

    At the noise levels n - i in {0, L, 2L, ...} below n - L, reached on the way down, the state
    jumps back up L grid steps (resample_times - 1 times each), then comes down again.

    Returns:
      [M, 2] int array of (i_from, i_to): i_to = i_from + 1 a reverse step, i_from - L a jump.
    """
    jumps = {lev: resample_times - 1 for lev in range(0, n - jump_length, jump_length)}
    ops, i = [], 0
    while i < n:
        ops.append((i, i + 1))
        i += 1
        if jumps.get(n - i, 0) > 0:
            jumps[n - i] -= 1
            ops.append((i, i - jump_length))
            i -= jump_length
    return np.asarray(ops, np.int64)


def _check_repaint(sde, jump_length, resample_times) -> None:
    require(isinstance(jump_length, (int, np.integer)) and 1 <= jump_length < sde.N,
            "sampling.jump_length", f"must be an integer in [1, {sde.N}) (model.num_scales), "
            f"got {jump_length!r}")
    require(isinstance(resample_times, (int, np.integer)) and resample_times >= 1,
            "sampling.resample_times", f"must be an integer >= 1, got {resample_times!r}")


def get_repaint_sampler(sde, shape, project, jump_length=10, resample_times=1,
                        predictor="reverse_diffusion", corrector="langevin", snr=0.16, n_steps=1,
                        probability_flow=False, denoise=True, eps=None):
    """The replacement PC sampler on RePaint's schedule (repaint_schedule): each reverse step is
    the PC step of sampling.get_pc_sampler with `project` after its corrector and predictor;
    each jump draws x(t_to) from the forward kernel and projects it. With resample_times = 1 the
    schedule has no jumps and, with the same keys, the result equals get_pc_sampler(...,
    project=project) up to float rounding (XLA fuses the step inside lax.cond differently).

    Args:
      sde, shape, predictor, corrector, snr, n_steps, probability_flow, denoise, eps: as in
        sampling.get_pc_sampler (and checked by it). project: the hook (rng, x, t) -> x.
      jump_length: L, grid steps per jump (in [1, N)). resample_times: r >= 1.
    Returns:
      sampler(rng, score_fn, x_init=None) -> (x [shape], nfe int).
    """
    sampling.get_pc_sampler(sde, shape, predictor, corrector, snr, n_steps, probability_flow,
                            denoise, eps)  # the same checks
    _check_repaint(sde, jump_length, resample_times)
    ops = repaint_schedule(sde.N, int(jump_length), int(resample_times))
    per_step = (predictor != "none") + (corrector != "none") * int(n_steps)
    nfe = int(np.sum(ops[:, 1] > ops[:, 0])) * per_step
    eps = sde.eps if eps is None else eps
    pred, corr = sampling.PREDICTORS[predictor], sampling.CORRECTORS[corrector]

    def sampler(rng, score_fn, x_init=None):
        rsde = sde.reverse(score_fn, probability_flow)
        rng, x_rng = jax.random.split(rng)
        x = sde.prior_sampling(x_rng, shape) if x_init is None else x_init
        grid = jnp.append(jnp.linspace(sde.T, eps, sde.N), 0.0)  # state i's time, 0 at the end
        plan = jnp.asarray(ops, jnp.int32)

        def reverse(k, i, x):
            t = jnp.full((shape[0],), grid[i])
            c_rng, p_rng = jax.random.split(jax.random.fold_in(rng, k))
            hc_rng, hp_rng = jax.random.split(jax.random.fold_in(jax.random.fold_in(rng, k), 1))
            x, _ = corr(sde, score_fn, c_rng, x, t, snr, n_steps)
            x, x_mean = pred(sde, rsde, score_fn, p_rng, project(hc_rng, x, t), t)
            return project(hp_rng, x, jnp.full((shape[0],), grid[i + 1])), x_mean

        def jump(k, i, j, x):
            key = jax.random.fold_in(jax.random.fold_in(rng, k), 2)
            n_rng, h_rng = jax.random.split(key)
            t_to = jnp.full((shape[0],), grid[j])
            x = forward_kernel(sde, n_rng, x, jnp.full((shape[0],), grid[i]), t_to)
            x = project(h_rng, x, t_to)
            return x, x

        def body(k, carry):
            i, j = plan[k, 0], plan[k, 1]
            return jax.lax.cond(j > i, lambda x: reverse(k, i, x), lambda x: jump(k, i, j, x),
                                carry[0])

        x, x_mean = jax.lax.fori_loop(0, len(ops), body, (x, x))
        return (x_mean if denoise else x), nfe

    return sampler


# ---------------------------------------------------------------------------------------------
# Tasks on any stepping sampler: inpainting, colourisation, SDEdit
# ---------------------------------------------------------------------------------------------

METHODS = ("pc", "ode") + tuple(fast_sampling.METHODS)


def _base(sde, shape, method, project, t_start, kwargs):
    """sampler(rng, score_fn, x_init) of `method` with the hook `project` and start t_start;
    kwargs are the method's own (get_pc_sampler's, get_ode_sampler's or get_fast_sampler's),
    plus jump_length and resample_times (RePaint, method 'pc' only)."""
    if method not in METHODS:
        raise ConfigError(f"sampling.method={method!r} is not valid for this task; choose one "
                          f"of: {', '.join(METHODS)}")
    kw = dict(kwargs)
    times, length = kw.pop("resample_times", 1), kw.pop("jump_length", None)
    if length is not None or times != 1:
        length = 10 if length is None else length
        _check_repaint(sde, length, times)
    if method == "pc" and times > 1:
        require(t_start is None, "sampling.resample_times",
                f"RePaint (> 1) starts at T; use 1 with sampling.strength < 1, got {times}")
        return get_repaint_sampler(sde, shape, project, length, times, **kw)
    if method == "pc":
        return sampling.get_pc_sampler(sde, shape, **kw, project=project, t_start=t_start)
    require(times == 1, "sampling.resample_times", "RePaint resampling (> 1) is defined for "
            f"sampling.method='pc' only, not {method!r}; got {times}")
    if method == "ode":
        require(project is None, "sampling.method", "'ode' has no steps to replace known "
                "coordinates at; choose one of: " + ", ".join(m for m in METHODS if m != "ode"))
        return sampling.get_ode_sampler(sde, shape, **kw, t_start=t_start)
    return fast_sampling.get_fast_sampler(sde, shape, method, **kw, t_start=t_start,
                                          project=project)


def _as_mask(mask, shape):
    """A binary mask [B, ...] or [...] of data `shape` [B, ...] from a name, path or array."""
    if hasattr(mask, "shape") and tuple(mask.shape) == tuple(shape):  # may be traced
        return (jnp.asarray(mask, jnp.float32) >= 0.5).astype(jnp.float32)
    return get_mask(mask, shape[1:])


def get_inpaint_sampler(sde, y, mask, method="pc", transform=None, **kwargs):
    """Inpainting by replacement (Song et al. 2021, App. I): the known coordinates are replaced
    by a forward-SDE sample of y after every step (every predictor and corrector step for 'pc').

    Args:
      sde: forward SDE. y: [B, ...] data (its generated coordinates are ignored).
      mask: a name of MASKS, a PNG path, or an array of y's shape, one example's, or its spatial
        shape; 1 = known. method: 'pc' or a fast method (see METHODS).
      transform: optional orthogonal (forward, inverse) maps the mask applies in.
      **kwargs: the sampler's own arguments; with 'pc', jump_length and resample_times > 1 give
        RePaint (get_repaint_sampler).
    Returns:
      sampler(rng, score_fn) -> (x [B, ...], nfe int); x's known coordinates equal y exactly.
    """
    y = jnp.asarray(y)
    project = replacement(sde, y, _as_mask(mask, y.shape), transform)
    base = _base(sde, y.shape, method, project, None, kwargs)

    def sampler(rng, score_fn):
        rng, x_rng, h_rng = jax.random.split(rng, 3)
        x_T = sde.prior_sampling(x_rng, y.shape).astype(y.dtype)
        x, nfe = base(rng, score_fn, project(h_rng, x_T, jnp.full((y.shape[0],), sde.T)))
        return project.finish(x), nfe

    return sampler


def get_colorize_sampler(sde, grey, shape, method="pc", **kwargs):
    """Colourisation (Song et al. 2021, App. I): inpainting in the decoupled colour space with
    channel 0 = sqrt(3) * grey known.

    Args:
      grey: [B, H, W] or [B, H, W, 1], the mean of the R, G, B channels in the model's data space.
      shape: the RGB data shape [B, H, W, 3]. method, **kwargs: as in get_inpaint_sampler.
    Returns:
      sampler(rng, score_fn) -> (x [B, H, W, 3], nfe int) with x.mean(-1) = grey.
    """
    shape = tuple(int(n) for n in shape)
    require(len(shape) == 4 and shape[-1] == 3, "data.num_channels",
            f"sampling.task='colorize' needs RGB images [B, H, W, 3], got data of shape {shape}")
    grey = jnp.asarray(grey)
    if grey.shape == shape[:-1] + (1,):
        grey = grey[..., 0]
    require(grey.shape == shape[:-1], "sampling.input",
            f"grey images of shape {grey.shape} do not match data {shape} (give {shape[:-1]})")
    y = jnp.zeros(shape, grey.dtype).at[..., 0].set(GREY_SCALE * grey)  # decoupled
    mask = np.zeros(shape[1:], np.float32)
    mask[..., 0] = 1.0
    return get_inpaint_sampler(sde, y, mask, method, (decouple, couple), **kwargs)


def _sdedit_start(sde, method, t0, kwargs):
    """The time the sampler starts at for strength * T = t0, or None when no step is left."""
    if method == "pc":
        i0, t_i0 = sampling.pc_start(sde, t0, kwargs.get("eps"))
        return None if i0 == sde.N else t_i0
    end = kwargs.get("t_end" if method != "ode" else "eps") or sde.eps
    return t0 if t0 > end else None


def get_sdedit_sampler(sde, guide, strength, method="pc", mask=None, **kwargs):
    """SDEdit (Meng et al. 2022): perturb the guide to t0 = strength * T with the forward SDE
    (for 'pc', t0 is the first grid time <= strength * T) and run the sampler from there.

    Args:
      sde: forward SDE. guide: [B, ...] guide data. strength: in [0, 1]; 0 returns the guide,
        1 is unconditional sampling from x(T) ~ p_T(x | guide).
      method: 'pc', 'ode' or a fast method. mask: optional (as in get_inpaint_sampler): only the
        coordinates with mask 0 change; those with 1 are replaced after each step, kept exactly.
      **kwargs: the sampler's own arguments.
    Returns:
      sampler(rng, score_fn) -> (x [B, ...], nfe int).
    """
    require(0.0 <= float(strength) <= 1.0, "sampling.strength",
            f"must be in [0, 1] (0: the input, 1: unconditional), got {strength}")
    guide = jnp.asarray(guide)
    b = guide.shape[0]
    project = None if mask is None else replacement(sde, guide, _as_mask(mask, guide.shape))
    t0 = _sdedit_start(sde, method, float(strength) * sde.T, kwargs)
    if t0 is None:  # strength 0, or below the sampler's last time: nothing to do
        _base(sde, guide.shape, method, project, None, kwargs)  # the same checks
        return lambda rng, score_fn: (guide, 0)
    base = _base(sde, guide.shape, method, project, t0, kwargs)

    def sampler(rng, score_fn):
        rng, n_rng = jax.random.split(rng)
        alpha, sigma = sde.marginal_coef(jnp.full((b,), t0, guide.dtype))
        z = jax.random.normal(n_rng, guide.shape, guide.dtype)
        x, nfe = base(rng, score_fn, bcast(alpha, guide) * guide + bcast(sigma, guide) * z)
        return (x if project is None else project.finish(x)), nfe

    return sampler
