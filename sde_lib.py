"""Forward SDEs of Song et al. (ICLR 2021): VE (eq. 9, SMLD), VP (eq. 11, DDPM), sub-VP (eq. 12),
and the EDM SDE of Karras et al. (2022), a VE SDE with sigma(t) = t (eq. 4 with s(t) = 1).

Each SDE gives its drift/diffusion, the Gaussian perturbation kernel p_0t(x(t)|x(0)), the prior,
a discretisation (SMLD / DDPM ancestral updates, or Euler-Maruyama), and its reverse-time SDE or
probability-flow ODE (eq. 6 and eq. 13).
"""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp
import numpy as np

from utils import ConfigError, batch_sum, bcast, choose, require


class SDE(abc.ABC):
    """dx = f(x, t) dt + g(t) dw on t in [0, T], linear in x with Gaussian marginals."""

    def __init__(self, N: int, T: float = 1.0, eps: float = 1e-5):
        if int(N) < 1:
            raise ValueError(f"N must be >= 1, got {N}")
        self.N = int(N)
        self.T = float(T)
        self.eps = float(eps)

    @abc.abstractmethod
    def sde(self, x, t):
        """Drift f(x, t) [B, ...] and diffusion g(t) [B]."""

    @abc.abstractmethod
    def marginal_coef(self, t):
        """alpha(t) [B] and std sigma(t) [B] of p_0t: x(t) = alpha x(0) + sigma z."""

    @abc.abstractmethod
    def prior_std(self) -> float:
        """Std of the isotropic Gaussian prior p_T."""

    def marginal_prob(self, x, t):
        """Mean [B, ...] and std [B] of the perturbation kernel p_0t(x(t) | x(0) = x)."""
        alpha, std = self.marginal_coef(t)
        return bcast(alpha, x) * x, std

    def prior_sampling(self, rng, shape):
        return self.prior_std() * jax.random.normal(rng, shape)

    def prior_logp(self, z):
        """Log-density of the prior N(0, prior_std^2 I) at z: [B]."""
        s = self.prior_std()
        d = np.prod(z.shape[1:])
        return -0.5 * d * np.log(2 * np.pi * s**2) - batch_sum(z**2) / (2 * s**2)

    def discretize(self, x, t):
        """One forward step x_{i+1} = x_i + f_i + G_i z; Euler-Maruyama (dt = T / N) by default."""
        dt = self.T / self.N
        drift, diffusion = self.sde(x, t)
        return drift * dt, diffusion * np.sqrt(dt)

    def reverse(self, score_fn, probability_flow: bool = False) -> ReverseSDE:
        """The reverse-time SDE (eq. 6), or with `probability_flow` the ODE (eq. 13)."""
        return ReverseSDE(self, score_fn, probability_flow)


class ReverseSDE:
    """Reverse-time process given a score function score_fn(x, t) -> [B, ...]."""

    def __init__(self, forward: SDE, score_fn, probability_flow: bool):
        self.forward = forward
        self.score_fn = score_fn
        self.probability_flow = probability_flow
        self.N, self.T, self.eps = forward.N, forward.T, forward.eps
        self._w = 0.5 if probability_flow else 1.0

    def sde(self, x, t):
        """Drift f - w g^2 score (w = 1/2 for the ODE) and diffusion (0 for the ODE) [B]."""
        drift, diffusion = self.forward.sde(x, t)
        drift = drift - bcast(diffusion**2, x) * self.score_fn(x, t) * self._w
        return drift, (jnp.zeros_like(diffusion) if self.probability_flow else diffusion)

    def discretize(self, x, t):
        """Reverse of the forward discretisation: f - w G^2 score, G (0 for the ODE)."""
        f, G = self.forward.discretize(x, t)
        rev_f = f - bcast(G**2, x) * self.score_fn(x, t) * self._w
        return rev_f, (jnp.zeros_like(G) if self.probability_flow else G)


