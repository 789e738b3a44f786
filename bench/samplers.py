"""Samplers on the analytic 2-D mixture, exact score: NFE, time and accuracy as markdown tables.

    python bench/samplers.py [--n 2000] [--repeats 5] [--seeds 10] [--quick]

For the VE (sigma 0.01..50), VP and sub-VP (beta 0.1..20) SDEs driven by the exact score of
analytic.toy_gmm(), it runs the PC sampler (reverse-diffusion predictor + Langevin corrector),
the probability-flow ODE (diffrax dopri5, on device) and, for VE, annealed Langevin dynamics,
and reports NFE, compile time, median wall time and the energy distance to true samples beside
the true-vs-true spread. Each ODE solve is also timed "the score_sde way" (scipy RK45 on the
host, one jitted drift call per evaluation) from the same prior sample, and the two are compared.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.integrate

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import analytic  # noqa: E402
import evaluation  # noqa: E402
import sampling  # noqa: E402
import sde_lib  # noqa: E402

SDES = {
    "VE": lambda n: sde_lib.VESDE(sigma_min=0.01, sigma_max=50.0, N=n),
    "VP": lambda n: sde_lib.VPSDE(beta_min=0.1, beta_max=20.0, N=n),
    "sub-VP": lambda n: sde_lib.subVPSDE(beta_min=0.1, beta_max=20.0, N=n),
}
SNR = 0.16
ODE_N = 1000  # the ODE solve does not use N; only the SDE object needs one


@dataclasses.dataclass(frozen=True)
class Settings:
    pc_steps: tuple[int, ...]  # N of the PC sampler
    ode_tols: tuple[float, ...]  # rtol = atol of the ODE solves
    ald_steps: int  # number of noise levels of ALD
    ald_step_lr: float = 2e-5
    ald_n_steps_each: int = 5
    true_seeds: int = 16  # independent true samples for the reference spread


FULL = Settings(pc_steps=(100, 500, 1000), ode_tols=(1e-3, 1e-5), ald_steps=200)
QUICK = Settings(pc_steps=(100,), ode_tols=(1e-3,), ald_steps=50, true_seeds=4)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    device = jax.devices()[0]
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"{cpu}, {cores} cores usable (load average {load}); jax {jax.__version__}, "
        f"backend {jax.default_backend()}, device {device.device_kind} ({device})"
    )


def log(msg: str):
    print(msg, file=sys.stderr, flush=True)


@dataclasses.dataclass
class Bench:
    """What every row shares, and the rows measured so far."""

    gmm: analytic.GaussianMixture
    ref: jax.Array  # [n, 2] fixed true sample every energy distance is taken against
    n: int
    repeats: int  # timed calls per setting
    seeds: int  # sampler runs (seeds) whose energy distances are medianed
    rng: jax.Array  # the timed seed; the ODE solves of both solvers start from its prior sample
    rows: list = dataclasses.field(default_factory=list)
    ode_rows: list = dataclasses.field(default_factory=list)

    def distance(self, x) -> float:
        return float(evaluation.energy_distance(jnp.asarray(x, jnp.float32), self.ref))


def time_calls(fns, repeats: int) -> list[float]:
    """Median seconds per call of each warmed-up fn(), called in turn `repeats` times, so that
    fns compared with each other see the same load on a shared machine."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, fn_times in zip(fns, times, strict=True):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            fn_times.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def run_row(b: Bench, name: str, sampler_name: str, setting: str, sampler, score_fn):
    """Compile, warm up and time one sampler setting on `b.rng`, then take the energy distance
    over `b.seeds` runs (the timed seed first); append the table row.

    Returns:
      (samples of the timed seed [n, 2], NFE of the timed seed, the compiled sampler).
    """
    log(f"  {name} {sampler_name} {setting} ...")
    start = time.perf_counter()
    compiled = jax.jit(lambda r: sampler(r, score_fn)).lower(b.rng).compile()
    compile_s = time.perf_counter() - start
    x, nfe = jax.block_until_ready(compiled(b.rng))
    (wall,) = time_calls([lambda: compiled(b.rng)], b.repeats)
    dists = [b.distance(x)]
    dists += [b.distance(compiled(jax.random.fold_in(b.rng, s))[0]) for s in range(1, b.seeds)]
    b.rows.append((name, sampler_name, setting, int(nfe), compile_s, wall, dists))
    return x, int(nfe), compiled


