"""Fast samplers vs exact answers on the analytic 2-D mixture: endpoint error and quality per NFE.

    python bench/fast_samplers.py [--n 2000] [--nfes 5,6,8,10,12,15,20,35,50] [--quick]
    python bench/fast_samplers.py --config configs/digits/vp_ddpmpp.py --workdir runs/digits

For the VE (sigma 0.01..50), VP and sub-VP (beta 0.1..20) SDEs driven by the exact score of
analytic.toy_gmm(), every fast method at each NFE starts from the same prior sample as a tight
reference solve of the probability-flow ODE (diffrax dopri5, rtol = atol = 1e-9, float64) and
reports the RMS endpoint error against it (deterministic methods), the energy distance to true
samples beside the true-vs-true spread, and the median wall time per sample; then, for each
method, the smallest NFE whose energy distance is within the spread. With --workdir (a trained
digits run with its fid_stats), the fd_digits of --num-fd samples of each method at each NFE
beside the PC sampler with 1000 steps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)  # the 1e-9 reference solve needs float64

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import analytic  # noqa: E402
import evaluation  # noqa: E402
import sampling  # noqa: E402
import sde_lib  # noqa: E402
from bench.samplers import machine  # noqa: E402
from utils import ConfigError  # noqa: E402

SDES = {
    "VE": lambda: sde_lib.VESDE(sigma_min=0.01, sigma_max=50.0, N=1000),
    "VP": lambda: sde_lib.VPSDE(beta_min=0.1, beta_max=20.0, N=1000),
    "sub-VP": lambda: sde_lib.subVPSDE(beta_min=0.1, beta_max=20.0, N=1000),
}
# label -> (method, fields, deterministic)
METHODS = {
    "DDIM": ("ddim", {}, True),
    "DDIM eta=1": ("ddim", {"eta": 1.0}, False),
    "DPM-Solver-2": ("dpm_solver", {"order": 2}, True),
    "DPM-Solver-3": ("dpm_solver", {"order": 3}, True),
    "DPM-Solver++(2M)": ("dpm_solver++", {"order": 2}, True),
    "DPM-Solver++(3M)": ("dpm_solver++", {"order": 3}, True),
    "DPM-Solver++(2S)": ("dpm_solver++", {"order": 2, "multistep": False}, True),
    "UniPC-2 bh1": ("unipc", {"order": 2, "solver_type": "bh1"}, True),
    "UniPC-3 bh2": ("unipc", {"order": 3, "solver_type": "bh2"}, True),
    "EDM Heun (karras)": ("edm_heun", {"schedule": "karras"}, True),
    "EDM SDE (karras, churn 10)": ("edm_sde", {"schedule": "karras", "s_churn": 10.0}, False),
}
NFES = (5, 6, 8, 10, 12, 15, 20, 35, 50)


def log(msg: str):
    print(msg, file=sys.stderr, flush=True)


def reference(sde, score_fn, x_T):
    """x(eps) of the probability-flow ODE from x_T, dopri5 at rtol = atol = 1e-9."""
    rsde = sde.reverse(score_fn, probability_flow=True)

    def field(t, y):
        return rsde.sde(y, jnp.full((y.shape[0],), t))[0]

    x, nfe = jax.jit(lambda y: sampling.solve_ode(field, y, sde.T, sde.eps, 1e-9, 1e-9,
                                                  "dopri5", max_steps=100_000))(x_T)
    return x, int(nfe)


def time_per_sample(fn, n: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times) / n


def bench_sde(name, sde, gmm, args):
    """Rows {method, nfe, rms, ed, us} for one SDE, and the true-vs-true spread."""
    score_fn = gmm.score_fn(sde)
    x_rng, noise_rng = jax.random.split(jax.random.PRNGKey(0))
    x_T = sde.prior_sampling(x_rng, (args.n, 2))
    ref, ref_nfe = reference(sde, score_fn, x_T)
    truth = gmm.sample(jax.random.PRNGKey(1000), args.n)
    spread = max(float(evaluation.energy_distance(gmm.sample(jax.random.PRNGKey(2000 + i),
                                                             args.n), truth)) for i in range(8))
    log(f"{name}: reference dopri5 1e-9 took {ref_nfe} evaluations; spread {spread:.2e}")
    rows = [{"method": "reference dopri5 1e-9", "nfe": ref_nfe, "rms": 0.0,
             "ed": float(evaluation.energy_distance(ref, truth)), "us": None}]
    for label, (method, fields, deterministic) in METHODS.items():
        fields = dict(fields)
        kw = {k: fields.pop(k) for k in ("order", "schedule") if k in fields}
        for nfe in args.nfes:
            try:
                solve = sampling.fast_sampling.get_fast_solver(sde, method, nfe, **kw, **fields)
            except ConfigError:  # fewer steps than the order needs
                continue
            run = jax.jit(lambda x, solve=solve: solve(noise_rng, score_fn, x))
            x, got = jax.block_until_ready(run(x_T))
            assert got == nfe, (label, got, nfe)
            rms = float(jnp.sqrt(jnp.mean((x - ref) ** 2))) if deterministic else None
            us = 1e6 * time_per_sample(lambda run=run: run(x_T), args.n, args.repeats)
            rows.append({"method": label, "nfe": nfe, "rms": rms, "us": us,
                         "ed": float(evaluation.energy_distance(x, truth))})
        log(f"  {label} done")
    return rows, spread


def grid_table(rows, key, fmt, nfes):
    head = "| method | " + " | ".join(str(n) for n in nfes) + " |"
    out = [head, "|:--|" + "--:|" * len(nfes)]
    for label in METHODS:
        cells = {r["nfe"]: r[key] for r in rows if r["method"] == label}
        out.append(f"| {label} | " + " | ".join(
            "—" if cells.get(n) is None else fmt(cells[n]) for n in nfes) + " |")
    return "\n".join(out)


def summary_table(results, nfes):
    out = ["| method | " + " | ".join(f"{s}: smallest NFE with ED <= spread" for s in results)
           + " | µs / sample at NFE 20 (VP) |", "|:--|" + "--:|" * (len(results) + 1)]
    for label in METHODS:
        cells = []
        for rows, spread in results.values():
            ok = [r["nfe"] for r in rows if r["method"] == label and r["ed"] <= spread]
            cells.append(str(min(ok)) if ok else f"> {max(nfes)}")
        vp = [r["us"] for r in results.get("VP", ([], 0))[0]
              if r["method"] == label and r["nfe"] == 20]
        cells.append(f"{vp[0]:.2f}" if vp else "—")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def digits_table(args):
    """fd_digits of each method per NFE beside PC with 1000 steps on a trained digits workdir,
    the smallest NFE that matches the PC figure, and the warm seconds per sample at NFE 20."""
    import importlib.util

    import datasets
    import eval_lib
    import run_lib

    jax.config.update("jax_enable_x64", False)
    spec = importlib.util.spec_from_file_location("cfg", args.config)
    cfg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cfg)
    config = cfg.get_config()
    exp = run_lib.build(config)
    params, step = run_lib.load_ema(config, exp, args.workdir)
    net = eval_lib.feature_network(config)
    mu, cov, _ = eval_lib.reference_stats(config, args.workdir, net)
    inverse = datasets.get_data_inverse_scaler(config.data.centered)
    rng = jax.random.PRNGKey(config.seed)
    batch = min(int(config.sampling.batch_size), args.num_fd)

    def fd(make_sampler):
        """(nfe, fd_digits, warm seconds per sample) of args.num_fd samples."""
        run = run_lib.get_generator(config, exp, batch, make_sampler)
        compiled = run.lower(np.asarray(rng), params).compile()
        start = time.perf_counter()
        x, nfe = run_lib.generate(config, exp, params, rng, args.num_fd, generator=compiled)
        seconds = (time.perf_counter() - start) / args.num_fd
        feats, _ = evaluation.network_features(net, np.clip(np.asarray(inverse(x)), 0, 1))
        stats = evaluation.FeatureStats().update(feats)
        return nfe, float(evaluation.frechet_distance(stats.mean, stats.cov, mu, cov)), seconds

    s = config.sampling
    pc_sde = sde_lib.get_sde(run_lib.override(config, {"model.num_scales": 1000}))
    predictor, corrector = (args.pc.split(",") if args.pc else (s.predictor, s.corrector))
    nfe, pc, pc_s = fd(lambda shape: sampling.get_pc_sampler(
        pc_sde, shape, predictor, corrector, s.snr, s.n_steps_each))
    log(f"  digits PC-1000: {pc:.3f}")
    nfes = args.fd_nfes or args.nfes
    out = [f"digits checkpoint {step}, {args.num_fd} samples; PC with 1000 steps "
           f"({predictor} + corrector {corrector}, NFE {nfe}, {pc_s * 1e3:.1f} ms / sample): "
           f"fd_digits {pc:.3f}", "",
           "| method | " + " | ".join(str(n) for n in nfes)
           + " | smallest NFE with fd <= PC-1000 | ms / sample at NFE 20 |",
           "|:--|" + "--:|" * (len(nfes) + 2)]
    wanted = ([] if args.fd_methods == "none" else
              [m for m in args.fd_methods.split(",") if m] or list(METHODS))
    unknown = [m for m in wanted if m not in METHODS]
    if unknown:
        sys.exit(f"--fd-methods: unknown {unknown}; valid: {list(METHODS)}")
    for label in wanted:
        method, fields, _ = METHODS[label]
        fields = dict(fields)
        cells, match, ms = [], None, "—"
        for n in nfes:
            def make(shape, method=method, n=n, fields=fields):
                return sampling.get_fast_sampler(exp.sde, shape, method, n, **fields)

            try:
                _, value, sec = fd(make)
            except ConfigError:
                cells.append("—")
                continue
            cells.append(f"{value:.3f}")
            if match is None and value <= pc:
                match = n
            if n == 20:
                ms = f"{sec * 1e3:.2f}"
            log(f"  digits {label} NFE {n}: {cells[-1]}")
        out.append(f"| {label} | " + " | ".join(cells)
                   + f" | {match if match else f'> {max(nfes)}'} | {ms} |")
        print(out[-1], file=sys.stderr, flush=True)
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="samples per run")
    p.add_argument("--nfes", type=lambda s: tuple(int(v) for v in s.split(",")), default=NFES)
    p.add_argument("--repeats", type=int, default=3, help="timed calls per setting")
    p.add_argument("--quick", action="store_true", help="VP only, NFE 10 and 20")
    p.add_argument("--config", help="config file of the trained run (with --workdir)")
    p.add_argument("--workdir", help="a trained digits run with fid_stats: adds fd_digits")
    p.add_argument("--num-fd", type=int, default=1000, help="samples per fd_digits")
    p.add_argument("--fd-methods", default="", help="comma-separated method labels for the "
                   "digits table (default: all; 'none': the PC reference only)")
    p.add_argument("--fd-nfes", type=lambda s: tuple(int(v) for v in s.split(",")), default=None,
                   help="NFEs of the digits table (default: --nfes)")
    p.add_argument("--pc", default="", help="predictor,corrector of the 1000-step reference "
                   "(default: the run's own), e.g. reverse_diffusion,langevin")
    p.add_argument("--digits-only", action="store_true", help="skip the analytic tables")
    args = p.parse_args()
    sdes = {"VP": SDES["VP"]} if args.quick else SDES
    args.nfes = (10, 20) if args.quick else args.nfes
    gmm = analytic.toy_gmm()
    print(f"Machine: {machine()}\n")
    results = {}
    if args.digits_only:
        sdes = {}
    for name, make in sdes.items():
        rows, spread = bench_sde(name, make(), gmm, args)
        results[name] = (rows, spread)
        ref = rows[0]
        print(f"### {name}: {args.n} samples; reference dopri5 rtol = atol = 1e-9 took "
              f"{ref['nfe']} evaluations (energy distance {ref['ed']:.2e}); true-vs-true "
              f"spread {spread:.2e}\n")
        print("RMS endpoint error vs the reference (same prior sample; — : stochastic or "
              "fewer steps than the order)\n")
        print(grid_table(rows, "rms", lambda v: f"{v:.1e}", args.nfes) + "\n")
        print("Energy distance to true samples\n")
        print(grid_table(rows, "ed", lambda v: f"{v:.1e}", args.nfes) + "\n", flush=True)
    if results:
        print("### Smallest NFE within the true-vs-true spread\n")
        print(summary_table(results, args.nfes))
    if args.workdir:
        print("\n### Trained digits model\n")
        print(digits_table(args))


if __name__ == "__main__":
    main()
