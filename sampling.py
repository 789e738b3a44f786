"""Samplers of Song et al. (ICLR 2021): predictor-corrector (Alg. 1-3), annealed Langevin
dynamics (NCSN / NCSNv2, Song & Ermon 2019, 2020), the probability-flow ODE (eq. 13) solved on
device with diffrax, and the fast solvers of fast_sampling.py. Each is (rng, score_fn) -> (x, nfe).
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import fast_sampling
import sde_lib
from fast_sampling import get_fast_sampler
from utils import ConfigError, bcast, choose

# ---------------------------------------------------------------------------------------------
# Predictors: (rng, x, t) -> (x, x_mean), given the sde, its reverse and the score
# ---------------------------------------------------------------------------------------------


def euler_maruyama(sde, rsde, score_fn, rng, x, t):
    dt = -rsde.T / rsde.N
    drift, diffusion = rsde.sde(x, t)
    x_mean = x + drift * dt
    return x_mean + bcast(diffusion, x) * np.sqrt(-dt) * jax.random.normal(rng, x.shape), x_mean


def reverse_diffusion(sde, rsde, score_fn, rng, x, t):
    f, G = rsde.discretize(x, t)
    x_mean = x - f
    return x_mean + bcast(G, x) * jax.random.normal(rng, x.shape), x_mean


def _ve_ancestral(sde, score_fn, rng, x, t):
    i = sde.timestep(t)
    sigma = sde.discrete_sigmas[i]
    prev = jnp.where(i == 0, 0.0, sde.discrete_sigmas[jnp.maximum(i - 1, 0)])
    x_mean = x + score_fn(x, t) * bcast(sigma**2 - prev**2, x)
    std = jnp.sqrt(prev**2 * (sigma**2 - prev**2) / sigma**2)
    return x_mean + bcast(std, x) * jax.random.normal(rng, x.shape), x_mean


def _vp_ancestral(sde, score_fn, rng, x, t):
    beta = sde.discrete_betas[sde.timestep(t)]
    x_mean = (x + bcast(beta, x) * score_fn(x, t)) / bcast(jnp.sqrt(1.0 - beta), x)
    return x_mean + bcast(jnp.sqrt(beta), x) * jax.random.normal(rng, x.shape), x_mean


_ANCESTRAL = {sde_lib.VESDE: _ve_ancestral, sde_lib.VPSDE: _vp_ancestral,
              sde_lib.EDMSDE: _ve_ancestral}


def ancestral_sampling(sde, rsde, score_fn, rng, x, t):
    return _ANCESTRAL[type(sde)](sde, score_fn, rng, x, t)


def no_predictor(sde, rsde, score_fn, rng, x, t):
    return x, x


PREDICTORS = {
    "euler_maruyama": euler_maruyama,
    "reverse_diffusion": reverse_diffusion,
    "ancestral_sampling": ancestral_sampling,
    "none": no_predictor,
}

# ---------------------------------------------------------------------------------------------
# Correctors: Langevin MCMC with an snr-based step (Alg. 4-5)
# ---------------------------------------------------------------------------------------------


def _langevin_alpha(sde, t):
    """DDPM's alpha_i for VP-type SDEs (the step scale of Alg. 5); 1 for VE."""
    if isinstance(sde, sde_lib.VPSDE):
        return sde.alphas[sde.timestep(t)]
    return jnp.ones_like(t)


def _batch_norm(v):
    return jnp.mean(jnp.linalg.norm(v.reshape(v.shape[0], -1), axis=-1))


def langevin(sde, score_fn, rng, x, t, snr, n_steps):
    """Alg. 4/5: eps = 2 alpha (snr |z| / |score|)^2, norms averaged over the batch."""
    alpha = _langevin_alpha(sde, t)

    def body(i, carry):
        x, _ = carry
        grad = score_fn(x, t)
        z = jax.random.normal(jax.random.fold_in(rng, i), x.shape)
        step = 2 * alpha * (snr * _batch_norm(z) / _batch_norm(grad)) ** 2
        x_mean = x + bcast(step, x) * grad
        return x_mean + bcast(jnp.sqrt(2 * step), x) * z, x_mean

    return jax.lax.fori_loop(0, n_steps, body, (x, x))