def scipy_ode(sde, score_fn, x0, tol: float):
    """The probability-flow ODE solved as score_sde does: scipy RK45 on the host, each
    evaluation one jitted device call of the drift (state copied host -> device -> host).

    Returns:
      (x(eps) [B, D] float64, nfev, the solve as a warmed-up fn()).
    """
    rsde = sde.reverse(score_fn, probability_flow=True)
    shape = x0.shape

    def drift_fn(x, t):
        return rsde.sde(x, jnp.full((shape[0],), t))[0]

    drift = jax.jit(drift_fn).lower(x0, np.float32(sde.T)).compile()

    def ode_func(t, y):
        x = jnp.asarray(y.reshape(shape), dtype=jnp.float32)
        return np.asarray(drift(x, np.float32(t)), dtype=np.float64).reshape(-1)

    def solve():
        y0 = np.asarray(x0, dtype=np.float64).reshape(-1)
        sol = scipy.integrate.solve_ivp(
            ode_func, (sde.T, sde.eps), y0, method="RK45", rtol=tol, atol=tol
        )
        if not sol.success:
            raise RuntimeError(f"solve_ivp failed: {sol.message}")
        return sol

    sol = solve()
    return sol.y[:, -1].reshape(shape), int(sol.nfev), solve


def true_spread(b: Bench, seeds: int) -> list[float]:
    """Energy distances between `b.ref` and `seeds` independent true samples of the same n."""
    return [b.distance(b.gmm.sample(jax.random.PRNGKey(100 + s), b.n)) for s in range(seeds)]


def bench_ode(b: Bench, name: str, tol: float):
    """One probability-flow ODE row, plus its diffrax-vs-scipy comparison row."""
    sde = SDES[name](ODE_N)
    score_fn = b.gmm.score_fn(sde)
    shape = (b.n, 2)
    ode = sampling.get_ode_sampler(sde, shape, rtol=tol, atol=tol, method="dopri5")
    x, nfe, compiled = run_row(
        b, name, "probability-flow ODE (diffrax dopri5)", f"rtol=atol={tol:g}", ode, score_fn
    )
    log(f"  {name} scipy RK45 rtol=atol={tol:g} ...")
    x0 = sde.prior_sampling(b.rng, shape)  # what get_ode_sampler starts from
    sp_x, sp_nfe, sp_solve = scipy_ode(sde, score_fn, x0, tol)
    wall, sp_wall = time_calls([lambda: compiled(b.rng), sp_solve], b.repeats)
    diff = np.abs(np.asarray(x, np.float64) - sp_x)
    dists = b.distance(x), b.distance(sp_x)
    b.ode_rows.append(
        (name, tol, nfe, wall, sp_nfe, sp_wall, np.max(diff), np.median(diff), *dists)
    )


def bench_sde(b: Bench, name: str, settings: Settings):
    """All sampler settings of one SDE."""
    shape = (b.n, 2)
    for steps in settings.pc_steps:
        sde = SDES[name](steps)
        pc = sampling.get_pc_sampler(sde, shape, "reverse_diffusion", "langevin", SNR, n_steps=1)
        setting = f"N={steps}, snr={SNR}, 1 corrector step"
        run_row(b, name, "PC reverse_diffusion + langevin", setting, pc, b.gmm.score_fn(sde))
    for tol in settings.ode_tols:
        bench_ode(b, name, tol)
    if name == "VE":
        sde = SDES[name](settings.ald_steps)
        ald = sampling.get_ald_sampler(
            sde, shape, step_lr=settings.ald_step_lr, n_steps_each=settings.ald_n_steps_each
        )
        setting = (
            f"N={settings.ald_steps}, step_lr={settings.ald_step_lr:g}, "
            f"n_steps_each={settings.ald_n_steps_each}, final denoising step"
        )
        run_row(b, name, "ALD (NCSNv2)", setting, ald, b.gmm.score_fn(sde))


