"""`fit`'s Python API under bad input (issue 19, defects 8, 9 and 11): options, seed, plain data, guides,
models with nothing to infer, and the model's own exceptions.

Each test fails on the code before the fix. Bad values are refused *before any work starts*: the tests
replace the first step of the work (`inspect_model`, or the optimiser) by a tripwire, so a value that is
let through shows up as the tripwire instead of as a long run.
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import inference.api
from inference import InputError, fit
from ppl_models import DataError

QUICK = dict(num_chains=1, num_samples=30, num_warmup=30, progress=False)


class WorkStarted(AssertionError):
    """Raised by the tripwire: the run got past the checks."""


@pytest.fixture
def tripwire(monkeypatch):
    """Fail loudly as soon as `fit` starts working on the model (tracing it, then sampling/optimising)."""

    def started(*args, **kwargs):
        raise WorkStarted("work started before the bad value was refused")

    for name in ("inspect_model", "run_mcmc", "run_svi", "run_point"):
        monkeypatch.setattr(inference.api, name, started)


def coin(flips=None):
    p = pyro.sample("p", dist.Beta(2.0, 2.0))
    with pyro.plate("N", len(flips)):
        pyro.sample("flips", dist.Bernoulli(p), obs=flips)


def normal_mean(y=None):
    """m ~ N(0, 10^2); y_i ~ N(m, 1): the posterior of m is N(sum(y) / (n + 0.01), 1 / (n + 0.01))."""
    m = pyro.sample("m", dist.Normal(0.0, 10.0))
    with pyro.plate("N", len(y)):
        pyro.sample("y", dist.Normal(m, 1.0), obs=y)


def grouped_coins(g=None, y=None):
    """Two coins; g (a long tensor) says which coin each flip comes from: an index array, not an observation."""
    with pyro.plate("coins", 2):
        p = pyro.sample("p", dist.Beta(2.0, 2.0))
    with pyro.plate("N", len(y)):
        pyro.sample("y", dist.Bernoulli(p[g]), obs=y)


def no_latent(y=None):
    with pyro.plate("N", len(y)):
        pyro.sample("y", dist.Normal(0.0, 1.0), obs=y)


def indexes_past_the_end(y=None):
    m = pyro.sample("m", dist.Normal(0.0, 1.0))
    weights = [1.0, 2.0]
    pyro.sample("y", dist.Normal(m * weights[len(y) + 5], 1.0), obs=y)


def three_points(y=None):
    m = pyro.sample("m", dist.Normal(0.0, 1.0))
    with pyro.plate("N", 3):
        pyro.sample("y", dist.Normal(m, 1.0), obs=y)


def raises_its_own_error(y=None):
    pyro.sample("m", dist.Normal(0.0, 1.0))
    raise RuntimeError("this model is not finished")


def looks_up_a_missing_key(y=None):
    pyro.sample("m", dist.Normal(0.0, 1.0))
    return {"a": 1}["b"]


# ---------------------------------------------------------------- engine options (defect 9, 11)

@pytest.mark.parametrize("method, option, value, says", [
    ("nuts", "num_warmup", True, "must be a whole number, got True"),
    ("nuts", "max_tree_depth", 6.0, "must be a whole number, got 6.0 (a float)"),  # not "got 6"
    ("nuts", "num_warmup", 10**9, "at most 1000000 (a larger run would take days"),
    ("hmc", "num_samples", np.int64(10**7), "at most 1000000"),
    ("nuts", "num_chains", 1000, "at most 64"),
    ("nuts", "target_accept", 1.5, "must be in (0, 1), got 1.5"),
    ("nuts", "target_accept", 1.0, "must be in (0, 1), got 1"),
    ("nuts", "max_tree_depth", 40, "must be at most 15 (a tree of depth 15"),
    ("nuts", "step_size", float("inf"), "must be a finite number"),
    ("hmc", "trajectory_length", -1.0, "must be in (0, 1000] or None, got -1"),
    ("hmc", "trajectory_length", "long", "got 'long'"),
    ("svi", "tol", "x", "must be a non-negative number, got 'x'"),
    ("svi", "lr", 1e6, "in (0, 10]"),
    ("svi", "num_steps", 10**9, "at most 10000000"),
    ("svi", "num_particles", 10**6, "at most 10000"),
    ("svi", "guide", 42, "must be 'normal', 'mvn', 'delta', a callable or None, got 42"),
    ("map", "optimizer", "sgd", "must be 'lbfgs', 'adam' or None, got 'sgd'"),
    ("map", "lr", np.float64(-0.1), "got -0.1"),
])
def test_bad_engine_options_are_refused_before_any_work(tripwire, method, option, value, says):
    with pytest.raises(InputError) as err:
        fit("coin", method=method, progress=False, **{option: value})
    assert err.value.field == option
    assert says in err.value.problem
    assert "np." not in str(err.value) and "\n" not in str(err.value)


def test_options_are_declared_once_and_every_default_passes_its_own_check():
    from inference.options import BY_NAME, ENGINE_OPTIONS, check_options, describe

    old = {  # inference.OPTIONS as other code reads it (method -> {option: default})
        "nuts": {"num_chains": 4, "num_samples": 1000, "num_warmup": 1000, "target_accept": 0.8,
                 "max_tree_depth": 10, "full_mass": None, "jit_compile": False, "step_size": 1.0,
                 "backend": "fast", "warm_start": True, "adaptation": "pooled", "batching": "auto",
                 "compiler": "auto"},
        "svi": {"guide": None, "num_steps": 10000, "lr": None, "tol": 1e-4, "num_samples": 1000, "num_particles": 1,
                "reweight": False},
        "map": {"optimizer": None, "num_steps": None, "lr": None, "tol": None},
    }
    for method, options in old.items():
        assert inference.OPTIONS[method] == options
    assert set(inference.OPTIONS["hmc"]) == set(old["nuts"]) - {"max_tree_depth"} | {"trajectory_length"}
    for method, options in inference.OPTIONS.items():
        assert check_options(method, options) == options
    assert len(BY_NAME) == len(ENGINE_OPTIONS)
    for option in ENGINE_OPTIONS:  # the docstring is written from the declaration
        assert f"``{option.name}`` (" in fit.__doc__ and option.range_text() in describe()


def test_numpy_scalars_are_accepted_and_stored_as_plain_numbers():
    post = fit(coin, {"flips": [1, 0, 1]}, num_chains=np.int64(1), num_samples=np.int64(20),
               num_warmup=np.int32(20), target_accept=np.float32(0.9), seed=np.int64(3), progress=False)
    assert type(post.settings["num_samples"]) is int and type(post.settings["target_accept"]) is float
    assert type(post.settings["seed"]) is int and post.samples["p"].shape == (1, 20)


# ---------------------------------------------------------------- seed and progress (defect 7, 11)

@pytest.mark.parametrize("seed", [1.5, -1, 2**32, 2**70, True, "1", np.float64(3.0)])
def test_seed_outside_numpy_range_or_not_whole_is_refused(tripwire, seed):
    with pytest.raises(InputError) as err:
        fit("coin", seed=seed, progress=False)
    assert err.value.field == "seed" and "4294967295" in err.value.problem
    assert "np." not in str(err.value)


def test_the_largest_seed_runs_on_every_backend():
    """... and the notes say which ran (Pyro's kernels said nothing, a new user's trial found)."""
    for backend in ("fast", "pyro"):
        post = fit("coin", seed=2**32 - 1, backend=backend, **QUICK)
        assert post.samples["p"].shape == (1, 30)
        assert any(n.startswith(f"{backend} backend") or n.startswith(f"{backend.capitalize()} backend")
                   for n in post.notes), post.notes


def test_progress_must_be_a_bool(tripwire):
    with pytest.raises(InputError) as err:
        fit("coin", progress="yes")
    assert err.value.field == "progress"


def test_cli_seed_and_warmup_out_of_range_are_exit_2(tripwire, tmp_path, capsys):
    from ppl.cli import main

    for argv in (["--seed", "-1"], ["--seed", str(2**70)], ["--warmup", "1000000000"]):
        code = main(["fit", "coin", "--out", str(tmp_path / "run"), "--quiet", *argv])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("ppl: error:") and len(err.splitlines()) == 1, (argv, err)
        assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- plain data (defects 8, 11)

@pytest.mark.parametrize("make", [list, np.asarray, torch.tensor, lambda v: torch.tensor(v, dtype=torch.float64)],
                         ids=["list", "array", "tensor", "float64 tensor"])
@pytest.mark.parametrize("bad, says", [(float("nan"), "contains NaN (first at index 3)"),
                                       (float("-inf"), "contains an infinite value (first at index 3)")])
def test_nan_and_inf_in_plain_data_name_the_field_and_first_index(tripwire, make, bad, says):
    with pytest.raises(DataError) as err:
        fit(normal_mean, {"y": make([0.5, 1.0, 2.0, bad, bad])}, progress=False)
    assert err.value.field == "y" and err.value.problem == says


@pytest.mark.parametrize("data, says", [
    ({"y": [1e308, 1.0]}, "1e+308 at index 0 is beyond float32's range"),
    ({"y": np.array([1.0, -1e39])}, "-1e+39 at index 1 is beyond float32's range"),
    ({"y": [1.0, 1e30]}, "1e+30 at index 1 is too large for float32 arithmetic"),
    ({"y": torch.tensor([1.0, 1e200], dtype=torch.float64)}, "1e+200 at index 1 is too large for float64 arithmetic"),
])
def test_finite_values_beyond_the_working_float_range_are_refused(tripwire, data, says):
    with pytest.raises(DataError) as err:
        fit(normal_mean, data, progress=False)
    assert err.value.field == "y" and err.value.problem.startswith(says)


@pytest.mark.parametrize("model, data, field", [
    ("coin", {"flips": [1, 0], "alpha": 1e308}, "alpha"),
    ("coin", {"flips": [1, 0], "beta": 1e30}, "beta"),
    ("linear_regression", {"X": np.full((3, 2), 1e200), "y": [1.0, 2.0, 3.0]}, "X"),
    ("linear_regression", {"X": np.ones((3, 2)), "y": [1e308, 2.0, 3.0]}, "y"),
])
def test_registered_models_refuse_values_beyond_the_float_range(tripwire, model, data, field):
    with pytest.raises(DataError) as err:
        fit(model, data, progress=False)
    assert err.value.field == field and "float32" in err.value.problem


def test_messages_show_plain_numbers_not_numpy_reprs(tripwire):
    with pytest.raises(DataError) as err:
        fit("coin", {"flips": [0.5, 1.0]}, progress=False)
    assert str(err.value) == "flips: must hold whole numbers; index 0 is 0.5"


@pytest.mark.parametrize("method", ["nuts", "svi", "map"])
def test_an_integer_observation_tensor_just_works(method):
    flips = [1, 1, 1, 0]
    budget = QUICK if method == "nuts" else dict(num_steps=200, progress=False)
    ints = fit(coin, {"flips": torch.tensor(flips)}, method=method, **budget)
    floats = fit(coin, {"flips": torch.tensor(flips, dtype=torch.float32)}, method=method, **budget)
    np.testing.assert_allclose(ints.samples["p"], floats.samples["p"], rtol=1e-5)
    if method == "map":  # Beta(2, 2) prior, 3 heads, 1 tail: the mode of Beta(5, 3) is 4/6
        assert abs(float(ints.samples["p"].item()) - 4 / 6) < 1e-4


def test_an_index_tensor_stays_an_index_while_an_integer_observation_is_cast():
    g = torch.tensor([0, 0, 0, 1, 1, 1])
    y = torch.tensor([1, 1, 0, 0, 0, 0])  # an int observation of a Bernoulli, beside the index array g
    post = fit(grouped_coins, {"g": g, "y": y}, method="map", progress=False)
    # Beta(2, 2) priors: coin 0 has 2 heads of 3 -> mode 3/5; coin 1 has 0 of 3 -> mode 1/5
    np.testing.assert_allclose(post.samples["p"].reshape(-1), [3 / 5, 1 / 5], atol=1e-4)
    assert post.data["g"].dtype == torch.long


def test_a_tensor_that_requires_grad_is_data_not_a_parameter():
    y = torch.tensor([1.0, 2.0, 0.5, 1.5], requires_grad=True)
    exact = float(y.sum()) / (len(y) + 0.01)
    post = fit(normal_mean, {"y": y}, num_chains=2, num_samples=300, num_warmup=200, progress=False)
    assert abs(post.samples["m"].mean() - exact) < 0.25
    assert not post.data["y"].requires_grad
    point = fit(normal_mean, {"y": y}, method="map", progress=False)
    assert abs(float(point.samples["m"].item()) - exact) < 1e-3


# ---------------------------------------------------------------- guides, models (defect 11)

def guide_without_p(flips=None):
    pass


def guide_of_another_model(a, b):
    pass


def guide_for_coin(flips=None):
    a = pyro.param("a", torch.tensor(2.0), constraint=dist.constraints.positive)
    b = pyro.param("b", torch.tensor(2.0), constraint=dist.constraints.positive)
    pyro.sample("p", dist.Beta(a, b))


@pytest.mark.parametrize("guide, says", [
    (guide_without_p, "has no site 'p' that the model samples"),
    (guide_of_another_model, "cannot be called with the model's arguments (flips)"),
])
def test_a_guide_that_does_not_fit_the_model_is_refused_before_optimisation(monkeypatch, guide, says):
    def optimising(*args, **kwargs):
        raise WorkStarted("optimisation started")

    monkeypatch.setattr(inference.api, "run_svi", optimising)
    with pytest.raises(InputError) as err:
        fit(coin, {"flips": [1, 1, 0]}, method="svi", guide=guide, progress=False)
    assert err.value.field == "guide" and says in err.value.problem
    monkeypatch.undo()
    post = fit(coin, {"flips": [1, 1, 0]}, method="svi", guide=guide_for_coin, num_steps=300, lr=0.05,
               num_samples=50, progress=False)
    assert post.samples["p"].shape == (1, 50)  # a guide that fits runs as before


@pytest.mark.parametrize("method", ["nuts", "hmc", "svi", "map", "mle"])
def test_a_model_with_no_latent_site_has_nothing_to_infer(method):
    budget = dict(num_warmup=5, num_samples=5) if method in ("nuts", "hmc") else dict(num_steps=10)
    with pytest.raises(InputError) as err:
        fit(no_latent, {"y": [0.1, -0.3]}, method=method, progress=False, **budget)
    assert err.value.field == "model" and "no latent site" in err.value.problem


@pytest.mark.parametrize("model, error", [(indexes_past_the_end, "IndexError"),
                                          (raises_its_own_error, "RuntimeError"),
                                          (looks_up_a_missing_key, "KeyError")])
def test_an_exception_of_the_models_own_code_is_a_model_failure_not_bad_data(model, error):
    from inference.errors import ModelError

    with pytest.raises(ModelError) as err:
        fit(model, {"y": [0.1, 0.2]}, **QUICK)
    message = str(err.value)
    assert not isinstance(err.value, (InputError, DataError))
    assert message.startswith(f"model {model.__name__} raised {error} at test_api_input.py:")
    assert "\n" not in message
    with pytest.raises(InputError) as err:  # a failure inside Pyro caused by the data is still bad data
        fit(three_points, {"y": [0.1, 0.2]}, **QUICK)
    assert err.value.field == "y" and err.value.problem.startswith("has shape (2,) but site 'y' expects (3,)")


def test_a_model_function_named_model_is_not_named_twice():
    """Pyro's examples name their function `model`: its failure reads "model raised ...", not "model model"."""
    from inference.errors import ModelError

    def model(y=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        raise ValueError("only one element tensors can be converted to Python scalars")

    with pytest.raises(ModelError) as err:
        fit(model, {"y": 0.1}, **QUICK)
    assert str(err.value).startswith("model raised ValueError at test_api_input.py:"), str(err.value)