def ald(sde, score_fn, rng, x, t, snr, n_steps):
    """Annealed Langevin corrector: eps = 2 alpha (snr std(t))^2, NCSN's sigma^2 step rule."""
    alpha = _langevin_alpha(sde, t)
    std = sde.marginal_coef(t)[1]
    step = 2 * alpha * (snr * std) ** 2

    def body(i, carry):
        x, _ = carry
        z = jax.random.normal(jax.random.fold_in(rng, i), x.shape)
        x_mean = x + bcast(step, x) * score_fn(x, t)
        return x_mean + bcast(jnp.sqrt(2 * step), x) * z, x_mean

    return jax.lax.fori_loop(0, n_steps, body, (x, x))


def no_corrector(sde, score_fn, rng, x, t, snr, n_steps):
    return x, x


CORRECTORS = {"langevin": langevin, "ald": ald, "none": no_corrector}

# ---------------------------------------------------------------------------------------------
# Samplers
# ---------------------------------------------------------------------------------------------


def pc_start(sde, t_start=None, eps=None):
    """Where a PC sampler started at time t_start begins on its grid t_i = linspace(T, eps, N).

    Args:
      sde: forward SDE. t_start: a time in [0, T] (None: T). eps: last time (sde.eps if None).
    Returns:
      (i0, t_i0): the first grid index with t_i <= t_start and its time (i0 = N, t = 0 when
      t_start < eps: no steps are left).
    """
    eps = sde.eps if eps is None else eps
    if t_start is None:
        return 0, float(sde.T)
    if not 0.0 <= float(t_start) <= sde.T:
        raise ConfigError(f"sampling.t_start must be in [0, {sde.T:g}], got {t_start}")
    grid = np.linspace(sde.T, eps, sde.N)
    later = np.nonzero(grid <= float(t_start) * (1 + 1e-6))[0]
    return (int(later[0]), float(grid[later[0]])) if len(later) else (sde.N, 0.0)


def get_pc_sampler(sde, shape, predictor="reverse_diffusion", corrector="langevin", snr=0.16,
                   n_steps=1, probability_flow=False, denoise=True, eps=None, project=None,
                   t_start=None):
    """Predictor-corrector sampler over the grid t_i = linspace(T, eps, N).

    Args:
      sde: forward SDE. shape: sample shape [B, ...].
      predictor / corrector: names in PREDICTORS / CORRECTORS.
      snr: corrector signal-to-noise ratio (> 0). n_steps: corrector steps per time step.
      probability_flow: predict with the discretised probability-flow ODE.
      denoise: return the last mean (no noise added in the final step).
      eps: last time; sde.eps by default.
      project: optional hook (rng, x, t [B]) -> x applied to x (not to the returned mean) after
        each corrector update (t = t_i) and each predictor update (t = t_{i+1}, 0 after the
        last), e.g. controllable.py's replacement of known coordinates. None: no hook.
      t_start: start at the first grid time t_i0 <= t_start (see pc_start) instead of T; pass
        the state at that time as x_init. None: start at T.
    Returns:
      sampler(rng, score_fn, x_init=None) -> (x [shape], nfe int); x_init [shape] replaces the
      prior sample as the starting state.
    """
    choose("sampling.predictor", predictor, PREDICTORS)
    choose("sampling.corrector", corrector, CORRECTORS)
    if corrector != "none" and not snr > 0:
        raise ConfigError(f"sampling.snr must be > 0, got {snr}")
    if int(n_steps) < 0:
        raise ConfigError(f"sampling.n_steps_each must be >= 0, got {n_steps}")
    if predictor == "ancestral_sampling":
        if type(sde) not in _ANCESTRAL:
            raise ConfigError(
                "sampling.predictor='ancestral_sampling' is defined for vesde, vpsde and edmsde "
                f"only, not {type(sde).__name__}; use 'reverse_diffusion' or 'euler_maruyama'"
            )
        if probability_flow:
            raise ConfigError(
                "sampling.probability_flow=True has no ancestral sampler; use "
                "sampling.predictor='reverse_diffusion' or 'euler_maruyama'"
            )
    eps = sde.eps if eps is None else eps
    pred, corr = PREDICTORS[predictor], CORRECTORS[corrector]
    n_steps = int(n_steps)
    i_start = pc_start(sde, t_start, eps)[0]
    nfe = (sde.N - i_start) * ((predictor != "none") + (corrector != "none") * n_steps)

    def sampler(rng, score_fn, x_init=None):
        rsde = sde.reverse(score_fn, probability_flow)
        rng, x_rng = jax.random.split(rng)
        x = sde.prior_sampling(x_rng, shape) if x_init is None else x_init
        timesteps = jnp.linspace(sde.T, eps, sde.N)

        def body(i, carry):
            x, _ = carry
            t = jnp.full((shape[0],), timesteps[i])
            c_rng, p_rng = jax.random.split(jax.random.fold_in(rng, i))
            x, x_mean = corr(sde, score_fn, c_rng, x, t, snr, n_steps)
            if project is None:
                return pred(sde, rsde, score_fn, p_rng, x, t)
            hc_rng, hp_rng = jax.random.split(jax.random.fold_in(jax.random.fold_in(rng, i), 1))
            x = project(hc_rng, x, t)
            x, x_mean = pred(sde, rsde, score_fn, p_rng, x, t)
            t_next = jnp.where(i + 1 < sde.N, timesteps[jnp.minimum(i + 1, sde.N - 1)], 0.0)
            return project(hp_rng, x, jnp.full((shape[0],), t_next)), x_mean

        x, x_mean = jax.lax.fori_loop(i_start, sde.N, body, (x, x))
        return (x_mean if denoise else x), nfe

    return sampler


