"""Every sampler, driven by the exact mixture score, reproduces the mixture."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analytic
import evaluation
import sampling
import sde_lib
from utils import ConfigError

N_SAMPLES = 2000
GMM = analytic.toy_gmm()


def make_sde(name, n=500):
    return {
        "ve": lambda: sde_lib.VESDE(0.01, 50.0, N=n),
        "vp": lambda: sde_lib.VPSDE(0.1, 20.0, N=n),
        "subvp": lambda: sde_lib.subVPSDE(0.1, 20.0, N=n),
    }[name]()


@pytest.fixture(scope="module")
def truth():
    ref = GMM.sample(jax.random.PRNGKey(1000), N_SAMPLES)
    spread = [
        float(evaluation.energy_distance(GMM.sample(jax.random.PRNGKey(2000 + i), N_SAMPLES), ref))
        for i in range(8)
    ]
    return ref, max(spread)


def run(sampler, sde, score_fn=None):
    score_fn = score_fn or GMM.score_fn(sde)
    return jax.jit(lambda r: sampler(r, score_fn))(jax.random.PRNGKey(7))


PC_CASES = [
    (sde, p, c)
    for sde in ("ve", "vp", "subvp")
    for p, c in [
        ("reverse_diffusion", "langevin"),
        ("euler_maruyama", "none"),
        ("ancestral_sampling", "none"),
        ("reverse_diffusion", "ald"),
        ("euler_maruyama", "langevin"),
    ]
    if not (sde == "subvp" and p == "ancestral_sampling")
]


@pytest.mark.parametrize("sde_name,predictor,corrector", PC_CASES)
def test_pc_sampler_reproduces_mixture(truth, sde_name, predictor, corrector):
    ref, spread = truth
    sde = make_sde(sde_name)
    sampler = sampling.get_pc_sampler(sde, (N_SAMPLES, 2), predictor, corrector, snr=0.16)
    x, nfe = run(sampler, sde)
    assert nfe == sde.N * ((predictor != "none") + (corrector != "none"))
    assert float(evaluation.energy_distance(x, ref)) <= spread


@pytest.mark.parametrize("sde_name", ["ve", "vp", "subvp"])
def test_probability_flow_pc_and_ode(truth, sde_name):
    ref, spread = truth
    sde = make_sde(sde_name)
    pf = sampling.get_pc_sampler(sde, (N_SAMPLES, 2), "reverse_diffusion", "none",
                                 probability_flow=True)
    assert float(evaluation.energy_distance(run(pf, sde)[0], ref)) <= spread
    ode = sampling.get_ode_sampler(sde, (N_SAMPLES, 2), rtol=1e-5, atol=1e-5)
    x, nfe = run(ode, sde)
    assert 20 < int(nfe) < 1000
    assert float(evaluation.energy_distance(x, ref)) <= spread


def test_corrector_only_and_ald(truth):
    ref, spread = truth
    sde = make_sde("ve", n=200)
    ald = sampling.get_ald_sampler(sde, (N_SAMPLES, 2), step_lr=2e-5, n_steps_each=5)
    x, nfe = run(ald, sde)
    assert nfe == 200 * 5 + 1
    assert float(evaluation.energy_distance(x, ref)) <= spread
    x, nfe = run(sampling.get_pc_sampler(sde, (N_SAMPLES, 2), "none", "ald", snr=0.35,
                                         n_steps=10), sde)
    assert nfe == 200 * 10
    assert float(evaluation.energy_distance(x, ref)) <= spread


def test_a_wrong_score_is_detected(truth):
    """Negative control: the same check fails for the score of a shifted mixture."""
    ref, spread = truth
    sde = make_sde("vp")
    shifted = analytic.GaussianMixture(GMM.weights, GMM.means + 0.3, GMM.stds)
    sampler = sampling.get_pc_sampler(sde, (N_SAMPLES, 2), "reverse_diffusion", "langevin")
    x, _ = run(sampler, sde, shifted.score_fn(sde))
    assert float(evaluation.energy_distance(x, ref)) > 3 * spread


def test_ode_nfe_counts_every_evaluation():
    sde = make_sde("vp")
    count = []
    score = GMM.score_fn(sde)

    def counting_score(x, t):
        jax.debug.callback(lambda: count.append(1))
        return score(x, t)

    sampler = sampling.get_ode_sampler(sde, (64, 2), rtol=1e-3, atol=1e-3)
    _, nfe = jax.jit(lambda r: sampler(r, counting_score))(jax.random.PRNGKey(0))
    jax.effects_barrier()
    # Exact per step (6 stages of dopri5, rejected steps included); the initial step-size
    # selection costs 1-2 evaluations, counted as 2.
    assert 0 <= int(nfe) - len(count) <= 1


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(predictor="leapfrog"), "sampling.predictor='leapfrog' is not valid"),
        (dict(corrector="hmc"), "sampling.corrector='hmc' is not valid"),
        (dict(snr=0.0), "sampling.snr must be > 0"),
        (dict(predictor="ancestral_sampling", probability_flow=True), "probability_flow"),
    ],
)
def test_bad_sampler_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        sampling.get_pc_sampler(make_sde("vp"), (4, 2), **kwargs)


def test_undefined_combinations_are_clear_errors():
    with pytest.raises(ConfigError, match="ancestral_sampling.*vesde, vpsde and edmsde only"):
        sampling.get_pc_sampler(make_sde("subvp"), (4, 2), "ancestral_sampling", "none")
    with pytest.raises(ConfigError, match="method='ald' needs training.sde='vesde'"):
        sampling.get_ald_sampler(make_sde("vp"), (4, 2))
    with pytest.raises(ConfigError, match="sampling.ode_method"):
        sampling.get_ode_sampler(make_sde("vp"), (4, 2), method="rk99")


def test_denoise_returns_the_noise_free_mean():
    sde = make_sde("vp", n=50)
    base = dict(predictor="euler_maruyama", corrector="none")
    a, _ = run(sampling.get_pc_sampler(sde, (8, 2), denoise=True, **base), sde)
    b, _ = run(sampling.get_pc_sampler(sde, (8, 2), denoise=False, **base), sde)
    # The last step adds noise of std g(eps) sqrt(1/N) only when denoise is off.
    g = float(sde.sde(jnp.zeros((1, 2)), jnp.array([sde.eps]))[1][0])
    diff = np.asarray(b - a)
    assert 0 < np.std(diff) < 5 * g * np.sqrt(1 / sde.N)
