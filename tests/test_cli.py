"""The `ppl` command: outputs that read back, and bad input as one line with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import arviz as az
import numpy as np
import pytest

from inference import fit
from inference import arviz_compat as azc
from ppl.cli import main

QUICK = ["--chains", "2", "--samples", "60", "--warmup", "60"]


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_list_names_every_model(capsys):
    import ppl_models

    code, out, _ = run(["list"], capsys)
    assert code == 0
    for name in ppl_models.names():
        assert name in out


def test_fit_writes_a_posterior_that_reads_back_with_the_same_draws(tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, err = run(["fit", "coin", "--out", str(out_dir), "--seed", "3", *QUICK], capsys)
    assert code == 0, err
    assert {"posterior.nc", "summary.csv", "model.svg"} <= {p.name for p in out_dir.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind
    idata = az.from_netcdf(out_dir / "posterior.nc")
    again = fit("coin", method="nuts", seed=3, num_chains=2, num_samples=60, num_warmup=60, progress=False)
    np.testing.assert_array_equal(idata.posterior["p"].values, again.samples["p"])
    for group in ("posterior", "sample_stats", "log_likelihood", "posterior_predictive", "observed_data"):
        assert group in azc.groups(idata)
    assert "r_hat" in (out_dir / "summary.csv").read_text()
    assert "mean" in out and "wrote" in out
    assert (out_dir / "model.svg").read_text().lstrip().startswith(("<?xml", "<svg"))


def test_fit_json_and_data_file(tmp_path, capsys):
    data = tmp_path / "flips.json"
    data.write_text(json.dumps({"flips": [1, 1, 1, 0], "alpha": 2, "beta": 2}))
    code, out, err = run(["fit", "coin", "--method", "map", "--data", str(data), "--out", str(tmp_path / "r"),
                          "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["method"] == "map"
    assert report["summary"]["p"]["mean"] == pytest.approx(4 / 6, abs=1e-4)  # Beta(5, 3) mode


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_csv_and_npz_data(tmp_path, capsys, suffix):
    path = tmp_path / f"d{suffix}"
    if suffix == ".csv":
        path.write_text("flips\n1\n0\n1\n1\n")
    else:
        np.savez(path, flips=np.array([1, 0, 1, 1]), alpha=np.array(1.0))
    code, out, err = run(["fit", "coin", "--method", "mle", "--data", str(path), "--out", str(tmp_path / "r"),
                          "--quiet"], capsys)
    assert code == 0, err
    assert out == f"wrote {tmp_path / 'r'}/\n"  # --quiet: nothing but where the run went


@pytest.mark.parametrize(
    "argv, data, message",
    [
        (["fit", "no_such_model"], None, "unknown model 'no_such_model'"),
        (["fit", "coin", "--method", "gibbs"], None, "unknown method 'gibbs'"),
        (["fit", "coin"], {"flips": [0, 1, 2]}, "flips: must be 0 or 1; index 2 is 2"),
        (["fit", "coin"], "flips\n1\nnan\n", "flips: contains NaN"),
        (["fit", "coin"], {"flips": []}, "flips: is empty"),
        (["fit", "coin"], {"flips": [[0, 1], [1, 1]]}, "flips: expected shape (N,)"),
        (["fit", "coin"], {"flips": ["a", "b"]}, "flips: must be numeric"),
        (["fit", "coin"], {"flips": [1, 0], "alpah": 2}, "alpah: unknown field"),
        (["fit", "coin"], {"flips": [1, 0], "alpha": -1}, "alpha: must be at least"),
        (["fit", "coin"], "{not json", "cannot read data file"),
        (["fit", "coin", "--method", "svi", "--chains", "2"], None, "--chains: does not apply to method svi"),
        (["fit", "coin", "--samples", "0"], None, "--samples: must be positive"),
        (["fit", "coin", "--evidence", "a=b"], None, "--evidence applies to Bayesian networks"),
        (["fit"], None, "the following arguments are required: name"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, argv, data, message):
    out_dir = tmp_path / "run"
    argv = list(argv) + ["--out", str(out_dir)] if len(argv) > 1 else list(argv)
    if data is not None:
        path = tmp_path / ("d.csv" if isinstance(data, str) and data.startswith("flips") else "d.json")
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        argv += ["--data", str(path)]
    code, out, err = run(argv, capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out_dir.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name != "d.json" and p.name != "d.csv"] == []


def test_missing_data_file(tmp_path, capsys):
    code, _, err = run(["fit", "coin", "--data", str(tmp_path / "nope.json"), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "does not exist" in err and not (tmp_path / "r").exists()


def test_failed_run_leaves_an_existing_run_untouched(tmp_path, capsys, monkeypatch):
    out_dir = tmp_path / "run"
    assert main(["fit", "coin", "--method", "map", "--out", str(out_dir), "--quiet"]) == 0
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}

    def boom(*args, **kwargs):
        raise FloatingPointError("the loss became nan")

    monkeypatch.setattr("inference.fit", boom)
    code, _, err = run(["fit", "coin", "--method", "map", "--out", str(out_dir)], capsys)
    assert code == 1 and "the loss became nan" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_render_and_query(tmp_path, capsys):
    target = tmp_path / "coin.dot"
    code, out, err = run(["render", "coin", "--out", str(target), "--query", "flips _|_ alpha | p"], capsys)
    assert code == 0, err
    assert "true" in out and target.read_text().lstrip().startswith(("digraph", "strict digraph"))
    code, _, err = run(["render", "coin", "--out", str(target), "--query", "flips _|_ nothing"], capsys)
    assert code == 2 and "nothing: is not a node of the graph" in err


def test_console_entry_point_exit_status():
    bad = subprocess.run([sys.executable, "-m", "ppl", "fit", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown model 'nope'" in bad.stderr
    ok = subprocess.run([sys.executable, "-m", "ppl", "list"], capture_output=True, text=True)
    assert ok.returncode == 0 and "coin" in ok.stdout


def test_evidence_on_a_network(tmp_path, capsys):
    from ppl_models.bayes_net import load

    out_dir = tmp_path / "bn"
    code, out, err = run(["fit", "bayes_net", "--network", "sprinkler", "--evidence", "wet_grass=yes",
                          "--out", str(out_dir), "--json"], capsys)
    assert code == 0, err
    idata = az.from_netcdf(out_dir / "posterior.nc")
    exact = load("sprinkler").query(["rain"], evidence={"wet_grass": "yes"})["rain"]
    states = load("sprinkler").states["rain"]
    draws = idata.posterior["rain"].values.ravel()
    frequency = np.mean(draws == states.index("yes"))
    se = np.sqrt(exact["yes"] * (1 - exact["yes"]) / draws.size)
    assert abs(frequency - exact["yes"]) < 4 * se


@pytest.mark.parametrize("argv, message", [
    (["--evidence", "rain=maybe"], "'rain' has no state 'maybe'"),
    (["--evidence", "snow=yes"], "unknown variable 'snow'"),
    (["--evidence", "rain"], "expected VARIABLE=STATE"),
    (["--network", "nowhere"], "unknown network 'nowhere'"),
])
def test_bad_evidence_is_exit_2(tmp_path, capsys, argv, message):
    code, _, err = run(["fit", "bayes_net", "--network", "sprinkler", *argv, "--out", str(tmp_path / "r")]
                       if argv[0] != "--network" else ["fit", "bayes_net", *argv, "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_fit_relabels_a_symmetric_mixture_before_its_summary(tmp_path, capsys):
    """coin_mixture's coins are exchangeable: `ppl fit` writes every draw with its coins sorted by bias
    (the model's own relabel), the file and the summary agree, and the notes say so."""
    assert main(["fit", "coin_mixture", "--chains", "2", "--samples", "40", "--warmup", "40", "--out",
                 str(tmp_path / "run"), "--json"]) == 0
    idata = az.from_netcdf(str(tmp_path / "run" / "posterior.nc"))
    theta = idata.posterior["theta"].values
    assert (np.diff(theta, axis=-1) >= 0).all()
    out = json.loads(capsys.readouterr().out)
    assert any("relabelled" in note for note in out["notes"]), out["notes"]


def test_run_length_flags_have_help_written_from_the_engine_options(capsys):
    from inference.options import BY_NAME

    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, option in (("--chains", "num_chains"), ("--samples", "num_samples"), ("--warmup", "num_warmup"),
                         ("--steps", "num_steps")):
        assert " ".join(BY_NAME[option].help.split()) in text, flag
    assert "(nuts/hmc; default: 4)" in text and "the same seed gives the same draws" in text


# ---- what a student sees (issue 22, item 7) -------------------------------------------------------------
def test_ppl_alone_lists_the_commands(capsys):
    code, out, err = run([], capsys)
    assert code == 0 and not err
    for command in ("list", "fit", "compare", "render", "demo"):
        assert f"    {command} " in out, command


def test_list_shows_each_model_s_data_fields_and_one_model_s_options(capsys):
    code, out, _ = run(["list"], capsys)
    assert code == 0 and "data" in out.splitlines()[0]
    row = next(line for line in out.splitlines() if line.startswith("linear_regression"))
    assert " X, y " in row
    code, out, _ = run(["list", "linear_regression"], capsys)
    assert code == 0
    assert "predictors, one row per observation" in out and "real (N, D)" in out
    assert "prior_scale" in out and "default 1.0" in out and "one of normal, laplace, flat" in out
    assert run(["list", "nope"], capsys)[0] == 2


def test_model_options_on_the_command_line(tmp_path, capsys):
    """--set reaches the model (the exact posterior moves with the prior) and is recorded in run.json."""
    code, out, err = run(["fit", "coin", "--method", "map", "--set", "alpha=50", "beta=2", "--out",
                          str(tmp_path / "a"), "--json"], capsys)
    assert code == 0, err
    p = json.loads(out)["summary"]["p"]["mean"]
    heads = int(np.sum(__import__("ppl_models").get("coin").default_data(0)["flips"]))
    n = len(__import__("ppl_models").get("coin").default_data(0)["flips"])
    assert abs(p - (heads + 50 - 1) / (n + 52 - 2)) < 1e-3  # the Beta(heads + 50, tails + 2) mode
    assert json.loads((tmp_path / "a" / "run.json").read_text())["model_options"] == {"alpha": 50, "beta": 2}


@pytest.mark.parametrize("argv, says", [
    (["--set", "gamma=1"], "--set: model 'coin' has no option 'gamma'; its options: alpha, beta, N"),
    (["--set", "flips=1"], "--set: 'flips' is a data field of model 'coin', not an option"),
    (["--set", "alpha=-1"], "--set alpha: must be at least 1e-06, got -1"),
    (["--set", "alpha"], "--set: write OPTION=VALUE, got 'alpha'"),
    (["--set", "alpha=many"], "--set alpha: must be a number, got 'many'"),
])
def test_bad_model_options_are_one_line_exit_2(tmp_path, capsys, argv, says):
    code, out, err = run(["fit", "coin", "--out", str(tmp_path / "r"), *argv], capsys)
    assert code == 2 and says in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_quiet_says_where_the_run_went(tmp_path, capsys):
    code, out, _ = run(["fit", "coin", "--method", "map", "--quiet", "--out", str(tmp_path / "q")], capsys)
    assert code == 0 and out == f"wrote {tmp_path / 'q'}/\n"


def test_svi_table_has_no_empty_r_hat_column_and_map_s_bar_ends_at_100(tmp_path, capsys):
    code, out, err = run(["fit", "coin", "--method", "svi", "--steps", "300", "--samples", "200", "--out",
                          str(tmp_path / "s")], capsys)
    assert code == 0
    header = next(line for line in out.splitlines() if line.lstrip().startswith("mean"))
    assert "r_hat" not in header and "NaN" not in out
    code, out, err = run(["fit", "coin", "--method", "map", "--out", str(tmp_path / "m")], capsys)
    assert code == 0
    last = err.replace("\r", "\n").strip().splitlines()
    bars = [line for line in last if line.startswith("map:")]
    assert bars and "100%" in bars[-1] and "stopped: converged" in bars[-1], bars[-3:]


def test_synopsis_names_every_flag_of_fit(capsys):
    import ppl.cli

    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    flags = {word.strip("[],") for word in capsys.readouterr().out.split() if word.startswith(("--", "[--"))}
    synopsis = ppl.cli.__doc__.split("ppl compare")[0]
    missing = sorted(f for f in flags if f.startswith("--") and f not in synopsis and f != "--help")
    assert not missing, missing
