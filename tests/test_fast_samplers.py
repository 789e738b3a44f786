"""Fast samplers against closed forms: order of convergence to the exact Gaussian flow, the
DDIM = DPM-Solver-1 = DPM-Solver++-1 identity, the mixture reproduced at a stated NFE, exact NFE.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import analytic
import evaluation
import fast_sampling
import sampling
import sde_lib
from configs.default_toy import get_default_configs
from utils import ConfigError

SDES = {
    "ve": lambda: sde_lib.VESDE(0.01, 50.0),
    "vp": lambda: sde_lib.VPSDE(0.1, 20.0),
    "subvp": lambda: sde_lib.subVPSDE(0.1, 20.0),
}


# ---------------------------------------------------------------------------------------------
# The quantities beside the SDEs
# ---------------------------------------------------------------------------------------------


class _OtherVE(sde_lib.VESDE):
    """A subclass (not in INVERSE_LOG_SNR): t(lambda) comes from the bisection."""


@pytest.mark.parametrize("name", sorted(SDES))
def test_inverse_log_snr_inverts_log_snr(name):
    sde = SDES[name]()
    t = jnp.linspace(sde.eps, sde.T, 50)
    lam = sde_lib.log_snr(sde, t)
    alpha, sigma = sde.marginal_coef(t)
    np.testing.assert_allclose(lam, np.log(alpha / sigma), rtol=1e-5, atol=1e-5)
    assert np.all(np.diff(np.asarray(lam)) < 0)
    np.testing.assert_allclose(sde_lib.inverse_log_snr(sde, lam), t, atol=2e-6)
    bisect = jax.jit(lambda v: sde_lib._bisect_inverse_log_snr(sde, v))(lam)
    np.testing.assert_allclose(bisect, t, atol=2e-6)


def test_bisection_serves_other_sdes():
    sde = _OtherVE(0.01, 50.0)
    t = jnp.array([0.01, 0.3, 0.9])
    np.testing.assert_allclose(sde_lib.inverse_log_snr(sde, sde_lib.log_snr(sde, t)), t,
                               atol=2e-6)


@pytest.mark.parametrize("name", sorted(SDES))
def test_predictions_are_posterior_means(name):
    """For data N(m, s^2): E[x0 | x_t] = m + alpha s^2 (x - alpha m) / v and E[z | x_t] =
    sigma (x - alpha m) / v with v = alpha^2 s^2 + sigma^2."""
    sde, m, s = SDES[name](), 0.7, 0.4
    data = analytic.GaussianData(m, s)
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 3)) * 2
    t = jnp.linspace(0.05, 0.95, 6)
    score = data.score_fn(sde)(x, t)
    alpha, sigma = (np.asarray(v)[:, None] for v in sde.marginal_coef(t))
    v = alpha**2 * s**2 + sigma**2
    np.testing.assert_allclose(sde_lib.data_prediction(sde, score, x, t),
                               m + alpha * s**2 * (x - alpha * m) / v, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sde_lib.noise_prediction(sde, score, t),
                               sigma * (x - alpha * m) / v, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(SDES))
def test_gaussian_flow_solves_the_probability_flow_ode(name):
    """d/dt flow(x_T, T, t) equals the probability-flow drift at (flow, t), and flow is the
    identity at t = T and maps p_T to p_t (mean and std)."""
    sde = SDES[name]()
    data = analytic.GaussianData(jnp.array([1.0, -0.5]), 0.3)
    rsde = sde.reverse(data.score_fn(sde), probability_flow=True)

    @jax.jit
    def check(x_T, z, t):
        T = jnp.full((x_T.shape[0],), sde.T)
        x_t, dx_dt = jax.jvp(lambda u: data.flow(sde, x_T, T, u), (t,), (jnp.ones_like(t),))
        alpha_T, sigma_T = sde.marginal_coef(T[:1])
        x_end = data.sample(jax.random.PRNGKey(2), z.shape) * alpha_T + sigma_T * z
        x0 = data.flow(sde, x_end, jnp.full((z.shape[0],), sde.T), jnp.full((z.shape[0],), 1e-4))
        return dx_dt, rsde.sde(x_t, t)[0], data.flow(sde, x_T, T, T), x0

    x_T = jax.random.normal(jax.random.PRNGKey(1), (6, 2)) * 3
    z = jax.random.normal(jax.random.PRNGKey(3), (20000, 2))
    dx_dt, drift, same, x0 = check(x_T, z, jnp.array([0.02, 0.3, 0.8, 0.02, 0.3, 0.8]))
    np.testing.assert_allclose(dx_dt, drift, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(same, x_T, rtol=1e-6)
    np.testing.assert_allclose(np.mean(x0, 0), [1.0, -0.5], atol=0.02)
    np.testing.assert_allclose(np.std(x0, 0), [0.3, 0.3], rtol=0.03)


# ---------------------------------------------------------------------------------------------
# Order of convergence to the exact flow (float64; one compiled program per SDE)
# ---------------------------------------------------------------------------------------------

# label -> (method, fields, expected slope). Steps 44, 86, 170 are even and 2 mod 3, so the
# DPM-Solver-fast allocation is all order-k steps plus one order-2 step (order 3) or none; the
# multistep methods run without lower-order final steps (as for >= 10 steps by default).
ORDER_CASES = {
    "ddim": ("ddim", {}, 1),
    "dpm_solver-1": ("dpm_solver", {"order": 1}, 1),
    "dpm_solver-2": ("dpm_solver", {"order": 2}, 2),
    "dpm_solver++2M": ("dpm_solver++", {"order": 2, "lower_order_final": False}, 2),
    "dpm_solver++2S": ("dpm_solver++", {"order": 2, "multistep": False}, 2),
    "edm_heun": ("edm_heun", {}, 2),
    "dpm_solver-3": ("dpm_solver", {"order": 3}, 3),
    "dpm_solver++3M": ("dpm_solver++", {"order": 3, "lower_order_final": False}, 3),
    "unipc-3 bh2": ("unipc", {"order": 3, "lower_order_final": False}, 3),
    # UniC raises UniP-2's order by one (Zhao et al. 2023, Thm. 3.3)
    "unipc-2 bh1": ("unipc", {"order": 2, "solver_type": "bh1", "lower_order_final": False}, 3),
}
ORDER_STEPS = (44, 86, 170)
GAUSS = dict(mean=[1.0, -0.5], std=0.3)


@pytest.fixture(scope="module", params=sorted(SDES))
def order_errors(request):
    """RMS endpoint errors [case, steps] from one prior sample of 64 points."""
    with jax.enable_x64(True):
        sde = SDES[request.param]()
        data = analytic.GaussianData(jnp.asarray(GAUSS["mean"]), GAUSS["std"])
        x_T = sde.prior_sampling(jax.random.PRNGKey(0), (64, 2))
        b = x_T.shape[0]
        exact = data.flow(sde, x_T, jnp.full((b,), sde.T), jnp.full((b,), sde.eps))
        solves = [fast_sampling.get_fast_solver(sde, m, n, **f)
                  for m, f, _ in ORDER_CASES.values() for n in ORDER_STEPS]
        outs = jax.jit(lambda x: [s(None, data.score_fn(sde), x)[0] for s in solves])(x_T)
        errs = [float(jnp.sqrt(jnp.mean((x - exact) ** 2))) for x in outs]
    return request.param, np.array(errs).reshape(len(ORDER_CASES), len(ORDER_STEPS))


def test_error_falls_at_the_slope_of_the_order(order_errors):
    name, errs = order_errors
    report = []
    for (label, (_, _, p)), e in zip(ORDER_CASES.items(), errs, strict=True):
        slope = -np.polyfit(np.log(ORDER_STEPS), np.log(e), 1)[0]
        report.append(f"{name} {label}: slope {slope:.2f}, errors {e}")
        assert np.all(np.diff(e) < 0), report[-1]
        assert slope > p - 0.35, report[-1]
        if p < 3:  # not a higher-order method by accident
            assert slope < p + 0.5, report[-1]
    print("\n".join(report))


# ---------------------------------------------------------------------------------------------
# DDIM (eta = 0) = DPM-Solver-1 = DPM-Solver++-1: one update written three ways
# ---------------------------------------------------------------------------------------------


def test_ddim_equals_first_order_dpm_solvers():
    gmm = analytic.toy_gmm()
    runs = []
    for name in sorted(SDES):
        sde = SDES[name]()
        x_T = sde.prior_sampling(jax.random.PRNGKey(4), (256, 2))
        for method, fields in [("ddim", {}), ("dpm_solver", {"order": 1}),
                               ("dpm_solver++", {"order": 1}),
                               ("dpm_solver++", {"order": 1, "multistep": False})]:
            solve = fast_sampling.get_fast_solver(sde, method, 12, schedule="time_uniform",
                                                  **fields)
            runs.append((name, solve, gmm.score_fn(sde), x_T))
    outs = jax.jit(lambda: [s(None, f, x)[0] for _, s, f, x in runs])()
    for k in range(0, len(outs), 4):
        for other in outs[k + 1:k + 4]:
            np.testing.assert_allclose(other, outs[k], rtol=1e-4, atol=1e-4 * (
                50 if runs[k][0] == "ve" else 1))


def test_edm_sde_without_churn_is_edm_heun():
    """Alg. 2 reduces to Alg. 1 when gamma_i = 0: s_churn = 0, or every noise level outside
    [s_tmin, s_tmax]; with churn inside the range it differs."""
    sde = SDES["vp"]()
    score_fn = analytic.toy_gmm().score_fn(sde)
    x_T = sde.prior_sampling(jax.random.PRNGKey(5), (64, 2))
    kw = dict(schedule="karras")
    solves = [fast_sampling.get_fast_solver(sde, "edm_heun", 9, **kw),
              fast_sampling.get_fast_solver(sde, "edm_sde", 9, s_churn=0.0, **kw),
              fast_sampling.get_fast_solver(sde, "edm_sde", 9, s_churn=10.0, s_tmin=1e4,
                                            s_tmax=1e5, **kw),
              fast_sampling.get_fast_solver(sde, "edm_sde", 9, s_churn=10.0, **kw)]
    heun, *rest, churned = jax.jit(
        lambda r: [s(r, score_fn, x_T)[0] for s in solves])(jax.random.PRNGKey(6))
    for x in rest:
        np.testing.assert_array_equal(x, heun)
    assert float(jnp.max(jnp.abs(churned - heun))) > 1e-2


# ---------------------------------------------------------------------------------------------
# Every sampler reproduces the mixture at a stated NFE (exact score); NFE = score calls
# ---------------------------------------------------------------------------------------------

N_SAMPLES = 2000
GMM = analytic.toy_gmm()
# label -> (method, NFE, fields)
MIXTURE_CASES = {
    "ddim": ("ddim", 50, {}),
    "ddim eta=1": ("ddim", 200, {"eta": 1.0}),
    "dpm_solver-2": ("dpm_solver", 35, {"order": 2}),
    "dpm_solver-3": ("dpm_solver", 35, {"order": 3}),
    "dpm_solver++2M": ("dpm_solver++", 20, {"order": 2}),
    "dpm_solver++3M": ("dpm_solver++", 20, {"order": 3}),
    "dpm_solver++2S": ("dpm_solver++", 35, {"order": 2, "multistep": False}),
    "unipc-2 bh1": ("unipc", 20, {"order": 2, "solver_type": "bh1"}),
    "unipc-3 bh2": ("unipc", 20, {"order": 3, "solver_type": "bh2"}),
    "edm_heun": ("edm_heun", 35, {"schedule": "karras"}),
    "edm_sde": ("edm_sde", 100, {"schedule": "karras", "s_churn": 10.0}),
}


@pytest.fixture(scope="module")
def truth():
    ref = GMM.sample(jax.random.PRNGKey(1000), N_SAMPLES)
    spread = [float(evaluation.energy_distance(GMM.sample(jax.random.PRNGKey(2000 + i),
                                                          N_SAMPLES), ref)) for i in range(8)]
    return ref, max(spread)


def counting(score_fn, counter: list):
    def score(x, t):
        jax.debug.callback(lambda: counter.append(1))
        return score_fn(x, t)

    return score


@pytest.fixture(scope="module", params=sorted(SDES))
def mixture_runs(request):
    """(sde name, {label: (samples, reported nfe, counted score calls)}), one program."""
    sde = SDES[request.param]()
    counters = {label: [] for label in MIXTURE_CASES}
    samplers = {label: sampling.get_fast_sampler(sde, (N_SAMPLES, 2), m, n, **f)
                for label, (m, n, f) in MIXTURE_CASES.items()}
    run = jax.jit(lambda rng: {label: s(rng, counting(GMM.score_fn(sde), counters[label]))
                               for label, s in samplers.items()})
    out = jax.block_until_ready(run(jax.random.PRNGKey(7)))
    jax.effects_barrier()
    return request.param, {k: (x, nfe, len(counters[k])) for k, (x, nfe) in out.items()}


def test_every_sampler_reproduces_the_mixture(truth, mixture_runs):
    ref, spread = truth
    name, runs = mixture_runs
    far = {}
    for label, (x, nfe, calls) in runs.items():
        assert nfe == calls == MIXTURE_CASES[label][1], (name, label, nfe, calls)
        dist = float(evaluation.energy_distance(x, ref))
        if not dist <= spread:
            far[label] = f"{dist:.2e}"
    assert not far, f"{name}: energy distances above the spread {spread:.2e}: {far}"


def test_a_wrong_score_is_detected(truth):
    """Negative control: DPM-Solver++(2M) at 20 NFE driven by a shifted mixture's score."""
    ref, spread = truth
    sde = SDES["vp"]()
    shifted = analytic.GaussianMixture(GMM.weights, GMM.means + 0.3, GMM.stds)
    sampler = sampling.get_fast_sampler(sde, (N_SAMPLES, 2), "dpm_solver++", 20)
    x, _ = jax.jit(lambda r: sampler(r, shifted.score_fn(sde)))(jax.random.PRNGKey(7))
    assert float(evaluation.energy_distance(x, ref)) > 3 * spread