def get_ald_sampler(sde, shape, step_lr=2e-5, n_steps_each=5, denoise=True):
    """Annealed Langevin dynamics (NCSNv2, Alg. 1) over sigma_N > ... > sigma_1 of a VE SDE:
    alpha_i = step_lr (sigma_i / sigma_1)^2, then a final denoising step x + sigma_1^2 s(x).
    """
    if not isinstance(sde, sde_lib.VESDE):
        raise ConfigError("sampling.method='ald' needs training.sde='vesde' (sigma-conditioned)")
    if not step_lr > 0:
        raise ConfigError(f"sampling.step_lr must be > 0, got {step_lr}")
    if int(n_steps_each) < 1:
        raise ConfigError(f"sampling.n_steps_each must be >= 1, got {n_steps_each}")
    n = sde.N
    nfe = n * int(n_steps_each) + int(denoise)
    t_grid = jnp.arange(n - 1, -1, -1) * sde.T / max(n - 1, 1)  # sigma index n-1 .. 0

    def sampler(rng, score_fn):
        rng, x_rng = jax.random.split(rng)
        x = sde.prior_sampling(x_rng, shape)
        sigma_min = sde.discrete_sigmas[0]

        def level(i, x):
            t = jnp.full((shape[0],), t_grid[i])
            alpha = step_lr * (sde.discrete_sigmas[n - 1 - i] / sigma_min) ** 2

            def step(j, x):
                z = jax.random.normal(jax.random.fold_in(rng, i * n_steps_each + j), x.shape)
                return x + alpha * score_fn(x, t) + jnp.sqrt(2 * alpha) * z

            return jax.lax.fori_loop(0, int(n_steps_each), step, x)

        x = jax.lax.fori_loop(0, n, level, x)
        if denoise:
            t0 = jnp.zeros((shape[0],))
            x = x + sigma_min**2 * score_fn(x, t0)
        return x, nfe

    return sampler


ODE_SOLVERS = {
    "euler": (diffrax.Euler, 1),
    "heun": (diffrax.Heun, 2),
    "midpoint": (diffrax.Midpoint, 2),
    "bosh3": (diffrax.Bosh3, 3),
    "tsit5": (diffrax.Tsit5, 6),
    "dopri5": (diffrax.Dopri5, 6),
    "dopri8": (diffrax.Dopri8, 12),
}


