"""Simulation-based calibration (issue 24): `inference.sbc`, its executors, and `ppl sbc`.

Small R keeps these fast; the power of the uniformity test at such R is in docs/sbc.md.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from inference import InputError, Posterior, fit_many, sbc
from inference.sbc import parameters, replicate_seeds
from inference.uniformity import binomial_test, ecdf_test, pit_value
from ppl.cli import main
from ppl_models.coin import exact_posterior

NUTS = {"num_chains": 1, "num_samples": 150, "num_warmup": 100}


# ---- fit hooks (module level: picklable for worker processes) -----------------------------------------------
def exact_fit(model, data, method, seed, progress=False, pointwise=False, spread=1.0, **options):
    """The coin's exact Beta posterior, drawn by scipy; `spread` scales the draws around their mean."""
    post = exact_posterior(np.asarray(data["flips"]), data.get("alpha", 1.0), data.get("beta", 1.0))
    draws = post.rvs(size=200, random_state=np.random.default_rng(seed))
    draws = draws.mean() + spread * (draws - draws.mean())
    return Posterior(samples={"p": draws[None, :]}, method="svi", settings={"seed": seed})


def narrow_fit(model, data, method, seed, **kwargs):
    """A deliberately wrong sampler: the posterior's spread scaled by 0.5 (overconfident)."""
    return exact_fit(model, data, method, seed, spread=0.5)


_calls = {"n": 0}


def flaky_fit(model, data, method, seed, **kwargs):
    """Fails on its second call: a replicate that fails must be recorded, not fatal."""
    _calls["n"] += 1
    if _calls["n"] == 2:
        raise RuntimeError("the sampler crashed")
    return exact_fit(model, data, method, seed)


# ---- the procedure --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coin_nuts():
    """SBC of the coin by NUTS, in two local worker processes."""
    return sbc("coin", method="nuts", replicates=30, seed=3, executor="local", workers=2, progress=False, **NUTS)


def test_coin_nuts_passes_sbc_with_ranks_thinned_to_the_ess(coin_nuts):
    assert coin_nuts.passed, str(coin_nuts)
    assert coin_nuts.verdicts["p"].startswith("passes")
    assert "p  passes" in str(coin_nuts)
    assert list(coin_nuts.ranks.columns) == ["p"] and len(coin_nuts.ranks) == 30
    rep = coin_nuts.replicates[0]
    assert rep.thin >= 1 and rep.draws["p"] == len(range(0, 150, rep.thin))  # one chain of 150, every thin-th
    assert coin_nuts.prior_checks["p"].passed


def test_ranks_depend_on_the_seed_alone_not_on_the_executor_or_workers(coin_nuts):
    serial = sbc("coin", method="nuts", replicates=4, seed=3, executor="serial", progress=False, **NUTS)
    assert serial.ranks.equals(coin_nuts.ranks.loc[:3])  # 1 worker in-process == 2 worker processes
    again = sbc("coin", method="nuts", replicates=4, seed=3, executor="serial", progress=False, **NUTS)
    assert again.ranks.equals(serial.ranks)
    assert replicate_seeds(3, 0) != replicate_seeds(3, 1) != replicate_seeds(4, 1)


def test_exact_draws_pass_and_a_sampler_too_narrow_fails_naming_the_parameter():
    exact = sbc("coin", method="svi", replicates=60, seed=2, executor="serial", fit=exact_fit, progress=False)
    assert exact.passed and exact.problems() == [], str(exact)
    narrow = sbc("coin", method="svi", replicates=60, seed=2, executor="serial", fit=narrow_fit, progress=False)
    assert not narrow.passed and narrow.failing() == ["p"]
    assert narrow.tests["p"].shape == "U"
    assert any(t.startswith("p: fails: ranks U-shaped") for t in narrow.problems()), narrow.problems()
    assert "p  fails" in str(narrow) and "too narrow" in str(narrow)


