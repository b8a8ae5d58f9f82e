"""NUTS speed and accuracy: the suite's fast backend against stock Pyro NUTS (and NumPyro where installed).

For each model, every sampler runs in this one process with the same seed and budget (chains, warm-up,
draws); the table gives wall time (everything a user waits for: compilation included), the smallest bulk
ESS over the reference parameters, ESS per second, the ratio of that to stock Pyro's, and accuracy
against the reference posterior: the largest |mean - ref mean| / ref sd and the sd ratio furthest from 1.

Models: the posteriordb references under ``<repo>/../shared/data/posteriordb`` (kidiq, sblrc, earnings,
mesquite, eight_schools, low_dim_gauss_mix, nes1992; Stan's draws are the reference), the coin (exact
Beta posterior) and a 1000-row logistic regression (no closed form: its reference is importance sampling
of its log density, 200,000 draws).
Each model is a plain Pyro callable below; the same code runs under NumPyro by passing ``B=NUMPYRO``.

    PYTHONPATH=. python benchmarks/mcmc.py --chains 4 --warmup 500 --samples 500    # the recorded table
    PYTHONPATH=. python benchmarks/mcmc.py --models coin kidiq --chains 2 --warmup 200 --samples 200
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyro
import pyro.distributions as dist
import torch

warnings.filterwarnings("ignore")
import arviz as az  # noqa: E402

from inference import fit  # noqa: E402

# ---- the models: plain Pyro callables (B is the PPL namespace, Pyro unless NumPyro is asked for) --------
PYRO = SimpleNamespace(sample=pyro.sample, plate=pyro.plate, factor=pyro.factor, dist=dist, stack=torch.stack,
                       ordered=dist.transforms.OrderedTransform, array=lambda x: torch.as_tensor(
                           np.asarray(x, dtype=np.float32)))


def regression(X, y, beta_scale=None, sigma_prior="flat", B=PYRO):
    """y ~ Normal(X beta, sigma); beta flat (``beta_scale=None``) or Normal(0, beta_scale); sigma flat on
    (0, inf), ``halfcauchy2.5`` or ``halfnormal10``. X carries its own column of ones where Stan has an
    intercept, so beta[1] is the intercept as in the Stan programs."""
    D = X.shape[-1]
    if beta_scale is None:  # a flat prior: Pyro's idiom is a masked distribution (log density 0)
        beta = B.sample("beta", B.dist.Normal(0.0, 1.0).expand([D]).to_event(1).mask(False))
    else:
        beta = B.sample("beta", B.dist.Normal(0.0, beta_scale).expand([D]).to_event(1))
    if sigma_prior == "halfcauchy2.5":
        sigma = B.sample("sigma", B.dist.HalfCauchy(2.5))
    elif sigma_prior == "halfnormal10":
        sigma = B.sample("sigma", B.dist.HalfNormal(10.0))
    else:
        sigma = B.sample("sigma", B.dist.HalfNormal(1.0).mask(False))
    with B.plate("N", X.shape[0]):
        B.sample("y", B.dist.Normal((X * beta).sum(-1), sigma), obs=y)


def coin(flips, B=PYRO):
    """p ~ Beta(2, 2); flips_i ~ Bernoulli(p)."""
    p = B.sample("p", B.dist.Beta(2.0, 2.0))
    with B.plate("N", flips.shape[0]):
        B.sample("flips", B.dist.Bernoulli(p), obs=flips)


def logistic(X, y, B=PYRO):
    """intercept ~ Normal(0, 2.5); coef_d ~ Normal(0, 1); y_i ~ Bernoulli(logit = intercept + x_i . coef)."""
    intercept = B.sample("intercept", B.dist.Normal(0.0, 2.5))
    coef = B.sample("coef", B.dist.Normal(0.0, 1.0).expand([X.shape[-1]]).to_event(1))
    with B.plate("N", X.shape[0]):
        B.sample("y", B.dist.Bernoulli(logits=intercept + (X * coef).sum(-1)), obs=y)


def eight_schools(y, sigma, B=PYRO):
    """Non-centred: mu ~ Normal(0, 5); tau ~ HalfCauchy(5); theta_trans_j ~ Normal(0, 1);
    y_j ~ Normal(mu + tau theta_trans_j, sigma_j)."""
    mu = B.sample("mu", B.dist.Normal(0.0, 5.0))
    tau = B.sample("tau", B.dist.HalfCauchy(5.0))
    with B.plate("J", y.shape[0]):
        theta_trans = B.sample("theta_trans", B.dist.Normal(0.0, 1.0))
        B.sample("y", B.dist.Normal(mu + tau * theta_trans, sigma), obs=y)


def gauss_mix(y, B=PYRO):
    """mu ordered with Normal(0, 2) priors; sigma_k ~ HalfNormal(2); theta ~ Beta(5, 5);
    y_n ~ theta Normal(mu_1, sigma_1) + (1 - theta) Normal(mu_2, sigma_2)."""
    ordered = B.dist.TransformedDistribution(B.dist.Normal(0.0, 1.0).expand([2]).to_event(1), [B.ordered()])
    mu = B.sample("mu", ordered.mask(False))  # support: ordered vectors; the density comes from the factor
    B.factor("mu_prior", B.dist.Normal(0.0, 2.0).log_prob(mu).sum(-1))
    sigma = B.sample("sigma", B.dist.HalfNormal(2.0).expand([2]).to_event(1))
    theta = B.sample("theta", B.dist.Beta(5.0, 5.0))
    weights = B.dist.Categorical(probs=B.stack([theta, 1 - theta], -1))
    with B.plate("N", y.shape[0]):
        B.sample("y", B.dist.MixtureSameFamily(weights, B.dist.Normal(mu, sigma)), obs=y)


# ---- data and references -----------------------------------------------------------------------------------
def _shared() -> Path | None:
    for root in (Path(__file__).resolve().parents[1] / ".." / "shared", Path("/work/shared")):
        if (root / "data" / "posteriordb").is_dir():
            return root / "data" / "posteriordb"
    return None


def _ones_and(*columns) -> np.ndarray:
    return np.column_stack([np.ones(len(columns[0]))] + [np.asarray(c, dtype=float) for c in columns])


def _posteriordb(name: str, folder: str, build) -> dict | None:
    root = _shared()
    if root is None or not (root / folder).is_dir():
        return None
    d = json.loads((root / folder / "data.json").read_text())
    fn, data, kwargs = build(d)
    ref = json.loads((root / folder / "reference.json").read_text())["summary"]
    return {"name": name, "model": fn, "data": data, "kwargs": kwargs,
            "reference": {k: (v["mean"], v["sd"]) for k, v in ref.items()}, "ref_label": "Stan"}


def _nes(d):
    age = np.asarray(d["age_discrete"])
    X = _ones_and(d["real_ideo"], d["race_adj"], age == 2, age == 3, age == 4, d["educ1"], d["gender"], d["income"])
    return regression, {"X": X, "y": d["partyid7"]}, {}


BUILDERS = {
    "kidiq": ("kidiq-kidscore_momiq", lambda d: (regression, {"X": _ones_and(d["mom_iq"]), "y": d["kid_score"]},
                                                 {"sigma_prior": "halfcauchy2.5"})),
    "sblrc": ("sblrc-blr", lambda d: (regression, {"X": np.asarray(d["X"], dtype=float), "y": d["y"]},
                                      {"beta_scale": 10.0, "sigma_prior": "halfnormal10"})),
    "earnings": ("earnings-logearn_height", lambda d: (regression, {"X": _ones_and(d["height"]),
                                                                    "y": np.log(d["earn"])}, {})),
    "mesquite": ("mesquite-logmesquite_logvolume", lambda d: (regression, {
        "X": _ones_and(np.log(np.asarray(d["diam1"]) * np.asarray(d["diam2"]) * np.asarray(d["canopy_height"]))),
        "y": np.log(d["weight"])}, {})),
    "eight_schools": ("eight_schools-eight_schools_noncentered",
                      lambda d: (eight_schools, {"y": d["y"], "sigma": d["sigma"]}, {})),
    "low_dim_gauss_mix": ("low_dim_gauss_mix-low_dim_gauss_mix", lambda d: (gauss_mix, {"y": d["y"]}, {})),
    "nes1992": ("nes1992-nes", _nes),
}


def problems() -> list[dict]:
    out = []
    flips = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0, 0], dtype=float)
    a, b = 9.0, 5.0
    out.append({"name": "coin", "model": coin, "data": {"flips": flips}, "kwargs": {},
                "reference": {"p": (a / (a + b), math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1))))},
                "ref_label": "exact"})
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1000, 5))
    logits = 0.3 + X @ np.array([1.0, -0.5, 0.25, 0.0, 2.0])
    y = (rng.random(1000) < 1 / (1 + np.exp(-logits))).astype(float)
    out.append({"name": "logistic_1000", "model": logistic, "data": {"X": X, "y": y}, "kwargs": {},
                "reference": _logistic_reference(X, y), "ref_label": "importance"})
    for name, (folder, build) in BUILDERS.items():
        entry = _posteriordb(name, folder, build)
        if entry is not None:
            out.append(entry)
    return out


def _logistic_reference(X: np.ndarray, y: np.ndarray, draws: int = 200_000) -> dict[str, tuple[float, float]]:
    """Posterior means and sds of `logistic` by self-normalised importance sampling: a Student-t(5)
    proposal at the mode with 1.3 x the inverse Hessian as its scale (importance ESS ~ 140,000, so the
    reference's own error is far below the samplers')."""
    from scipy import optimize, stats
    from scipy.special import expit, log_expit

    def log_posterior(t):
        a, b = t[..., 0], t[..., 1:]
        eta = a[..., None] + b @ X.T
        return ((y * log_expit(eta) + (1 - y) * log_expit(-eta)).sum(-1) + stats.norm(0, 2.5).logpdf(a)
                + stats.norm(0, 1).logpdf(b).sum(-1))

    mode = optimize.minimize(lambda t: -log_posterior(t), np.zeros(1 + X.shape[1]), method="BFGS").x
    Z = np.column_stack([np.ones(len(y)), X])
    p = expit(Z @ mode)
    hessian = Z.T @ (Z * (p * (1 - p))[:, None]) + np.diag([1 / 2.5 ** 2] + [1.0] * X.shape[1])
    proposal = stats.multivariate_t(mode, 1.3 * np.linalg.inv(hessian), df=5, seed=0)
    t = proposal.rvs(draws)
    log_w = log_posterior(t) - proposal.logpdf(t)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    mean = w @ t
    sd = np.sqrt(w @ (t - mean) ** 2)
    names = ["intercept"] + [f"coef[{d + 1}]" for d in range(X.shape[1])]
    return {n: (float(m), float(s)) for n, m, s in zip(names, mean, sd)}


def _scalar_params(samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every scalar (chain, draw) series, named the Stan way (1-based); eight schools' theta derived."""
    out = {}
    for site, v in samples.items():
        v = np.asarray(v, dtype=float)
        if v.ndim == 2:
            out[site] = v
        else:
            flat = v.reshape(v.shape[:2] + (-1,))
            for i in range(flat.shape[-1]):
                out[f"{site}[{i + 1}]"] = flat[..., i]
    if "theta_trans" in samples and "mu" in samples and "tau" in samples:
        theta = samples["mu"][..., None] + samples["tau"][..., None] * samples["theta_trans"]
        for i in range(theta.shape[-1]):
            out[f"theta[{i + 1}]"] = np.asarray(theta[..., i], dtype=float)
    return out


