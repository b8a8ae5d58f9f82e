"""Every dimension of every group of `to_arviz()` has a name from its plate or its meaning, never ArviZ's
placeholder ``<site>_dim_<k>``.

Rules (inference/structure.py, `_site_dims`): a batch axis inside a plate takes the plate's name; any other
axis (a batch axis outside every plate, an event axis) takes the name of the one plate of the model with
its size when there is exactly one (a Dirichlet's K weights beside a plate K), else ``<site>_batch`` or
``<site>_event`` (``_event_0``, ``_event_1``, ... when the site has several). The log-likelihood takes
the batch dimensions of its site, the observed data the dimensions of its value (a scalar has none).
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import ppl_models
from benchmarks.corpus import PROGRAMS
from conftest import PLACEHOLDER_DIM, small_data
from inference import fit
from inference import arviz_compat as azc
from inference.structure import inspect_model

GROUPS = ("posterior", "prior", "log_likelihood", "posterior_predictive", "prior_predictive", "observed_data")

FIT = {"map": {"num_steps": 5}, "svi": {"num_steps": 5, "num_samples": 4},
       "nuts": {"num_chains": 1, "num_samples": 4, "num_warmup": 4}}


def catalogue_posterior(name: str):
    spec = ppl_models.get(name)
    method = next(m for m in ("map", "svi", "nuts") if m in spec.engines)
    return fit(name, data=small_data(name), method=method, progress=False, pointwise=True, **FIT[method])


def corpus_posterior(name: str):
    program = PROGRAMS[name]
    # Dirichlet priors of concentration below 1 (gmm's weights, hmm's transitions) have no mode inside the
    # simplex: MAP runs off to its edge
    method = "svi" if name in ("gmm", "hmm") else "map"
    return fit(program.model, data=program.data(seed=0), method=method, progress=False, pointwise=True,
               **FIT[method])


def placeholders(idata) -> list[str]:
    found = []
    for group in GROUPS:
        if group not in azc.groups(idata):
            continue
        for var, array in idata[group].data_vars.items():
            found += [f"{group}/{var}: {dim}" for dim in array.dims if PLACEHOLDER_DIM.search(dim)]
    return found


@pytest.mark.parametrize("name", ppl_models.names())
def test_every_catalogue_model_names_every_dimension(name):
    idata = catalogue_posterior(name).to_arviz()  # cheap fits: catalogue_posterior keeps budgets small
    assert not placeholders(idata), placeholders(idata)
    assert {"posterior", "observed_data"} <= set(azc.groups(idata))


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_every_corpus_program_names_every_dimension(name):
    idata = corpus_posterior(name).to_arviz()
    assert not placeholders(idata), placeholders(idata)


# ---- the rules, one by one -------------------------------------------------------------------------
def test_mixture_weights_take_the_name_of_the_plate_of_their_size():
    idata = catalogue_posterior("gmm").to_arviz()
    assert idata.posterior["weights"].dims[2:] == ("K",)  # Dirichlet(ones(K)) outside the plate K
    assert idata.posterior["locs"].dims[2:] == ("K",)
    assert idata.posterior["scales"].dims[2:] == ("K",)
    assert idata.posterior["z"].dims[2:] == ("N",)
    assert idata.prior["weights"].dims[2:] == ("K",)
    idata = catalogue_posterior("coin_mixture").to_arviz()
    assert idata.posterior["pi"].dims[2:] == ("K",)
    assert idata.observed_data["flips"].dims == ("N", "flips_event")  # 20 tosses: no plate of that size


def test_event_and_batch_axes_outside_plates():
    def model(x):
        w = pyro.sample("w", dist.Normal(0.0, torch.ones(3)))  # a batch axis outside any plate
        pyro.sample("L", dist.LKJCholesky(3, 1.0))  # two event axes
        with pyro.plate("N", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            pyro.sample("x", dist.Normal(z + w[:2], 1.0).to_event(1), obs=x)

    s = inspect_model(model, {"x": torch.zeros(5, 2)})
    assert s.dims["w"] == ["w_batch"]
    assert s.dims["L"] == ["L_event_0", "L_event_1"]
    assert s.dims["z"] == ["N", "z_event"]
    assert s.dims["x"] == ["N", "x_event"]


def test_an_axis_matches_a_plate_only_when_one_plate_has_its_size():
    def model(y):
        with pyro.plate("A", 3):
            a = pyro.sample("a", dist.Normal(0.0, 1.0))
        with pyro.plate("B", 3):
            b = pyro.sample("b", dist.Normal(0.0, 1.0))
        with pyro.plate("C", 4):
            c = pyro.sample("c", dist.Normal(0.0, 1.0))
        v = pyro.sample("v", dist.Dirichlet(torch.ones(3)))  # 3: plates A and B both have it
        u = pyro.sample("u", dist.Dirichlet(torch.ones(4)))  # 4: plate C alone
        pyro.sample("y", dist.Normal(a.sum() + b.sum() + c.sum() + v.sum() + u.sum(), 1.0), obs=y)

    s = inspect_model(model, {"y": torch.tensor(0.0)})
    assert s.dims["v"] == ["v_event"] and s.dims["u"] == ["C"]


def test_a_scalar_observation_has_no_dimension_and_log_likelihood_drops_event_axes():
    post = fit("bayes_net", method="nuts", num_chains=1, num_samples=20, progress=False)  # wet_grass observed
    idata = post.to_arviz()
    assert idata.observed_data["wet_grass"].dims == ()
    assert int(idata.observed_data["wet_grass"]) == 0
    idata = catalogue_posterior("factor_analysis").to_arviz()
    assert idata.log_likelihood["x"].dims[2:] == ("N",)
    assert idata.posterior_predictive["x"].dims[2:] == ("N", "x_event")
    assert idata.observed_data["x"].dims == ("N", "x_event")
    assert idata.posterior["W"].dims[2:] == ("W_event_0", "W_event_1")


def test_netcdf_round_trip_keeps_the_names(tmp_path):
    post = catalogue_posterior("gmm")
    path = post.to_netcdf(tmp_path / "posterior.nc")
    import arviz as az

    back = az.from_netcdf(path)
    assert back.posterior["weights"].dims[2:] == ("K",)
    assert not placeholders(back)
    assert np.allclose(back.posterior["weights"].values, post.samples["weights"])


def test_a_vector_is_not_named_after_a_data_plate_of_the_same_size():
    """coef (D,) beside a data plate N of the same size is not indexed by N: borrowing a plate's name for an
    axis outside it is for plates of the model's own structure (K components), not for data points."""

    def regression(X, y):
        coef = pyro.sample("coef", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
        with pyro.plate("N", X.shape[0]):
            pyro.sample("y", dist.Normal(X @ coef, 1.0), obs=y)

    structure = inspect_model(regression, {"X": torch.randn(5, 5), "y": torch.randn(5)})
    assert structure.dims["coef"] == ["coef_event"] and structure.dims["y"] == ["N"]