class VESDE(SDE):
    """Variance exploding: sigma(t) = sigma_min (sigma_max / sigma_min)^t, f = 0."""

    def __init__(self, sigma_min=0.01, sigma_max=50.0, N=1000, eps=1e-5):
        super().__init__(N, 1.0, eps)
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        # SMLD noise levels, increasing: sigma_1 < ... < sigma_N.
        self.discrete_sigmas = jnp.exp(jnp.linspace(np.log(sigma_min), np.log(sigma_max), self.N))

    def sigma(self, t):
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def sde(self, x, t):
        g = self.sigma(t) * np.sqrt(2 * (np.log(self.sigma_max) - np.log(self.sigma_min)))
        return jnp.zeros_like(x), g

    def marginal_coef(self, t):
        return jnp.ones_like(t), self.sigma(t)

    def prior_std(self):
        return self.sigma_max

    def timestep(self, t):
        """Index i of the discrete noise level used at time t: [B] int32."""
        return jnp.round(t * (self.N - 1) / self.T).astype(jnp.int32)

    def discretize(self, x, t):
        """SMLD: x_i = x_{i-1} + sqrt(sigma_i^2 - sigma_{i-1}^2) z, with sigma_0 = 0."""
        i = self.timestep(t)
        sigma = self.discrete_sigmas[i]
        prev = jnp.where(i == 0, 0.0, self.discrete_sigmas[jnp.maximum(i - 1, 0)])
        return jnp.zeros_like(x), jnp.sqrt(sigma**2 - prev**2)


class VPSDE(SDE):
    """Variance preserving: beta(t) = beta_min + t (beta_max - beta_min), f = -beta x / 2.

    With a discrete `schedule` ('linear', 'scaled_linear', 'squaredcos_cap_v2': the DDPM /
    Stable Diffusion / improved-DDPM beta_n of diffusers' schedulers, n = 0..N-1, with
    beta_0 = beta_min / N and beta_{N-1} = beta_max / N) alpha(t)^2 is their alphas_cumprod at
    t_n = (n + 1) / N, log alpha piecewise linear in t between them and alpha(0) = 1 (DPM-Solver,
    Lu et al. 2022, App. D.1); beta(t) = -2 d log alpha / dt is then piecewise constant.
    """

    def __init__(self, beta_min=0.1, beta_max=20.0, N=1000, eps=1e-3,
                 schedule: str = "continuous"):
        super().__init__(N, 1.0, eps)
        choose("model.schedule", schedule, VP_SCHEDULES)
        if schedule != "continuous" and type(self) is not VPSDE:
            raise ConfigError(f"model.schedule={schedule!r} needs training.sde='vpsde'")
        if not 0 <= beta_min < beta_max:
            raise ValueError(f"need 0 <= beta_min < beta_max, got {beta_min}, {beta_max}")
        self.beta_0, self.beta_1 = float(beta_min), float(beta_max)
        self.schedule = schedule
        # DDPM's beta_i = beta(t_i) / N on the discrete grid, and the products derived from it;
        # when N is too small for them (beta_i >= 1) they are absent and using them is an error
        self._tables = None
        if schedule != "continuous":
            betas = discrete_betas(schedule, self.beta_0 / self.N, self.beta_1 / self.N, self.N)
            cumprod = np.cumprod(1.0 - betas, dtype=np.float32)  # float32, as diffusers has it
            # log alpha at t = 0, 1/N, ..., 1
            self._log_alpha = np.concatenate([[0.0], 0.5 * np.log(cumprod.astype(np.float64))])
            self._tables = _tables(betas, cumprod)
        elif beta_max / self.N < 1.0:
            betas = jnp.linspace(beta_min / self.N, beta_max / self.N, self.N)
            self._tables = _tables(betas, jnp.cumprod(1.0 - betas))

    @property
    def discrete(self) -> bool:
        return self.schedule != "continuous"

    def _ddpm_tables(self) -> dict:
        if self._tables is None:
            raise ConfigError(
                f"model.num_scales: the DDPM discretisation of the VP SDE needs beta_max / N "
                f"< 1, i.e. N > {self.beta_1:g}; got N = {self.N} (for --mode ablate: "
                "ablation.num_scales)")
        return self._tables

    discrete_betas = property(lambda self: self._ddpm_tables()["betas"])
    alphas = property(lambda self: self._ddpm_tables()["alphas"])
    sqrt_alphas_cumprod = property(lambda self: self._ddpm_tables()["sqrt_alphas_cumprod"])
    sqrt_1m_alphas_cumprod = property(lambda self: self._ddpm_tables()["sqrt_1m_alphas_cumprod"])

    def beta(self, t):
        if self.discrete:  # minus twice the slope of log alpha on t's interval
            slopes = -2.0 * self.N * np.diff(self._log_alpha)
            i = jnp.clip(jnp.ceil(t * self.N) - 1, 0, self.N - 1).astype(jnp.int32)
            return jnp.asarray(slopes, jnp.float32)[i]
        return self.beta_0 + t * (self.beta_1 - self.beta_0)

    def log_mean_coeff(self, t):
        if self.discrete:
            knots = np.linspace(0.0, 1.0, self.N + 1)
            return jnp.interp(t, jnp.asarray(knots, jnp.float32),
                              jnp.asarray(self._log_alpha, jnp.float32))
        return -0.25 * t**2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0

    def sde(self, x, t):
        beta = self.beta(t)
        return -0.5 * bcast(beta, x) * x, jnp.sqrt(beta)

    def marginal_coef(self, t):
        lmc = self.log_mean_coeff(t)
        return jnp.exp(lmc), jnp.sqrt(-jnp.expm1(2.0 * lmc))

    def prior_std(self):
        return 1.0

    def timestep(self, t):
        """Index i of the discrete step at time t: [B] int32. Discrete schedules: the diffusers
        timestep n with t_n = (n + 1) / N (t = 1 is n = N - 1)."""
        if self.discrete:
            return jnp.clip(jnp.round(t * self.N - 1.0), 0, self.N - 1).astype(jnp.int32)
        return jnp.round(t * (self.N - 1) / self.T).astype(jnp.int32)

    def discretize(self, x, t):
        """DDPM: x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z."""
        i = self.timestep(t)
        beta = self.discrete_betas[i]
        f = bcast(jnp.sqrt(self.alphas[i]), x) * x - x
        return f, jnp.sqrt(beta)


