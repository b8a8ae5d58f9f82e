"""`inference.compare` and `ppl compare`: one model, several methods, side by side (issue 21)."""

from __future__ import annotations

import json

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from inference import InputError, compare
from ppl.cli import main

FLIPS = {"flips": [1, 0, 1, 1] * 10}


def test_methods_side_by_side_against_the_exact_beta_posterior():
    comparison = compare("coin", FLIPS, methods=("nuts", "svi", "map"), progress=False)
    methods = comparison.methods_table()
    assert list(methods.index) == ["nuts", "svi", "map"]
    assert np.isfinite(methods.loc["nuts", "elpd_loo"]) and np.isnan(methods.loc["map", "elpd_loo"])
    assert methods.loc["svi", "converged"] == "yes" and methods.loc["svi", "pareto_k"] < 0.7
    table = comparison.parameters_table()
    a, b = 1 + 30, 1 + 10  # the exact posterior Beta(31, 11) under the default Beta(1, 1) prior
    assert table.loc["p", ("nuts", "mean")] == pytest.approx(a / (a + b), abs=0.01)
    assert table.loc["p", ("map", "mean")] == pytest.approx((a - 1) / (a + b - 2), abs=1e-3)
    assert np.isnan(table.loc["p", ("map", "sd")])
    assert "svi problems: none" in comparison.report()


def test_a_run_cut_short_is_marked_in_its_row_and_the_others_go_on():
    def improper(x):
        logit = pyro.sample("logit", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Bernoulli(logits=logit * torch.ones(len(x))), obs=x)

    comparison = compare(improper, {"x": torch.ones(30)}, methods=("map", "svi"), progress=False,
                         options={"map": {"num_steps": 1}})
    methods = comparison.methods_table()
    assert methods.loc["map", "converged"] == "no" and "raise num_steps" in methods.loc["map", "problems"]
    assert methods.loc["svi", "converged"] == "yes"


def test_bad_methods_are_refused():
    with pytest.raises(InputError, match="unknown method"):
        compare("coin", FLIPS, methods=("nuts", "gibbs"), progress=False)
    with pytest.raises(InputError, match="not among the methods"):
        compare("coin", FLIPS, methods=("map",), options={"svi": {}}, progress=False)


def test_cli(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "coin.json").write_text(json.dumps(FLIPS))
    assert main(["compare", "coin", "--data", "coin.json", "--methods", "map", "mle", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["methods"]) == {"map", "mle"} and "p" in out["parameters"]["map"]
    assert main(["compare", "coin", "--methods", "gibbs"]) == 2
    err = capsys.readouterr().err
    assert "--methods" in err and len(err.strip().splitlines()) == 1
    assert main(["compare", "vae", "--methods", "nuts"]) == 2


def test_cli_out_writes_the_comparison_whole_and_never_over_a_users_file(capsys, tmp_path, monkeypatch):
    import arviz as az
    import pandas as pd

    monkeypatch.chdir(tmp_path)
    (tmp_path / "coin.json").write_text(json.dumps(FLIPS))
    assert main(["compare", "coin", "--data", "coin.json", "--methods", "map", "mle", "--out", "cmp", "--quiet"]) == 0
    capsys.readouterr()
    files = sorted(p.name for p in (tmp_path / "cmp").iterdir())
    assert files == ["map.nc", "methods.csv", "mle.nc", "parameters.csv", "report.txt", "run.json"]
    methods = pd.read_csv(tmp_path / "cmp" / "methods.csv", index_col=0)
    assert list(methods.index) == ["map", "mle"]
    a, b = 1 + 30, 1 + 10  # MAP of the Beta(31, 11) posterior; MLE 30/40
    assert float(az.from_netcdf(tmp_path / "cmp" / "map.nc").posterior["p"].mean()) == pytest.approx(
        (a - 1) / (a + b - 2), abs=1e-3)
    assert json.loads((tmp_path / "cmp" / "run.json").read_text())["command"] == "compare"
    # a directory the suite did not write is never replaced: one line, exit 2, the user's file intact
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["compare", "coin", "--methods", "map", "--out", "mine"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ppl: error: --out") and len(err.strip().splitlines()) == 1
    assert (mine / "notes.txt").read_text() == "keep" and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_an_elpd_that_could_not_be_computed_says_why_in_the_problems_column():
    """Leave-one-out needs 25 draws (`arviz_compat.MIN_LOO_DRAWS`): a NUTS run of 20 gets NaN and the reason,
    where a point estimate's NaN (LOO does not apply to it) adds no problem."""
    comparison = compare("coin", FLIPS, methods=("nuts", "map"), progress=False,
                         options={"nuts": {"num_chains": 1, "num_warmup": 20, "num_samples": 20}})
    methods = comparison.methods_table()
    assert np.isnan(methods.loc["nuts", "elpd_loo"]) and np.isnan(methods.loc["map", "elpd_loo"])
    assert "elpd_loo not computed" in methods.loc["nuts", "problems"], methods.loc["nuts", "problems"]
    assert "draws" in methods.loc["nuts", "problems"]
    assert "elpd_loo" not in methods.loc["map", "problems"]
    assert "nuts problems:" in comparison.report() and "elpd_loo not computed" in comparison.report()