def _assess(samples: dict, reference: dict[str, tuple[float, float]], seconds: float) -> dict:
    params = _scalar_params(samples)
    names = [k for k in reference if k in params]
    idata = az.from_dict(posterior={k: params[k] for k in names})
    ess = az.ess(idata, method="bulk")
    min_ess = float(min(float(ess[k]) for k in names))
    err = max(abs(params[k].mean() - reference[k][0]) / reference[k][1] for k in names)
    ratios = [params[k].std() / reference[k][1] for k in names]
    worst = max(ratios, key=lambda r: abs(r - 1))
    return {"wall": seconds, "ess": min_ess, "ess_s": min_ess / seconds, "err": err, "sd_ratio": worst}


# ---- samplers ------------------------------------------------------------------------------------------------
def _torch_data(data: dict) -> dict:
    return {k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in data.items()}


def run_stock_pyro(problem, chains, warmup, draws, seed):
    """Stock Pyro: `MCMC(NUTS(model))` with Pyro's defaults, one chain after another, seeded as the suite."""
    from pyro.infer.mcmc import MCMC, NUTS

    data = {**_torch_data(problem["data"]), **problem["kwargs"]}
    per_chain = []
    start = time.perf_counter()
    for c in range(chains):
        pyro.clear_param_store()
        pyro.set_rng_seed(seed * 1_000 + c)
        mcmc = MCMC(NUTS(problem["model"]), num_samples=draws, warmup_steps=warmup, num_chains=1,
                    disable_progbar=True)
        mcmc.run(**data)
        per_chain.append({k: v.numpy() for k, v in mcmc.get_samples(group_by_chain=True).items()})
    seconds = time.perf_counter() - start
    return {k: np.concatenate([c[k] for c in per_chain]) for k in per_chain[0]}, seconds