@pytest.mark.parametrize("schedule", sorted(fast_sampling.SCHEDULES))
def test_schedules_run_from_T_to_t_end(schedule):
    for name in sorted(SDES):
        sde = SDES[name]()
        g = fast_sampling.time_grid(sde, schedule, 10, 0.01, 7.0)
        assert g.t[0] == sde.T and g.t[-1] == 0.01 and np.all(np.diff(g.t) < 0)
        assert np.all(np.diff(g.lam) > 0)
    g = fast_sampling.time_grid(SDES["vp"](), "logsnr", 10, 0.01, 7.0)
    np.testing.assert_allclose(np.diff(g.lam), np.diff(g.lam)[0], rtol=1e-5)


def test_fast_orders_spend_the_budget():
    for order in (1, 2, 3):
        for steps in range(order, 40):
            orders = fast_sampling.fast_orders(steps, order)
            assert sum(orders) == steps and max(orders) <= order
    assert fast_sampling.fast_orders(10, 3) == [3, 3, 3, 1]
    assert fast_sampling.multistep_orders(6, 3, True) == [1, 2, 3, 3, 2, 1]
    assert fast_sampling.multistep_orders(12, 3, True)[-1] == 3


# ---------------------------------------------------------------------------------------------
# Config dispatch and bad input
# ---------------------------------------------------------------------------------------------