VP_SCHEDULES = ("continuous", "linear", "scaled_linear", "squaredcos_cap_v2")


def discrete_betas(schedule: str, beta_start: float, beta_end: float, n: int) -> np.ndarray:
    """The N betas of a discrete VP schedule, float32 as diffusers' schedulers build them:
    'linear' (DDPM, Ho et al. 2020), 'scaled_linear' (linear in sqrt(beta): latent diffusion),
    'squaredcos_cap_v2' (alpha_bar(s) = cos^2((s + 0.008) / 1.008 pi / 2), Nichol & Dhariwal
    2021 eq. 17, beta capped at 0.999; beta_start / beta_end unused).

    Args:
      schedule: one of VP_SCHEDULES other than 'continuous'. beta_start, beta_end: the first
        and last beta. n: the number of training timesteps N.
    Returns:
      [N] float32 betas.
    """
    if schedule == "linear":
        return np.linspace(beta_start, beta_end, n, dtype=np.float32)
    if schedule == "scaled_linear":
        return np.linspace(beta_start**0.5, beta_end**0.5, n, dtype=np.float32) ** 2
    if schedule == "squaredcos_cap_v2":
        s = np.arange(n + 1, dtype=np.float64) / n
        alpha_bar = np.cos((s + 0.008) / 1.008 * np.pi / 2) ** 2
        return np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], 0.999).astype(np.float32)
    choose("model.schedule", schedule, VP_SCHEDULES[1:])


def _tables(betas, cumprod) -> dict:
    betas, cumprod = jnp.asarray(betas), jnp.asarray(cumprod)
    return {"betas": betas, "alphas": 1.0 - betas, "sqrt_alphas_cumprod": jnp.sqrt(cumprod),
            "sqrt_1m_alphas_cumprod": jnp.sqrt(1.0 - cumprod)}


class subVPSDE(VPSDE):
    """Sub-VP: VP drift, g(t)^2 = beta(t) (1 - exp(-2 int_0^t beta)); Euler-Maruyama steps."""

    def sde(self, x, t):
        beta = self.beta(t)
        discount = -jnp.expm1(-2.0 * self.beta_0 * t - (self.beta_1 - self.beta_0) * t**2)
        return -0.5 * bcast(beta, x) * x, jnp.sqrt(beta * discount)

    def marginal_coef(self, t):
        lmc = self.log_mean_coeff(t)
        return jnp.exp(lmc), -jnp.expm1(2.0 * lmc)

    def discretize(self, x, t):
        return SDE.discretize(self, x, t)