def run_suite(problem, chains, warmup, draws, seed, **options):
    data = {**_torch_data(problem["data"]), **problem["kwargs"]}
    start = time.perf_counter()
    post = fit(problem["model"], data=data, method="nuts", seed=seed, num_chains=chains, num_warmup=warmup,
               num_samples=draws, progress=False, **options)
    seconds = time.perf_counter() - start
    return post.samples, seconds, post.notes


def run_numpyro(problem, chains, warmup, draws, seed, dense=False):
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as ndist
    from numpyro.infer import MCMC, NUTS

    B = SimpleNamespace(sample=numpyro.sample, plate=numpyro.plate, factor=numpyro.factor, dist=ndist,
                        stack=jnp.stack, ordered=ndist.transforms.OrderedTransform, array=jnp.asarray)
    data = {k: jnp.asarray(np.asarray(v, dtype=np.float32)) for k, v in problem["data"].items()}
    start = time.perf_counter()
    kernel = NUTS(problem["model"], dense_mass=dense)
    mcmc = MCMC(kernel, num_warmup=warmup, num_samples=draws, num_chains=chains, chain_method="sequential",
                progress_bar=False)
    mcmc.run(jax.random.PRNGKey(seed), **data, **problem["kwargs"], B=B)
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    return samples, time.perf_counter() - start