def solve_ode(vector_field, y0, t0, t1, rtol, atol, method="dopri5", max_steps=4096):
    """Adaptive ODE solve on device: returns (y(t1), number of vector-field evaluations)."""
    solver_cls, evals_per_step = ODE_SOLVERS[method]
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: vector_field(t, y)),
        solver_cls(),
        t0=t0,
        t1=t1,
        dt0=None if evals_per_step > 1 else (t1 - t0) / 100,
        y0=y0,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol)
        if evals_per_step > 1
        else diffrax.ConstantStepSize(),
        max_steps=max_steps,
        saveat=diffrax.SaveAt(t1=True),
    )
    y1 = jax.tree.map(lambda v: v[-1], sol.ys)
    # Evaluations: first-same-as-last schemes reuse one stage; +2 for the initial step size.
    nfe = sol.stats["num_steps"] * evals_per_step + 2
    return y1, nfe


def get_ode_sampler(sde, shape, rtol=1e-5, atol=1e-5, method="dopri5", denoise=False, eps=None,
                    max_steps=4096, t_start=None):
    """Probability-flow ODE sampler from T (or t_start) to eps, adaptive, on device.

    Args:
      t_start: start time in (eps, T] (None: T); pass the state at that time as x_init.
    Returns:
      sampler(rng, score_fn, x_init=None) -> (x [shape], nfe) with nfe a traced int; x_init
      [shape] replaces the prior sample as the starting state.
    """
    choose("sampling.ode_method", method, ODE_SOLVERS)
    if not (rtol > 0 and atol > 0):
        raise ConfigError(f"sampling.rtol and sampling.atol must be > 0, got {rtol}, {atol}")
    eps = sde.eps if eps is None else eps
    if t_start is not None and not eps < float(t_start) <= sde.T:
        raise ConfigError(f"sampling.t_start must be in ({eps:g}, {sde.T:g}], got {t_start}")
    t0 = sde.T if t_start is None else float(t_start)

    def sampler(rng, score_fn, x_init=None):
        rsde = sde.reverse(score_fn, probability_flow=True)
        x = sde.prior_sampling(rng, shape) if x_init is None else x_init

        def vector_field(t, y):
            return rsde.sde(y, jnp.full((shape[0],), t))[0]

        x, nfe = solve_ode(vector_field, x, t0, eps, rtol, atol, method, max_steps)
        if denoise:
            x = reverse_diffusion(sde, sde.reverse(score_fn), score_fn, rng, x,
                                  jnp.full((shape[0],), eps))[1]
            nfe = nfe + 1
        return x, nfe

    return sampler


SAMPLING_METHODS = ("pc", "ode", "ald") + tuple(fast_sampling.METHODS)


def _fast_sampler_from_config(s, sde, shape):
    """get_fast_sampler with config.sampling's steps, order, schedule, t_end, rho and the
    method's own fields (those a config lacks take the method's defaults)."""
    spec = fast_sampling.METHODS[s.method]
    fields = {k: s[k] for k in spec.fields if k in s}
    return get_fast_sampler(sde, shape, s.method, s.get("steps", 20), s.get("order", None),
                            s.get("schedule", "logsnr"), s.get("t_end", None),
                            s.get("rho", 7.0), **fields)


def get_sampler(config, sde, shape):
    """The sampler named by config.sampling.method: 'pc' | 'ode' | 'ald' | a fast solver
    ('ddim', 'dpm_solver', 'dpm_solver++', 'unipc', 'edm_heun', 'edm_sde')."""
    s = config.sampling
    method = choose("sampling.method", s.method, SAMPLING_METHODS)
    if method == "pc":
        return get_pc_sampler(sde, shape, s.predictor, s.corrector, s.snr, s.n_steps_each,
                              s.probability_flow, s.noise_removal)
    if method == "ode":
        return get_ode_sampler(sde, shape, s.rtol, s.atol, s.ode_method, s.noise_removal)
    if method == "ald":
        return get_ald_sampler(sde, shape, s.step_lr, s.n_steps_each, s.noise_removal)
    return _fast_sampler_from_config(s, sde, shape)


__all__ = ["get_pc_sampler", "pc_start", "get_ald_sampler", "get_ode_sampler", "get_fast_sampler",
           "get_sampler", "solve_ode", "PREDICTORS", "CORRECTORS", "ODE_SOLVERS",
           "SAMPLING_METHODS"]