class EDMSDE(SDE):
    """EDM (Karras et al. 2022): x_t = x_0 + t z, so sigma(t) = t, f = 0, g(t) = sqrt(2 t).

    Time is the noise level: T = sigma_max, eps = sigma_min. `sigma_data` (the data's std)
    sets the preconditioning of models/utils.py and the weight of the EDM loss.
    """

    def __init__(self, sigma_min=0.002, sigma_max=80.0, N=1000, sigma_data=0.5):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        if not sigma_data > 0:
            raise ValueError(f"need sigma_data > 0, got {sigma_data}")
        super().__init__(N, float(sigma_max), float(sigma_min))
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.sigma_data = float(sigma_data)
        # The noise levels of the sampler grid t_i = linspace(eps, T, N), increasing.
        self.discrete_sigmas = jnp.linspace(self.sigma_min, self.sigma_max, self.N)

    def sde(self, x, t):
        return jnp.zeros_like(x), jnp.sqrt(2.0 * t)

    def marginal_coef(self, t):
        return jnp.ones_like(t), t

    def prior_std(self):
        return self.sigma_max

    def timestep(self, t):
        """Index i of the grid level sigma_i nearest to t: [B] int32."""
        i = jnp.round((t - self.sigma_min) * (self.N - 1) / (self.sigma_max - self.sigma_min))
        return jnp.clip(i, 0, self.N - 1).astype(jnp.int32)

    def discretize(self, x, t):
        """SMLD on the grid: x_i = x_{i-1} + sqrt(sigma_i^2 - sigma_{i-1}^2) z, sigma_{-1} = 0."""
        i = self.timestep(t)
        sigma = self.discrete_sigmas[i]
        prev = jnp.where(i == 0, 0.0, self.discrete_sigmas[jnp.maximum(i - 1, 0)])
        return jnp.zeros_like(x), jnp.sqrt(sigma**2 - prev**2)


SDES = {"vesde": VESDE, "vpsde": VPSDE, "subvpsde": subVPSDE, "edmsde": EDMSDE}


def _sigma_range(m) -> None:
    require(m.sigma_min > 0, "model.sigma_min", f"must be > 0, got {m.sigma_min}")
    require(
        m.sigma_min < m.sigma_max,
        "model.sigma_min",
        f"must be < model.sigma_max, got {m.sigma_min} >= {m.sigma_max}",
    )


def _edm_sde(m) -> EDMSDE:
    """EDMSDE from model.{sigma_min, sigma_max, num_scales, sigma_data}."""
    _sigma_range(m)
    sigma_data = m.get("sigma_data", 0.5)
    require(sigma_data > 0, "model.sigma_data", f"must be > 0 for training.sde='edmsde', got "
            f"{sigma_data}")
    # The preconditioned network sees c_noise = log(sigma) / 4, which may be negative.
    require(m.get("embedding_type", "positional") != "fourier", "model.embedding_type",
            "'fourier' embeds log(labels) and EDM labels log(sigma) / 4 can be negative; use "
            "'positional' with training.sde='edmsde'")
    return EDMSDE(m.sigma_min, m.sigma_max, m.num_scales, sigma_data)

# ---------------------------------------------------------------------------------------------
# What every fast solver reads (DPM-Solver, Lu et al. 2022, Sec. 3.1; EDM, Karras et al. 2022):
# alpha(t), sigma(t) from marginal_coef, lambda(t) = log(alpha / sigma) and its inverse, and the
# data / noise predictions of a score. Any SDE with marginal_coef works (bisection otherwise).
# ---------------------------------------------------------------------------------------------


def log_snr(sde: SDE, t):
    """Half log signal-to-noise ratio lambda(t) = log(alpha(t) / sigma(t)), decreasing in t.

    Args:
      sde: any SDE exposing marginal_coef. t: times, any shape.
    Returns:
      lambda(t), the shape of t.
    """
    alpha, sigma = sde.marginal_coef(t)
    return jnp.log(alpha) - jnp.log(sigma)


def _ve_inverse_log_snr(sde: VESDE, lam):
    # sigma = e^{-lambda} = sigma_min (sigma_max / sigma_min)^t
    return (-lam - np.log(sde.sigma_min)) / np.log(sde.sigma_max / sde.sigma_min)


def _vp_time_of_log_mean(sde: VPSDE, L):
    """t >= 0 with -log alpha(t) = L, the root of (b1 - b0)/4 t^2 + b0/2 t - L = 0 (stable form)."""
    a, b = 0.25 * (sde.beta_1 - sde.beta_0), 0.5 * sde.beta_0
    root = 2.0 * L / (b + jnp.sqrt(b**2 + 4.0 * a * L))
    return jnp.where(L > 0, root, 0.0)


