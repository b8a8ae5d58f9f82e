"""A discrete site's summary gives P(state) per state, by name, not the mean of state indices; runs whose
draws are exact say so.

The mean of state indices (yes = 0, no = 1) read as P(no): asia given smoke = yes printed ``lung 0.900``,
which a reader takes for P(lung cancer) = 0.9 while P(lung = yes | smoke = yes) = 0.10. The summary now has
rows ``P(lung=yes)``, ``P(lung=no)``: the probability as the mean, its Monte-Carlo standard error, ESS and
R-hat of the indicator draws, and no hdi columns (an interval of 0/1 draws says nothing). The oracle is
pgmpy's variable elimination; the tolerance is 4 of the row's own Monte-Carlo standard errors.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate

from conftest import pgmpy_sprinkler
from inference import fit
from inference.errors import ModelError

Z = 4  # Monte-Carlo standard errors allowed between a summary's probability and the exact one


def pgmpy_probability(model, variable: str, state: str, evidence: dict) -> float:
    from pgmpy.inference import VariableElimination

    q = VariableElimination(model).query([variable], evidence=evidence or None, show_progress=False)
    return float(q.values[list(q.state_names[variable]).index(state)])


def pgmpy_asia():
    pytest.importorskip("pgmpy")
    from pgmpy.utils import get_example_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_example_model("asia")


def assert_probability(table, row: str, truth: float) -> None:
    assert row in table.index, f"no row {row!r} in the summary: {list(table.index)}"
    mean, mcse = float(table.loc[row, "mean"]), float(table.loc[row, "mcse_mean"])
    assert 0 < mcse < 0.05, (row, mcse)
    assert abs(mean - truth) <= Z * mcse, f"{row}: {mean:.4f} vs exact {truth:.4f} (MCSE {mcse:.4f})"


@pytest.fixture(scope="module")
def asia_smoker():
    return fit("bayes_net", data={"evidence": {"smoke": "yes"}, "network": "asia"}, method="nuts", progress=False)


def test_asia_summary_gives_p_lung_yes_given_smoke_by_name(asia_smoker):
    table = asia_smoker.summary(round_to="none")
    truth = pgmpy_probability(pgmpy_asia(), "lung", "yes", {"smoke": "yes"})
    assert abs(truth - 0.10) < 1e-9
    assert_probability(table, "P(lung=yes)", truth)
    assert_probability(table, "P(lung=no)", 1 - truth)
    assert "lung" not in table.index  # the mean of state indices is gone
    # every hidden node has one row per state; the evidence node has none
    net_states = {"asia": 2, "tub": 2, "lung": 2, "bronc": 2, "either": 2, "xray": 2, "dysp": 2}
    assert len(table) == sum(net_states.values())
    assert not any(name.startswith("P(smoke=") for name in table.index)
    for node in net_states:
        pair = table.loc[[f"P({node}=yes)", f"P({node}=no)"], "mean"]
        assert abs(pair.sum() - 1) < 1e-9


def test_state_rows_have_no_interval_columns_but_keep_diagnostics(asia_smoker):
    table = asia_smoker.summary()
    rows = table.loc[["P(lung=yes)", "P(lung=no)"]]
    for column in ("hdi_3%", "hdi_97%", "sd"):
        assert rows[column].isna().all(), column
    for column in ("mean", "mcse_mean", "ess_bulk", "r_hat"):
        assert rows[column].notna().all(), column
    assert (rows["ess_bulk"] > 1000).all()  # exact, independent draws: 4 x 1000
    assert asia_smoker.problems() == []


def test_sprinkler_summary_gives_p_cloudy_yes_given_wet_grass():
    post = fit("bayes_net", method="nuts", progress=False)  # default data: sprinkler, wet_grass = yes
    table = post.summary(round_to="none")
    truth = pgmpy_probability(pgmpy_sprinkler(), "cloudy", "yes", {"wet_grass": "yes"})
    assert abs(truth - 0.5758) < 1e-3
    assert_probability(table, "P(cloudy=yes)", truth)
    for var in ("sprinkler", "rain"):
        assert_probability(table, f"P({var}=yes)",
                           pgmpy_probability(pgmpy_sprinkler(), var, "yes", {"wet_grass": "yes"}))


def test_the_run_label_says_exact_enumeration_and_method_is_unchanged(asia_smoker):
    assert asia_smoker.method == "nuts"  # read by checks outside the repository
    assert asia_smoker.exact
    first = asia_smoker.report().splitlines()[0]
    assert first.startswith("bayes_net by exact enumeration (method nuts requested): 4 chain"), first
    assert "P(lung=yes)" in asia_smoker.report()
    svi = fit("bayes_net", method="svi", num_samples=50, progress=False)
    assert svi.exact and svi.method == "svi" and "by exact enumeration (method svi requested)" in svi.report()


def test_map_of_a_network_is_labelled_as_the_most_probable_assignment():
    post = fit("bayes_net", data={"evidence": {"smoke": "yes"}, "network": "asia"}, method="map", progress=False)
    assert post.method == "map" and post.exact
    assert "most probable" in post.report().splitlines()[0]
    table = post.summary()
    assert set(table.loc[["P(lung=yes)", "P(lung=no)"], "mean"]) == {0.0, 1.0}


def test_a_sampled_model_is_not_labelled_exact():
    post = fit("coin", method="nuts", num_chains=2, num_samples=50, num_warmup=50, progress=False)
    assert not post.exact
    assert post.report().splitlines()[0].startswith("coin by nuts:")


def test_ppl_fit_writes_the_state_rows_to_summary_csv(tmp_path, capsys):
    import pandas as pd

    from ppl.cli import main

    out = tmp_path / "bn"
    assert main(["fit", "bayes_net", "--network", "asia", "--evidence", "smoke=yes", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "P(lung=yes)" in printed and "by exact enumeration" in printed
    table = pd.read_csv(out / "summary.csv", index_col=0)
    truth = pgmpy_probability(pgmpy_asia(), "lung", "yes", {"smoke": "yes"})
    assert_probability(table, "P(lung=yes)", truth)
    assert_probability(table, "P(lung=no)", 1 - truth)
    assert "lung" not in table.index


# ---- the mechanism: a model declares its states in the infer dict, as plain Pyro ----------------------
PRIOR = torch.tensor([0.2, 0.3, 0.5])


def weather(x, states=("sun", "rain", "snow")):
    kind = pyro.sample("kind", dist.Categorical(PRIOR), infer={"states": list(states)} if states else {})
    pyro.sample("x", dist.Normal(kind.to(torch.get_default_dtype()), 1.0), obs=x)


def exact_kind(x: float) -> np.ndarray:
    post = PRIOR.numpy() * np.exp(-0.5 * (x - np.arange(3)) ** 2)
    return post / post.sum()


def test_pyro_ignores_the_states_key_in_enumeration():
    data = {"x": torch.tensor(1.5)}
    named = TraceEnum_ELBO(max_plate_nesting=0).loss(config_enumerate(weather), lambda **_: None, **data)
    plain = TraceEnum_ELBO(max_plate_nesting=0).loss(config_enumerate(weather), lambda **_: None, states=None, **data)
    assert math.isclose(named, plain, rel_tol=1e-9)
    assert math.isclose(named, -math.log(float(np.sum(PRIOR.numpy() * np.exp(-0.5 * (1.5 - np.arange(3)) ** 2)
                                                     / math.sqrt(2 * math.pi)))), rel_tol=1e-6)


def test_a_user_program_declares_state_names_through_infer():
    post = fit(weather, data={"x": torch.tensor(1.5)}, method="nuts", progress=False)
    assert post.structure.states == {"kind": ["sun", "rain", "snow"]}
    table = post.summary(round_to="none")
    assert list(table.index) == ["P(kind=sun)", "P(kind=rain)", "P(kind=snow)"]
    for state, truth in zip(["sun", "rain", "snow"], exact_kind(1.5)):
        assert_probability(table, f"P(kind={state})", truth)


def test_an_unnamed_categorical_gets_one_row_per_value():
    post = fit(weather, data={"x": torch.tensor(1.5), "states": None}, method="nuts", num_chains=2,
               num_samples=1000, progress=False)
    table = post.summary(round_to="none")
    assert list(table.index) == ["P(kind=0)", "P(kind=1)", "P(kind=2)"]
    for k, truth in enumerate(exact_kind(1.5)):
        assert_probability(table, f"P(kind={k})", truth)


def test_a_wrong_number_of_state_names_is_the_programs_error():
    def two_names(x):
        weather(x, states=("sun", "rain"))

    with pytest.raises(ModelError, match="kind.*2 state names.*3 values"):
        fit(two_names, data={"x": torch.tensor(1.5)}, method="nuts", progress=False)


def test_state_names_are_coordinates_and_attributes_in_arviz(asia_smoker):
    idata = asia_smoker.to_arviz()
    posterior = idata.posterior
    assert list(posterior["lung_state"].values) == ["yes", "no"]
    assert posterior["lung"].attrs["flag_meanings"] == "yes no"
    assert list(posterior["lung"].attrs["flag_values"]) == [0, 1]
    # indices to names, vectorised: the draws as state names
    names = posterior["lung_state"].values[posterior["lung"].values.astype(int)]
    assert set(np.unique(names)) == {"yes", "no"}
    assert list(idata.observed_data["smoke_state"].values) == ["yes", "no"]


def test_the_demo_table_groups_state_rows_by_site():
    import pandas as pd

    from ppl.report import MAX_SITE_ROWS, SHOWN_SITE_ROWS, summary_table

    rows = [f"P(z[{i}]={s})" for i in range(10) for s in ("a", "b")] + ["P(lung=yes)", "P(lung=no)"]
    table = pd.DataFrame({"mean": np.linspace(0, 1, len(rows)), "hdi_3%": np.nan}, index=rows)
    html = summary_table(table)
    assert 20 > MAX_SITE_ROWS  # z has 20 rows: only its first few are shown, lung's both
    assert html.count("P(z[") == SHOWN_SITE_ROWS
    assert "P(lung=yes)" in html and "P(lung=no)" in html
    assert "hdi_3%" not in html  # a column with no value is left out