def test_uniformity_test_on_ranks_of_known_samplers():
    rng = np.random.default_rng(2)  # (a calibrated sampler fails with probability 0.05: seed 1 is such a case)
    truth = rng.standard_normal(200)
    good = [pit_value(rng.standard_normal(100), t, rng)[2] for t in truth]  # draws from the right posterior N(0, 1)
    wide = [pit_value(1.6 * rng.standard_normal(100), t, rng)[2] for t in truth]
    biased = [pit_value(0.5 + rng.standard_normal(100), t, rng)[2] for t in truth]
    assert ecdf_test(np.asarray(good)).passed
    assert ecdf_test(np.asarray(wide)).shape == "n"
    assert ecdf_test(np.asarray(biased)).shape == "low"
    assert not binomial_test(np.r_[np.ones(40), np.zeros(10)]).passed
    assert binomial_test(np.r_[np.ones(22), np.zeros(18)]).passed


def test_point_estimates_are_checked_by_a_binomial_test_and_say_so():
    r = sbc("coin", method="map", replicates=20, executor="serial", progress=False)
    assert r.tests["p"].kind == "binomial" and "truth below the estimate" in r.verdicts["p"]
    assert "binomial test" in str(r)


def test_resumes_and_fits_only_the_missing_replicates():
    first: list = []
    sbc("coin", method="svi", replicates=5, executor="serial", fit=exact_fit, progress=False,
        on_replicate=lambda rep: first.append(rep.to_json()))
    again: list = []
    r = sbc("coin", method="svi", replicates=10, executor="serial", fit=exact_fit, progress=False,
            resume=first, on_replicate=again.append)
    assert len(first) == 5 and sorted(rep.index for rep in again) == list(range(5, 10))
    assert r.resumed == 5 and len(r.replicates) == 10
    full = sbc("coin", method="svi", replicates=10, executor="serial", fit=exact_fit, progress=False)
    assert full.ranks.equals(r.ranks)


def test_a_failing_replicate_is_recorded_not_fatal():
    _calls["n"] = 0
    r = sbc("coin", method="svi", replicates=21, executor="serial", fit=flaky_fit, progress=False)
    assert len(r.failed) == 1 and "the sampler crashed" in r.failed[0].error
    assert len(r.ok) == 20 and "p" in r.tests
    assert any("1 of 21 replicates failed" in t for t in r.problems())


def test_too_few_replicates_give_no_verdict_and_say_so():
    r = sbc("coin", method="svi", replicates=5, executor="serial", fit=exact_fit, progress=False)
    assert not r.passed and r.verdicts["p"].startswith("no verdict")
    assert any("fewer than 20" in t for t in r.problems())


def test_parameters_are_global_sites_elementwise_and_local_ones_are_skipped_with_a_reason():
    import ppl_models

    names, skipped = parameters("linear_regression", ppl_models.get("linear_regression").default_data(0))
    assert "coef[0]" in names and "intercept" in names and "sigma" in names and not skipped
    names, skipped = parameters("coin_mixture", ppl_models.get("coin_mixture").default_data(0))
    assert names == ["theta[0]", "theta[1]", "pi[0]", "pi[1]"] and "one value per data point" in skipped["z"]


@pytest.mark.slow
def test_a_user_program_copied_as_written_is_calibrated_by_nuts():
    """A program the suite did not write (benchmarks/corpus/poisson_glm.py: ``torch.exp(b0 + X @ b)`` in a
    data plate, ``y=None`` to simulate): its observed `y` is simulated from the prior at X's shape, each
    element of its global sites is ranked, and NUTS passes."""
    from benchmarks.corpus import PROGRAMS

    program = PROGRAMS["poisson_glm"]
    data = program.data(seed=0)
    r = sbc(program.model, {"X": data["X"][:20], "y": data["y"][:20]}, method="nuts", replicates=20, seed=0,
            executor="serial", progress=False, num_chains=1, num_samples=100, num_warmup=100)
    assert r.params == ["b0", "b[0]", "b[1]", "b[2]"] and not r.failed and not r.skipped
    assert r.passed, str(r)