def _vp_inverse_log_snr(sde: VPSDE, lam):
    # alpha^2 = 1 / (1 + e^{-2 lambda})  =>  -log alpha = softplus(-2 lambda) / 2
    neg_log_alpha = 0.5 * jax.nn.softplus(-2.0 * lam)
    if sde.discrete:  # invert the piecewise-linear log alpha (decreasing in t)
        knots = np.linspace(0.0, 1.0, sde.N + 1)[::-1]
        return jnp.interp(-neg_log_alpha, jnp.asarray(sde._log_alpha[::-1], jnp.float32),
                          jnp.asarray(knots, jnp.float32))
    return _vp_time_of_log_mean(sde, neg_log_alpha)


def _subvp_inverse_log_snr(sde: subVPSDE, lam):
    # e^lambda = alpha / (1 - alpha^2)  =>  1 / alpha = w + sqrt(w^2 + 1), w = e^{-lambda} / 2
    return _vp_time_of_log_mean(sde, jnp.arcsinh(0.5 * jnp.exp(-lam)))


def _bisect_inverse_log_snr(sde: SDE, lam, iters: int = 64):
    """t in [0, T] with lambda(t) = lam by bisection (lambda decreases in t); jittable."""
    lam = jnp.asarray(lam)

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        later = log_snr(sde, mid) > lam  # lambda(mid) too large: the root lies after mid
        return jnp.where(later, mid, lo), jnp.where(later, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (jnp.zeros_like(lam), jnp.full_like(lam, sde.T)))
    return 0.5 * (lo + hi)


def _edm_inverse_log_snr(sde: EDMSDE, lam):
    # alpha = 1, sigma = t  =>  lambda = -log t
    return jnp.exp(-jnp.asarray(lam))


# exact types only: a subclass with another sigma(t) falls back to bisection unless added here
INVERSE_LOG_SNR = {VESDE: _ve_inverse_log_snr, VPSDE: _vp_inverse_log_snr,
                   subVPSDE: _subvp_inverse_log_snr, EDMSDE: _edm_inverse_log_snr}


def inverse_log_snr(sde: SDE, lam):
    """t(lambda), the inverse of log_snr: closed form for VE, VP (a quadratic in t), sub-VP and EDM,
    jittable bisection on [0, T] for any other SDE.

    Args:
      sde: any SDE exposing marginal_coef. lam: half log-SNRs, any shape.
    Returns:
      times t with log_snr(sde, t) = lam, the shape of lam.
    """
    return INVERSE_LOG_SNR.get(type(sde), _bisect_inverse_log_snr)(sde, lam)


def data_prediction(sde: SDE, score, x, t):
    """x0 = (x + sigma^2 score) / alpha, the posterior mean E[x(0) | x(t) = x] (Tweedie).

    Args:
      score: score at (x, t) [B, ...]. x: [B, ...]. t: [B].
    Returns:
      x0 [B, ...].
    """
    alpha, sigma = sde.marginal_coef(t)
    return (x + bcast(sigma**2, x) * score) / bcast(alpha, x)


def noise_prediction(sde: SDE, score, t):
    """eps = -sigma score, the posterior mean of the noise z in x(t) = alpha x(0) + sigma z.

    Args:
      score: [B, ...]. t: [B].
    Returns:
      eps [B, ...].
    """
    return -bcast(sde.marginal_coef(t)[1], score) * score


def get_sde(config) -> SDE:
    """Build the SDE named by `config.training.sde` from `config.model` fields."""
    name = choose("training.sde", str(config.training.sde).lower(), SDES)
    m = config.model
    require(int(m.num_scales) >= 1, "model.num_scales", f"must be >= 1, got {m.num_scales}")
    if name == "vesde":
        _sigma_range(m)
        sde = VESDE(m.sigma_min, m.sigma_max, m.num_scales)
    elif name == "edmsde":
        sde = _edm_sde(m)
    else:
        require(m.beta_min >= 0, "model.beta_min", f"must be >= 0, got {m.beta_min}")
        require(
            m.beta_min < m.beta_max,
            "model.beta_min",
            f"must be < model.beta_max, got {m.beta_min} >= {m.beta_max}",
        )
        sde = SDES[name](m.beta_min, m.beta_max, m.num_scales,
                         schedule=m.get("schedule", "continuous"))
    eps = config.training.get("eps", None)
    if eps is not None:
        require(0 < eps < sde.T, "training.eps", f"must be in (0, {sde.T}), got {eps}")
        sde.eps = float(eps)
    return sde


__all__ = ["SDE", "ReverseSDE", "VESDE", "VPSDE", "subVPSDE", "EDMSDE", "SDES", "get_sde",
           "ConfigError", "log_snr", "inverse_log_snr", "data_prediction", "noise_prediction"]