# ---- the table -----------------------------------------------------------------------------------------------
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--no-numpyro", action="store_true")
    parser.add_argument("--seeds", type=int, default=1,
                        help="run every sampler with seeds seed .. seed+N-1 and report medians (ESS of one "
                             "seed varies by 20-30 %% on the cheap models)")
    args = parser.parse_args(argv)
    try:
        import numpyro  # noqa: F401
        have_numpyro = not args.no_numpyro
    except ImportError:
        have_numpyro = False
    seeds = list(range(args.seed, args.seed + args.seeds))
    print(f"budget: {args.chains} chains x ({args.warmup} warm-up + {args.samples} draws), seeds {seeds}; "
          f"torch threads {torch.get_num_threads()}; numpyro {'yes' if have_numpyro else 'not installed'}")
    if len(seeds) > 1:
        print("(medians over the seeds of wall time, ESS and ESS/s; x stock Pyro is the ratio of the median "
              "ESS/s; accuracy columns are the worst over the seeds)")
    print()
    print("| model | sampler | wall s | min bulk ESS | ESS/s | x stock Pyro | max abs(mean-ref)/ref sd | sd ratio | ref |")
    print("|---|---|---|---|---|---|---|---|---|")
    for problem in problems():
        if args.models and problem["name"] not in args.models:
            continue
        per_seed = [_rows(problem, (args.chains, args.warmup, args.samples, seed), have_numpyro) for seed in seeds]
        rows = [(label, _combine([runs[i][1] for runs in per_seed])) for i, (label, _) in enumerate(per_seed[0])]
        base = rows[0][1]["ess_s"]
        for label, r in rows:
            print(f"| {problem['name']} | {label} | {r['wall']:.1f} | {r['ess']:.0f} | {r['ess_s']:.1f} | "
                  f"{r['ess_s'] / base:.1f} | {r['err']:.3f} | {r['sd_ratio']:.3f} | {problem['ref_label']} |",
                  flush=True)


def _rows(problem: dict, budget: tuple, have_numpyro: bool) -> list[tuple[str, dict]]:
    """Every sampler on one model with one seed: (label, assessment) rows, stock Pyro first."""
    rows = []
    stock, t_stock = run_stock_pyro(problem, *budget)
    reference = problem["reference"]
    if reference is None:  # no exact answer: stock Pyro's draws are the reference
        reference = {k: (v.mean(), v.std()) for k, v in _scalar_params(stock).items()}
    rows.append(("stock Pyro NUTS", _assess(stock, reference, t_stock)))
    # the levers one by one: the batch on a compiled step alone (diagonal metric from the identity,
    # as Stan starts), then the warm start from the curvature at the mode, then the default, which
    # adds the dense metric where the dimension is small and the mode shows correlation
    for label, options in (("suite: batched + compiled (diag)", {"full_mass": False, "warm_start": False}),
                           ("suite: + warm start (diag)", {"full_mass": False}),
                           ("suite fit default (+ dense if 1 < D <= 10 and correlated)", {})):
        samples, t, notes = run_suite(problem, *budget, **options)
        rows.append((label, _assess(samples, reference, t)))
    if have_numpyro:
        for dense in (False, True):
            label = f"NumPyro NUTS ({'dense' if dense else 'diag'})"
            try:
                samples, t = run_numpyro(problem, *budget, dense=dense)
                rows.append((label, _assess(samples, reference, t)))
            except Exception as exc:  # a model this script cannot express in NumPyro: say so
                print(f"| {problem['name']} | NumPyro failed: {type(exc).__name__}: {exc} |", file=sys.stderr)
    return rows


def _combine(results: list[dict]) -> dict:
    """Medians of the speed columns over seeds; the worst of the accuracy columns."""
    return {"wall": float(np.median([r["wall"] for r in results])),
            "ess": float(np.median([r["ess"] for r in results])),
            "ess_s": float(np.median([r["ess_s"] for r in results])),
            "err": max(r["err"] for r in results),
            "sd_ratio": max((r["sd_ratio"] for r in results), key=lambda v: abs(v - 1))}


if __name__ == "__main__":
    main()