def test_bad_input_is_one_input_error_naming_the_field(monkeypatch):
    with pytest.raises(InputError, match="^replicates:"):
        sbc("coin", replicates=0)
    with pytest.raises(InputError, match="^num_samples:"):
        sbc("coin", replicates=3, num_samples=-1)
    with pytest.raises(InputError, match="^executor:"):
        sbc("coin", replicates=3, executor="cluster")
    with pytest.raises(InputError, match="^model: cannot be sent to worker processes"):
        sbc(lambda flips=None: None, data={"flips": [1.0]}, replicates=3, executor="local")
    monkeypatch.setitem(sys.modules, "ray", None)  # ray not installed
    with pytest.raises(InputError, match=r"^executor: ray is not installed; install the extra"):
        sbc("coin", replicates=3, executor="ray")


def test_fit_many_runs_a_batch_of_fits_and_records_failures():
    runs = fit_many([{"model": "coin", "method": "map", "seed": 0},
                     {"model": "coin", "method": "map", "data": {"flips": [2.0]}}], executor="serial")
    assert runs[0].error is None and runs[0].samples["p"].shape == (1, 1)
    assert runs[1].error is not None and "flips" in runs[1].error


# ---- the command line -----------------------------------------------------------------------------------
def test_ppl_sbc_writes_a_run_directory_and_resumes_it(tmp_path, capsys):
    out = tmp_path / "sbc"
    argv = ["sbc", "coin", "--method", "map", "--executor", "serial", "--out", str(out), "--quiet"]
    assert main(argv + ["--replicates", "2"]) == 0
    assert len((out / "replicates.jsonl").read_text().splitlines()) == 2
    capsys.readouterr()
    assert main(argv[:-1] + ["--replicates", "3"]) == 0
    text = capsys.readouterr().out
    assert "resuming" in text and "2 replicates already finished" in text and "3 replicates" in text
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["command"] == "sbc" and manifest["status"] == "complete" and manifest["finished"] == 3
    assert set(manifest["files"]) == {"ecdf.png", "ranks.csv", "replicates.jsonl", "sbc.json", "sbc.txt"}
    assert len((out / "replicates.jsonl").read_text().splitlines()) == 3
    assert "no verdict" in (out / "sbc.txt").read_text()


@pytest.mark.parametrize("argv, message", [
    (["sbc", "coin", "--method", "bogus"], "--method: unknown method 'bogus'"),
    (["sbc", "coin", "--replicates", "0"], "--replicates: must be from 1"),
    (["sbc", "coin", "--address", "auto"], "--address: applies to --executor ray only"),
    (["sbc", "coin", "--executor", "dask"], "invalid choice: 'dask'"),
    (["sbc", "nope"], "unknown model 'nope'"),
])
def test_ppl_sbc_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    assert main(argv + ["--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_ppl_sbc_refuses_a_directory_it_did_not_write(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(["sbc", "coin", "--out", str(tmp_path / "mine")]) == 2
    assert "did not write" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


@pytest.mark.slow
def test_ppl_sbc_on_local_ray_gives_the_ranks_of_the_process_executor(tmp_path, capsys):
    pytest.importorskip("ray")
    common = ["sbc", "coin", "--replicates", "4", "--chains", "1", "--samples", "100", "--warmup", "100",
              "--workers", "2", "--seed", "7", "--quiet"]
    assert main(common + ["--executor", "local", "--out", str(tmp_path / "local")]) == 0
    assert main(common + ["--executor", "ray", "--out", str(tmp_path / "ray")]) == 0
    local = (tmp_path / "local" / "ranks.csv").read_text()
    assert local == (tmp_path / "ray" / "ranks.csv").read_text() and len(local.splitlines()) == 5