def print_tables(b: Bench, spread: list[float]):
    med = statistics.median(spread)
    print(
        f"\nTrue vs true: energy distance between the reference and {len(spread)} independent "
        f"true samples of n={b.n}: median {med:.5f}, range {min(spread):.5f}-{max(spread):.5f}."
        "\n"
    )
    print(
        f"| SDE | sampler | setting | NFE | compile s | wall s (median of {b.repeats}) "
        f"| energy distance (median of {b.seeds} seeds) | min-max over seeds |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    print(
        f"| - | true samples (reference) | independent true draw | - | - | - | {med:.5f} "
        f"| {min(spread):.5f}-{max(spread):.5f} |"
    )
    for name, sampler_name, setting, nfe, compile_s, wall, dists in b.rows:
        print(
            f"| {name} | {sampler_name} | {setting} | {nfe} | {compile_s:.2f} | {wall:.4f} "
            f"| {statistics.median(dists):.5f} | {min(dists):.5f}-{max(dists):.5f} |"
        )
    print(
        "\nProbability-flow ODE from one prior sample (the timed seed): diffrax dopri5 on device "
        "vs scipy solve_ivp RK45 on the host, one jitted drift call per evaluation (score_sde); "
        f"the two timed alternately, median of {b.repeats} each (a second timing of diffrax, "
        "apart from the table above).\n"
    )
    print(
        "| SDE | rtol=atol | diffrax NFE | diffrax s | scipy NFE (nfev) | scipy s "
        "| scipy / diffrax | max abs diff | median abs diff | energy dist. diffrax / scipy |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, tol, nfe, wall, sp_nfe, sp_wall, max_d, med_d, dist, sp_dist in b.ode_rows:
        print(
            f"| {name} | {tol:g} | {nfe} | {wall:.4f} | {sp_nfe} | {sp_wall:.4f} "
            f"| {sp_wall / wall:.1f}x | {max_d:.2e} | {med_d:.2e} | {dist:.5f} / {sp_dist:.5f} |"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="samples per run (2000; quick 500)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (5; quick 2)")
    parser.add_argument(
        "--seeds", type=int, default=None, help="runs per energy distance (10; quick 2)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller settings, a smoke test")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    n = args.n or (500 if args.quick else 2000)
    repeats = args.repeats or (2 if args.quick else 5)
    seeds = args.seeds or (2 if args.quick else 10)
    if n < 2 or repeats < 1 or seeds < 1:
        parser.error("need --n >= 2, --repeats >= 1, --seeds >= 1")

    start = time.perf_counter()
    print(
        f"Samplers on analytic.toy_gmm() with its exact score; n={n} samples per run; "
        f"{'quick' if args.quick else 'full'} settings.\n{machine()}\n"
        f"Wall time: median of {repeats} calls on one seed, after an AOT compile (reported "
        f"apart) and one warm-up call. Energy distance (V-statistic) to one fixed true sample "
        f"of the same n, median over {seeds} seeds (the timed one first)."
    )
    gmm = analytic.toy_gmm()
    b = Bench(gmm, gmm.sample(jax.random.PRNGKey(0), n), n, repeats, seeds, jax.random.PRNGKey(1))
    spread = true_spread(b, settings.true_seeds)
    for name in SDES:
        log(f"{name}:")
        bench_sde(b, name, settings)
    print_tables(b, spread)
    print(f"\nTotal script time {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