def _config(**sampling_fields) -> ml_collections.ConfigDict:
    config = get_default_configs()
    for k, v in sampling_fields.items():
        config.sampling[k] = v
    return config


def test_config_dispatch_passes_the_method_fields():
    sde = SDES["vp"]()
    sampler = sampling.get_sampler(_config(method="unipc", steps=7, order=2), sde, (4, 2))
    assert sampler(jax.random.PRNGKey(0), GMM.score_fn(sde))[1] == 7
    with pytest.raises(ConfigError, match="sampling.eta"):
        sampling.get_sampler(_config(method="ddim", eta=-0.5), sde, (4, 2))
    with pytest.raises(ConfigError, match="sampling.solver_type='bh3'"):
        sampling.get_sampler(_config(method="unipc", solver_type="bh3"), sde, (4, 2))
    assert callable(sampling.get_sampler(_config(method="pc"), sde, (4, 2)))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(method="dpm"), r"sampling.method='dpm' is not valid; choose one of: ddim, "),
        (dict(method="ddim", schedule="cosine"), "sampling.schedule='cosine' is not valid"),
        (dict(method="dpm_solver", order=4), r"sampling.order=4 .* choose one of: 1, 2, 3"),
        (dict(method="ddim", order=2), r"sampling.order=2 .*'ddim'; choose one of: 1"),
        (dict(method="dpm_solver++", order=3, multistep=False), "sampling.order=3 .* 1, 2"),
        (dict(method="dpm_solver", order=3, steps=2), "sampling.steps: .* needs steps >= 3"),
        (dict(method="ddim", eta=-0.1), r"sampling.eta: must be in \[0, 1\]"),
        (dict(method="ddim", schedule="karras", rho=0.0), "sampling.rho: must be > 0"),
        (dict(method="ddim", t_end=0.0), r"sampling.t_end: must be in \(0, 1\)"),
        (dict(method="ddim", t_end=1.0), r"sampling.t_end: must be in \(0, 1\)"),
        (dict(method="edm_sde", s_churn=-1.0), "sampling.s_churn: must be >= 0"),
        (dict(method="unipc", solver_type="bh3"), "sampling.solver_type='bh3' is not valid"),
        (dict(method="unipc", eta=0.5), "sampling.eta is not a field of sampling.method='unipc'"),
    ],
)
def test_bad_input_names_the_key(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        sampling.get_fast_sampler(SDES["vp"](), (4, 2), **kwargs)
