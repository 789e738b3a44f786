"""Fast samplers in log-SNR time for any SDE, each (rng, score_fn) -> (x, nfe): DDIM (Song et al.
2021, eq. 12), DPM-Solver (Lu et al. 2022, Alg. 1-2, -fast), DPM-Solver++ 2S/2M/3M (Lu et al.
2022b), UniPC (Zhao et al. 2023), EDM Alg. 1-2 (Karras et al. 2022) in x / alpha, sigma / alpha.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

import sde_lib
from utils import ConfigError, choose, require

# ---------------------------------------------------------------------------------------------
# Time grids t_0 = T > t_1 > ... > t_M = t_end and the quantities on them
# ---------------------------------------------------------------------------------------------


def _eval(fn, v):
    """fn on the 1-D array v, computed eagerly (even under a trace) on v zero-padded to a power
    of two >= 64, so that grids of every length share a few compiled shapes; numpy float64."""
    v = np.asarray(v, np.float64).reshape(-1)
    size = max(64, 1 << (len(v) - 1).bit_length())
    with jax.ensure_compile_time_eval():
        padded = jnp.asarray(np.pad(v, (0, size - len(v)), constant_values=v[-1]))
        out = fn(padded)
    return jax.tree.map(lambda o: np.asarray(o, np.float64)[: len(v)], out)


def _lam_to_t(sde, lam):
    return _eval(lambda lam: sde_lib.inverse_log_snr(sde, lam), lam)


def _lam(sde, t):
    return _eval(lambda t: sde_lib.log_snr(sde, t), t)


def time_uniform(sde, n, t_end, rho, t_start=None):
    return np.linspace(sde.T if t_start is None else t_start, t_end, n + 1)


def time_quadratic(sde, n, t_end, rho, t_start=None):
    start = sde.T if t_start is None else t_start
    return np.linspace(np.sqrt(start), np.sqrt(t_end), n + 1) ** 2


def logsnr(sde, n, t_end, rho, t_start=None):
    start = sde.T if t_start is None else t_start
    return _lam_to_t(sde, np.linspace(_lam(sde, start)[0], _lam(sde, t_end)[0], n + 1))


def karras(sde, n, t_end, rho, t_start=None):
    """EDM eq. 5 in the scaled noise level sigma_hat = sigma / alpha = e^{-lambda}."""
    start = sde.T if t_start is None else t_start
    hi, lo = np.exp(-_lam(sde, start)[0]), np.exp(-_lam(sde, t_end)[0])
    sigma_hat = (hi ** (1 / rho) + np.linspace(0, 1, n + 1) * (lo ** (1 / rho) - hi ** (1 / rho)))
    return _lam_to_t(sde, -np.log(sigma_hat**rho))


SCHEDULES = {"time_uniform": time_uniform, "time_quadratic": time_quadratic, "logsnr": logsnr,
             "karras": karras}


@dataclasses.dataclass(frozen=True)
class Grid:
    """t, alpha, sigma, lambda at grid points, float64 numpy arrays of one shape."""

    t: np.ndarray
    alpha: np.ndarray
    sigma: np.ndarray
    lam: np.ndarray


def grid_at(sde, t) -> Grid:
    """The solver quantities at times t, read from sde_lib (marginal_coef, log_snr)."""
    t = np.asarray(t, np.float64)
    alpha, sigma = _eval(sde.marginal_coef, t)
    return Grid(t, alpha.reshape(t.shape), sigma.reshape(t.shape), _lam(sde, t).reshape(t.shape))


def discrete_times(sde, timesteps, final: str = "zero") -> np.ndarray:
    """The time grid of a sampler that visits integer training timesteps, as diffusers'
    schedulers do on a discrete-schedule VPSDE: timestep n is t = (n + 1) / N.

    Args:
      sde: a VPSDE with a discrete schedule. timesteps: decreasing ints in [0, N), e.g. a
        scheduler's `timesteps`. final: where the last step lands: 'zero' (t = 0: alpha = 1,
        sigma = 0; DDIM's set_alpha_to_one, DPM-Solver's final_sigmas_type='zero') or
        'first' (t = 1 / N, timestep 0's noise level: set_alpha_to_one=False, 'sigma_min').
        DDIMScheduler steps from n to n - N // steps, the next timestep for its 'leading' and
        'trailing' spacings (not for 'linspace'); DPM-Solver steps to the next timestep.
    Returns:
      [len(timesteps) + 1] times for `times=` of get_fast_solver / get_fast_sampler.
    """
    if not getattr(sde, "discrete", False):
        raise ConfigError("discrete timesteps need a VPSDE with a discrete model.schedule")
    choose("final", final, ("zero", "first"))
    n = np.asarray(timesteps, np.float64)
    if n.ndim != 1 or np.any(n < 0) or np.any(n >= sde.N) or np.any(np.diff(n) >= 0):
        raise ConfigError(f"timesteps must decrease within [0, {sde.N}), got {n.tolist()}")
    return np.append((n + 1.0) / sde.N, 0.0 if final == "zero" else 1.0 / sde.N)


def _given_grid(sde, times, n: int) -> Grid:
    """The explicit grid `times` (decreasing, in [0, T]) as an n-step Grid."""
    t = np.asarray(times, np.float64)
    if t.ndim != 1 or len(t) != n + 1:
        raise ConfigError(f"sampling.times: this method and step count need {n + 1} times, "
                          f"got {t.size}")
    if np.any(np.diff(t) >= 0) or t[0] > sde.T or t[-1] < 0:
        raise ConfigError(f"sampling.times must decrease within [0, {sde.T:g}], got {t.tolist()}")
    return grid_at(sde, t)


def time_grid(sde, schedule: str, n: int, t_end: float, rho: float, t_start=None) -> Grid:
    """n steps from T (or t_start) to t_end by `schedule` (endpoints exact)."""
    t = np.array(SCHEDULES[schedule](sde, n, t_end, rho, t_start), np.float64)
    t[0], t[-1] = sde.T if t_start is None else t_start, t_end
    return grid_at(sde, t)


# The optional replacement hook project(rng, x, t [B]) -> x of controllable.py, applied to the
# state after each step at its new time; its keys come from their own stream of the solver's rng.
_HOOK_STREAM = 2**31 - 1


def _hook(project, rng, i, x, t):
    """project(fold_in(rng's hook stream, i), x, t) with t a scalar time; x if project is None."""
    if project is None:
        return x
    key = jax.random.fold_in(jax.random.fold_in(rng, _HOOK_STREAM), i)
    return project(key, x, jnp.full((x.shape[0],), t, x.dtype))


def _predictor(sde, score_fn, kind):
    """(x [B, ...], t scalar) -> the data ('x0') or noise ('eps') prediction [B, ...]."""

    def predict(x, t):
        t = jnp.full((x.shape[0],), t, x.dtype)
        score = score_fn(x, t)
        if kind == "eps":
            return sde_lib.noise_prediction(sde, score, t)
        return sde_lib.data_prediction(sde, score, x, t)

    return predict


def _on(plan: dict, x):
    return {k: jnp.asarray(v, x.dtype) for k, v in plan.items()}


# ---------------------------------------------------------------------------------------------
# DDIM: x_t = alpha_t x0 + sqrt(sigma_t^2 - sigma_eta^2) eps + sigma_eta z
# ---------------------------------------------------------------------------------------------


def ddim(sde, g: Grid, eta: float = 0.0, project=None):
    """DDIM with sigma_eta = eta sigma_t sqrt(1 - e^{-2h}) (eta = 1: the DDPM posterior std);
    `project` (optional) replaces the state after each step at t_{i+1}."""
    h = g.lam[1:] - g.lam[:-1]
    sigma_eta = eta * g.sigma[1:] * np.sqrt(-np.expm1(-2 * h))
    plan = {"t": g.t[:-1], "t_next": g.t[1:], "c_x0": g.alpha[1:], "c_z": sigma_eta,
            "c_eps": np.sqrt(np.maximum(g.sigma[1:] ** 2 - sigma_eta**2, 0.0))}
    steps = len(h)

    def solve(rng, score_fn, x):
        c = _on(plan, x)

        def step(i, x):
            tb = jnp.full((x.shape[0],), c["t"][i], x.dtype)
            score = score_fn(x, tb)
            x0 = sde_lib.data_prediction(sde, score, x, tb)
            eps = sde_lib.noise_prediction(sde, score, tb)
            x = c["c_x0"][i] * x0 + c["c_eps"][i] * eps
            if eta > 0:
                x = x + c["c_z"][i] * jax.random.normal(jax.random.fold_in(rng, i), x.shape)
            return _hook(project, rng, i, x, c["t_next"][i])

        return jax.lax.fori_loop(0, steps, step, x), steps

    return solve


# ---------------------------------------------------------------------------------------------
# Singlestep DPM-Solver-1/2/3 (noise prediction) and DPM-Solver++ 1/2S (data prediction)
# ---------------------------------------------------------------------------------------------

# intermediate points lambda_s + r_j h of each order (DPM-Solver Alg. 1 with r1 = 1/2, Alg. 2)
_R = {1: (), 2: (0.5,), 3: (1 / 3, 2 / 3)}


def fast_orders(steps: int, order: int) -> list[int]:
    """DPM-Solver-fast: the orders of the singlestep steps spending exactly `steps` evaluations."""
    if order == 3:
        tail = {0: [2, 1], 1: [1], 2: [2]}[steps % 3]
        return [3] * (steps // 3 + 1 - len(tail)) + tail
    if order == 2:
        return [2] * (steps // 2) + [1] * (steps % 2)
    return [1] * steps


def _eps_stages(s: Grid, mids: list[Grid], t: Grid, order: int):
    """(a, b, c) per stage: u_j = a x + b eps_s + c (eps_{j-1} - eps_s), the last one x_t."""
    h = t.lam - s.lam
    r = _R[order]
    stages = []
    for j, m in enumerate(mids):
        rh = r[j] * h
        c = 0.0 if j == 0 else -m.sigma * (r[1] / r[0]) * (np.expm1(rh) / rh - 1.0)
        stages.append((m.alpha / s.alpha, -m.sigma * np.expm1(rh), c + np.zeros_like(h)))
    c = np.zeros_like(h)
    if order == 2:
        c = -t.sigma * np.expm1(h) / (2 * r[0])
    elif order == 3:
        c = -(t.sigma / r[1]) * (np.expm1(h) / h - 1.0)
    stages.append((t.alpha / s.alpha, -t.sigma * np.expm1(h), c))
    return stages


def _x0_stages(s: Grid, mids: list[Grid], t: Grid, order: int):
    """DPM-Solver++(2S): u = (sigma_u / sigma_s) x - alpha_u (e^{-r h} - 1) x0_s, and so on."""
    h = t.lam - s.lam
    stages = [(m.sigma / s.sigma, -m.alpha * np.expm1(-_R[order][j] * h), np.zeros_like(h))
              for j, m in enumerate(mids)]
    c = np.zeros_like(h) if order == 1 else -t.alpha * np.expm1(-h) / (2 * _R[order][0])
    stages.append((t.sigma / s.sigma, -t.alpha * np.expm1(-h), c))
    return stages


def _singlestep_segment(sde, g: Grid, idx: np.ndarray, order: int, kind: str):
    """Plan of the steps idx (all of one order): stage times and coefficients [order, n]."""
    s = Grid(*(v[idx] for v in dataclasses.astuple(g)))
    t = Grid(*(v[idx + 1] for v in dataclasses.astuple(g)))
    mids = [grid_at(sde, _lam_to_t(sde, s.lam + r * (t.lam - s.lam))) for r in _R[order]]
    stages = (_eps_stages if kind == "eps" else _x0_stages)(s, mids, t, order)
    return {"t": np.stack([s.t] + [m.t for m in mids]), "t_next": t.t, "step": idx,
            "a": np.stack([st[0] for st in stages]), "b": np.stack([st[1] for st in stages]),
            "c": np.stack([st[2] for st in stages])}


def singlestep(sde, g: Grid, orders: list[int], kind: str, project=None):
    """Singlestep exponential integrator over g with per-step `orders` (constant runs looped);
    `project` (optional) replaces the state after each step, not the intermediate stages u."""
    segments, start = [], 0
    for i in range(1, len(orders) + 1):
        if i == len(orders) or orders[i] != orders[start]:
            idx = np.arange(start, i)
            segments.append((orders[start], _singlestep_segment(sde, g, idx, orders[start], kind)))
            start = i
    nfe = int(sum(orders))

    def solve(rng, score_fn, x):
        predict = _predictor(sde, score_fn, kind)
        for order, plan in segments:
            c = _on(plan, x)

            def step(i, x, order=order, c=c):
                p_s = predict(x, c["t"][0, i])
                p = p_s
                for j in range(1, order):
                    u = c["a"][j - 1, i] * x + c["b"][j - 1, i] * p_s + c["c"][j - 1, i] * (p - p_s)
                    p = predict(u, c["t"][j, i])
                k = order - 1
                x = c["a"][k, i] * x + c["b"][k, i] * p_s + c["c"][k, i] * (p - p_s)
                return _hook(project, rng, c["step"][i].astype(jnp.int32), x, c["t_next"][i])

            x = jax.lax.fori_loop(0, c["t"].shape[1], step, x)
        return x, nfe

    return solve


# ---------------------------------------------------------------------------------------------
# Multistep data-prediction solvers: DPM-Solver++(2M, 3M) and UniPC (UniP-p + UniC-p)
# ---------------------------------------------------------------------------------------------


def multistep_orders(steps: int, order: int, lower_order_final: bool) -> list[int]:
    """Warm-up with lower orders; with lower_order_final and fewer than 10 steps, also the end."""
    orders = [min(order, i + 1) for i in range(steps)]
    if lower_order_final and steps < 10:
        orders = [min(o, steps - i) for i, o in enumerate(orders)]
    return orders


def _dpmpp_coefs(g: Grid, i: int, order: int) -> np.ndarray:
    """[m_i, m_{i-1}, m_{i-2}] weights of DPM-Solver++ step i (order 1, 2M or 3M)."""
    h = g.lam[i + 1] - g.lam[i]
    phi_1 = np.expm1(-h)
    w = np.zeros(3)
    if order == 1:
        w[0] = -phi_1
    elif order == 2:
        r = (g.lam[i] - g.lam[i - 1]) / h
        w[:2] = -phi_1 * np.array([1 + 1 / (2 * r), -1 / (2 * r)])
    else:  # Taylor terms h^n phi: x0' from D1, x0'' from D2 (divided differences in lambda)
        r0, r1 = (g.lam[i] - g.lam[i - 1]) / h, (g.lam[i - 1] - g.lam[i - 2]) / h
        phi_2 = phi_1 / h + 1.0
        phi_3 = phi_2 / h - 0.5
        d1_0 = np.array([1.0, -1.0, 0.0]) / r0
        d1_1 = np.array([0.0, 1.0, -1.0]) / r1
        D1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)  # ~ h x0'
        D2 = 2.0 * (d1_0 - d1_1) / (r0 + r1)  # ~ h^2 x0''
        w = -phi_1 * np.array([1.0, 0.0, 0.0]) + phi_2 * D1 - phi_3 * D2
    return g.alpha[i + 1] * w


def _phis(h: float, n: int) -> list[float]:
    """phi_1(-h) .. phi_n(-h): phi_1(z) = (e^z - 1) / z, phi_{k+1}(z) = (phi_k(z) - 1/k!) / z."""
    out = [-np.expm1(-h) / h]
    for k in range(1, n):
        out.append((out[-1] - 1.0 / math.factorial(k)) / -h)
    return out


def _unipc_coefs(g: Grid, i: int, order: int, solver_type: str, corrector: bool) -> np.ndarray:
    """[m_i, m_{i-1}, m_{i-2}, m_new] weights: x = (sigma_t / sigma_s) x + alpha_t (1 - e^{-h})
    m_i + alpha_t B(h) sum_k a_k D_k, D_k = (m_k - m_i) / r_k, R a = phi / B (UniPC eq. 8)."""
    h = g.lam[i + 1] - g.lam[i]
    B = h if solver_type == "bh1" else -np.expm1(-h)
    r = [(g.lam[i - k] - g.lam[i]) / h for k in range(1, order)] + ([1.0] if corrector else [])
    w = np.zeros(4)
    w[0] = -np.expm1(-h)
    if r:
        K = len(r)
        phis = _phis(h, K + 1)
        R = np.array([[rk**n for rk in r] for n in range(K)])
        b = np.array([math.factorial(n) * h * phis[n] / B for n in range(1, K + 1)])
        # one difference: a_1 = 1/2, which meets the order condition up to O(h) (UniPC Sec. 3.1);
        # with more, B(h) cancels in the exact solve
        a = np.array([0.5]) if K == 1 else np.linalg.solve(R, b)
        slots = list(range(1, order)) + ([3] if corrector else [])
        for ak, rk, slot in zip(a, r, slots, strict=True):
            w[slot] += B * ak / rk
            w[0] -= B * ak / rk
    return g.alpha[i + 1] * w


def multistep(sde, g: Grid, orders: list[int], method: str, solver_type: str = "bh2",
              project=None):
    """x_{i+1} = (sigma_{i+1} / sigma_i) x_i + sum_j P_ij m_{i-j}; UniPC then corrects it with
    m_{i+1} = x0(x_{i+1}^pred), which the next step reuses: exactly one evaluation per step.

    `project` (optional) replaces x_{i+1}^pred before it is evaluated, so the cached m_{i+1} is
    the model output of the replaced state; UniPC's corrected x_{i+1} is replaced again with the
    same key, so the state carried on matches the evaluated one in the replaced coordinates."""
    steps = len(orders)
    unipc = method == "unipc"
    if unipc:
        P = np.stack([_unipc_coefs(g, i, o, solver_type, False) for i, o in enumerate(orders)])
        C = np.stack([_unipc_coefs(g, i, o, solver_type, True) for i, o in enumerate(orders)])
    else:
        P = np.stack([np.append(_dpmpp_coefs(g, i, o), 0.0) for i, o in enumerate(orders)])
        C = P
    plan = {"t": g.t, "A": g.sigma[1:] / g.sigma[:-1], "P": P, "C": C}

    def solve(rng, score_fn, x):
        c = _on(plan, x)
        predict = _predictor(sde, score_fn, "x0")

        def combine(w, hist, m_new):
            return w[0] * hist[0] + w[1] * hist[1] + w[2] * hist[2] + w[3] * m_new

        def step(i, carry):
            x, hist = carry
            x_pred = _hook(project, rng, i, c["A"][i] * x + combine(c["P"][i], hist, 0.0),
                           c["t"][i + 1])
            m_new = predict(x_pred, c["t"][i + 1])
            if unipc:
                x_pred = _hook(project, rng, i, c["A"][i] * x + combine(c["C"][i], hist, m_new),
                               c["t"][i + 1])
            return x_pred, (m_new, hist[0], hist[1])

        m = predict(x, c["t"][0])
        hist = (m, jnp.zeros_like(m), jnp.zeros_like(m))
        x, hist = jax.lax.fori_loop(0, steps - 1, step, (x, hist))
        i = steps - 1  # the last step: predictor only, no evaluation
        return _hook(project, rng, i, c["A"][i] * x + combine(c["P"][i], hist, 0.0),
                     c["t"][i + 1]), steps

    return solve


# ---------------------------------------------------------------------------------------------
# EDM (Karras et al. 2022): Alg. 1 (Heun) and Alg. 2 (churn) on x_hat = x / alpha, sigma_hat
# ---------------------------------------------------------------------------------------------


def edm(sde, g: Grid, steps: int, s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0,
        project=None):
    """Heun steps in sigma_hat = sigma / alpha for the ODE dx_hat / dsigma_hat = (x_hat - D) /
    sigma_hat, D the data prediction; the last step is Euler when `steps` (the NFE) is odd.
    `project` (optional) replaces x = alpha x_hat after each step (not the Euler point)."""
    n = len(g.t) - 1
    sigma_hat = g.sigma / g.alpha
    gamma = np.where((sigma_hat[:-1] >= s_tmin) & (sigma_hat[:-1] <= s_tmax),
                     min(s_churn / n, np.sqrt(2.0) - 1.0), 0.0)
    sigma_churn = sigma_hat[:-1] * (1 + gamma)  # Alg. 2's t_hat, as a noise level
    t_hat = np.where(gamma > 0, _lam_to_t(sde, -np.log(sigma_churn)), g.t[:-1])
    plan = {"t": g.t, "alpha": g.alpha, "sigma": sigma_hat, "t_hat": t_hat,
            "alpha_hat": grid_at(sde, t_hat).alpha, "sigma_hat": sigma_churn,
            "noise": s_noise * sigma_hat[:-1] * np.sqrt((1 + gamma) ** 2 - 1)}
    churn = s_churn > 0

    def solve(rng, score_fn, x):
        c = _on(plan, x)
        predict = _predictor(sde, score_fn, "x0")

        def denoise(x_hat, t, alpha):  # D(x_hat; sigma_hat(t)) = x0(alpha x_hat, t)
            return predict(alpha * x_hat, t)

        def step(i, x_hat, heun=True):
            if churn:
                z = jax.random.normal(jax.random.fold_in(rng, i), x_hat.shape)
                x_hat = x_hat + c["noise"][i] * z
            d = (x_hat - denoise(x_hat, c["t_hat"][i], c["alpha_hat"][i])) / c["sigma_hat"][i]
            dt = c["sigma"][i + 1] - c["sigma_hat"][i]
            x_next = x_hat + dt * d
            if heun:
                d_next = (x_next - denoise(x_next, c["t"][i + 1], c["alpha"][i + 1])) / \
                    c["sigma"][i + 1]
                x_next = x_hat + dt * 0.5 * (d + d_next)
            if project is None:
                return x_next
            alpha = c["alpha"][i + 1]
            return _hook(project, rng, i, alpha * x_next, c["t"][i + 1]) / alpha

        x_hat = jax.lax.fori_loop(0, steps // 2, step, x / c["alpha"][0])
        if steps % 2:
            x_hat = step(n - 1, x_hat, heun=False)
        return c["alpha"][-1] * x_hat, steps

    return solve


# ---------------------------------------------------------------------------------------------
# The factory
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Method:
    orders: tuple  # valid sampling.order values (the first is the default)
    fields: dict  # the method's own fields and their defaults


INF = float("inf")
METHODS = {
    "ddim": Method((1,), {"eta": 0.0}),
    "dpm_solver": Method((3, 1, 2), {}),
    "dpm_solver++": Method((2, 1, 3), {"multistep": True, "lower_order_final": True}),
    "unipc": Method((3, 1, 2), {"solver_type": "bh2", "lower_order_final": True}),
    "edm_heun": Method((2,), {}),
    "edm_sde": Method((2,), {"s_churn": 10.0, "s_tmin": 0.0, "s_tmax": INF, "s_noise": 1.0}),
}
SOLVER_TYPES = ("bh1", "bh2")


def _check_fields(method: str, order: int, steps: int, fields: dict) -> None:
    require(steps >= max(order, 1), "sampling.steps",
            f"sampling.method={method!r} with order {order} needs steps >= {max(order, 1)} "
            f"(the number of score evaluations), got {steps}")
    checks = {
        "eta": (lambda v: 0.0 <= v <= 1.0, "must be in [0, 1] (0: deterministic DDIM, 1: DDPM)"),
        "s_churn": (lambda v: v >= 0.0, "must be >= 0"),
        "s_noise": (lambda v: v >= 0.0, "must be >= 0"),
        "s_tmin": (lambda v: v <= fields.get("s_tmax", INF), "must be <= sampling.s_tmax"),
    }
    for key, value in fields.items():
        if key in checks:
            ok, message = checks[key]
            require(ok(float(value)), f"sampling.{key}", f"{message}, got {value}")
    if "solver_type" in fields:
        choose("sampling.solver_type", fields["solver_type"], SOLVER_TYPES)
    if method == "dpm_solver++" and not fields["multistep"] and order == 3:
        raise ConfigError("sampling.order=3 is not valid for sampling.method='dpm_solver++' with "
                          "sampling.multistep=False (2S); choose one of: 1, 2")


def _build(sde, method: str, steps: int, order: int, grid, f: dict, project=None,
           to_zero: bool = False):
    """The solve(rng, score_fn, x_T) of `method`; grid(n) gives an n-step time grid; `to_zero`:
    it ends at sigma = 0, where multistep DPM-Solver++ takes a first-order last step (its
    higher-order weights need a finite lambda), as diffusers' final_sigmas_type='zero' does."""
    if method == "ddim":
        return ddim(sde, grid(steps), float(f["eta"]), project)
    if method == "dpm_solver" or (method == "dpm_solver++" and not f["multistep"]):
        orders = fast_orders(steps, order)
        kind = "eps" if method == "dpm_solver" else "x0"
        return singlestep(sde, grid(len(orders)), orders, kind, project)
    if method in ("dpm_solver++", "unipc"):
        orders = multistep_orders(steps, order, bool(f["lower_order_final"]))
        if to_zero:
            orders[-1] = 1
        return multistep(sde, grid(steps), orders, method, f.get("solver_type", "bh2"), project)
    edm_fields = {k: float(v) for k, v in f.items()}
    return edm(sde, grid(-(-steps // 2)), steps, **edm_fields, project=project)


def get_fast_solver(sde, method="dpm_solver++", steps=20, order=None, schedule="logsnr",
                    t_end=None, rho=7.0, t_start=None, project=None, times=None,
                    **method_fields):
    """The fast solver from a given x(T), or x(t_start), or x(times[0]) (same arguments as
    get_fast_sampler).

    Returns:
      solve(rng, score_fn, x_T [B, ...]) -> (x(t_end) [B, ...], nfe int).
    """
    spec = METHODS[choose("sampling.method", method, METHODS)]
    order = spec.orders[0] if order is None else int(order)
    if order not in spec.orders:
        raise ConfigError(f"sampling.order={order} is not valid for sampling.method={method!r}; "
                          f"choose one of: {', '.join(map(str, sorted(spec.orders)))}")
    choose("sampling.schedule", schedule, SCHEDULES)
    for key in method_fields:
        if key not in spec.fields:
            raise ConfigError(f"sampling.{key} is not a field of sampling.method={method!r}; its "
                              f"fields: {', '.join(spec.fields) or 'none'}")
    fields = {**spec.fields, **method_fields}
    t_end = sde.eps if t_end is None else float(t_end)
    require(0.0 < t_end < sde.T, "sampling.t_end", f"must be in (0, {sde.T:g}), got {t_end}")
    require(float(rho) > 0, "sampling.rho", f"must be > 0, got {rho}")
    if t_start is not None:
        t_start = float(t_start)
        require(t_end < t_start <= sde.T, "sampling.t_start",
                f"must be in ({t_end:g}, {sde.T:g}] (after sampling.t_end), got {t_start}")
    steps = int(steps)
    _check_fields(method, order, steps, fields)
    if times is not None:
        to_zero = float(np.asarray(times, np.float64).reshape(-1)[-1]) == 0.0
        if to_zero and not (method == "ddim" or (method == "dpm_solver++" and fields["multistep"])):
            raise ConfigError(f"sampling.times ending at t = 0 (sigma = 0) need sampling.method "
                              f"'ddim' or multistep 'dpm_solver++', got {method!r}; end at "
                              "t > 0 instead")
        return _build(sde, method, steps, order, lambda n: _given_grid(sde, times, n), fields,
                      project, to_zero)
    return _build(sde, method, steps, order,
                  lambda n: time_grid(sde, schedule, n, t_end, float(rho), t_start), fields,
                  project)


def get_fast_sampler(sde, shape, method="dpm_solver++", steps=20, order=None, schedule="logsnr",
                     t_end=None, rho=7.0, t_start=None, project=None, times=None,
                     **method_fields):
    """A fast sampler from the prior at T to t_end with exactly `steps` score evaluations.

    Args:
      sde: any SDE with marginal_coef (VE, VP, sub-VP, ...). shape: sample shape [B, ...].
      method: one of METHODS: 'ddim', 'dpm_solver', 'dpm_solver++', 'unipc', 'edm_heun',
        'edm_sde'.
      steps: the NFE budget (number of score evaluations), spent exactly.
      order: solver order (None: the method's default; METHODS[method].orders are valid).
      schedule: 'time_uniform' | 'time_quadratic' | 'logsnr' | 'karras' (with rho).
      t_end: the last time (sde.eps by default).
      t_start: the first time, in (t_end, T] (None: T); pass the state at t_start as x_init.
      project: optional hook (rng, x, t [B]) -> x applied to the state after each step at its
        new time (controllable.py's replacement of known coordinates); None: no hook.
      times: an explicit decreasing grid in [0, T] replacing schedule, t_start and t_end
        (e.g. discrete_times of a diffusers scheduler's timesteps); it needs as many steps as
        the method takes for `steps` (ddim, multistep: steps; edm: ceil(steps / 2)).
      **method_fields: eta (ddim); multistep, lower_order_final (dpm_solver++); solver_type
        'bh1' | 'bh2', lower_order_final (unipc); s_churn, s_tmin, s_tmax, s_noise (edm_sde).
    Returns:
      sampler(rng, score_fn, x_init=None) -> (x [shape], nfe int), jittable; x_init [shape]
      replaces the prior sample as the starting state.
    """
    solve = get_fast_solver(sde, method, steps, order, schedule, t_end, rho, t_start, project,
                            times, **method_fields)

    def sampler(rng, score_fn, x_init=None):
        x_rng, rng = jax.random.split(rng)
        return solve(rng, score_fn, sde.prior_sampling(x_rng, shape) if x_init is None else x_init)

    return sampler
