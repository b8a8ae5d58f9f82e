"""Discrete Bayesian networks: exact queries against closed forms, brute-force joints and pgmpy's variable
elimination; sampling within its reported standard error; MPE; BIF and pgmpy import; bad input."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO, config_enumerate
from pyro.infer.inspect import get_dependencies

import ppl_models
from conftest import pgmpy_sprinkler
from ppl_models import DataError
from ppl_models import bayes_net as bn
from ppl_models.bayes_net import BayesNet, load, parse_bif, parse_evidence, read_bif, to_bif

TOL = 1e-6


# ---- oracles -----------------------------------------------------------------------------------
def brute_joint(net: BayesNet, evidence: dict):
    """Every assignment consistent with the evidence and its joint probability (product of CPT entries)."""
    rows = []
    for values in itertools.product(*(range(net.cardinality(v)) for v in net.order)):
        x = dict(zip(net.order, values))
        if any(net.index[v][s] != x[v] for v, s in evidence.items()):
            continue
        p = 1.0
        for v in net.order:
            p *= float(net.cpts[v][tuple(x[q] for q in net.parents[v]) + (x[v],)])
        rows.append((x, p))
    return rows


def brute_marginals(net: BayesNet, evidence: dict) -> dict:
    rows = brute_joint(net, evidence)
    z = sum(p for _, p in rows)
    out = {v: {s: 0.0 for s in net.states[v]} for v in net.order if v not in evidence}
    for x, p in rows:
        for v in out:
            out[v][net.states[v][x[v]]] += p / z
    return out


def assert_marginals_close(mine: dict, truth: dict, tol: float = TOL) -> None:
    assert set(mine) == set(truth)
    for v in truth:
        assert set(mine[v]) == set(truth[v]), v
        for s in truth[v]:
            assert abs(mine[v][s] - truth[v][s]) < tol, (v, s, mine[v][s], truth[v][s])


def pgmpy_marginals(model, variables, evidence) -> dict:
    from pgmpy.inference import VariableElimination

    ve = VariableElimination(model)
    out = {}
    for v in variables:
        q = ve.query([v], evidence=evidence or None, show_progress=False)
        out[v] = {str(s): float(q.values[i]) for i, s in enumerate(q.state_names[v])}
    return out


def pgmpy_example(name: str):
    pytest.importorskip("pgmpy")
    from pgmpy.utils import get_example_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_example_model(name)


# ---- the disease test: the closed form ------------------------------------------------------
def test_disease_test_posterior_is_bayes_rule():
    net = load("disease_test")
    post = net.query(["disease"], {"test": "positive"})
    assert abs(post["disease"]["yes"] - 0.0095 / 0.059) < TOL
    assert abs(post["disease"]["no"] - 0.0495 / 0.059) < TOL
    assert abs(net.evidence_probability({"test": "positive"}) - 0.059) < TOL
    assert abs(net.evidence_probability({"test": "positive"}, log=True) - math.log(0.059)) < TOL
    assert net.mpe({"test": "positive"}) == {"disease": "no"}
    assert net.evidence_probability({}) == 1.0


def test_evidence_probability_agrees_with_trace_enum_elbo():
    """Pyro's own TraceEnum_ELBO with an empty guide is exactly -log P(evidence): a second route."""
    net = load("asia")
    evidence = {"xray": "yes", "dysp": "no"}
    loss = TraceEnum_ELBO(max_plate_nesting=0).loss(config_enumerate(net.model, default="parallel"),
                                                    lambda evidence: None, evidence)
    assert abs(net.evidence_probability(evidence, log=True) + loss) < TOL
    truth = sum(p for _, p in brute_joint(net, evidence))
    assert abs(net.evidence_probability(evidence) - truth) < TOL


# ---- exact marginals against brute force and pgmpy -------------------------------------------------
SPRINKLER_EVIDENCE = [{}, {"wet_grass": "yes"}, {"wet_grass": "yes", "sprinkler": "no"},
                      {"cloudy": "no", "wet_grass": "no"}, {"rain": "yes"}]
ASIA_EVIDENCE = [{}, {"xray": "yes"}, {"dysp": "yes", "smoke": "yes"}, {"asia": "yes", "xray": "yes", "dysp": "no"},
                 {"either": "no", "bronc": "yes"}, {"tub": "yes", "lung": "no"}]


@pytest.mark.parametrize("name, evidence", [("sprinkler", e) for e in SPRINKLER_EVIDENCE]
                         + [("asia", e) for e in ASIA_EVIDENCE]
                         + [("student", {}), ("student", {"letter": "strong"}),
                            ("student", {"letter": "weak", "sat": "high"}), ("student", {"grade": "C"})])
def test_exact_marginals_equal_brute_force(name, evidence):
    net = load(name)
    assert_marginals_close(net.query(None, evidence), brute_marginals(net, evidence))


@pytest.mark.parametrize("evidence", SPRINKLER_EVIDENCE)
def test_sprinkler_equals_pgmpy_variable_elimination(evidence):
    net = load("sprinkler")
    hidden = [v for v in net.order if v not in evidence]
    assert_marginals_close(net.query(hidden, evidence), pgmpy_marginals(pgmpy_sprinkler(), hidden, evidence))


@pytest.mark.parametrize("evidence", ASIA_EVIDENCE)
def test_asia_equals_pgmpy_variable_elimination(evidence):
    net = load("asia")  # our BIF file, read by our reader; pgmpy reads its own copy with its own reader
    hidden = [v for v in net.order if v not in evidence]
    assert_marginals_close(net.query(hidden, evidence), pgmpy_marginals(pgmpy_example("asia"), hidden, evidence))


@pytest.mark.parametrize("evidence", [{}, {"HRBP": "HIGH", "BP": "LOW"},
                                      {"CVP": "HIGH", "SAO2": "LOW", "HISTORY": "TRUE", "PRESS": "ZERO"}])
def test_alarm_exact_queries_equal_pgmpy(evidence):
    net = load("alarm")
    assert len(net.order) == 37 and len(net.edges) == 46
    hidden = [v for v in net.order if v not in evidence]
    mine = net.query(hidden, evidence)
    assert_marginals_close(mine, pgmpy_marginals(pgmpy_example("alarm"), hidden, evidence))


def test_query_returns_requested_variables_and_point_masses_for_evidence():
    net = load("sprinkler")
    out = net.query(["wet_grass", "rain"], {"wet_grass": "yes"})
    assert list(out) == ["wet_grass", "rain"]
    assert out["wet_grass"] == {"yes": 1.0, "no": 0.0}
    assert out.method == "exact" and out.ess is None and out.stderr is None
    assert list(net.query("rain")) == ["rain"]
    # evidence may name states by index
    assert net.query("rain", {"wet_grass": 0}) == net.query("rain", {"wet_grass": "yes"})


# ---- the most probable explanation ---------------------------------------------------------------
@pytest.mark.parametrize("name, evidence", [("asia", {"xray": "yes", "dysp": "yes"}), ("asia", {}),
                                            ("student", {"letter": "strong"}), ("sprinkler", {"wet_grass": "yes"})])
def test_mpe_is_the_argmax_of_the_joint(name, evidence):
    net = load(name)
    rows = brute_joint(net, evidence)
    best = max(p for _, p in rows)
    found = net.mpe(evidence)
    assert set(found) == {v for v in net.order if v not in evidence}
    x = {v: net.index[v][s] for v, s in {**found, **evidence}.items()}
    p = next(p for y, p in rows if y == x)
    assert p == pytest.approx(best, rel=1e-9)


def test_mpe_on_alarm_attains_the_max_product_value_and_no_single_change_improves_it():
    """2^37 assignments are too many to list (and pgmpy's map_query builds the joint of all 35 query
    variables): the MPE's joint probability must equal max_x P(x, e) from a max-product contraction of the
    network's factors, and changing any one variable must not raise it."""
    from pyro.ops.einsum import contract

    from ppl_models.bayes_net.queries import _enumerated_trace

    net = load("alarm")
    evidence = {"HRBP": "HIGH", "BP": "LOW"}
    found = net.mpe(evidence)

    def log_joint(x):
        return sum(math.log(max(float(net.cpts[v][tuple(x[q] for q in net.parents[v]) + (x[v],)]), 1e-300))
                   for v in net.order)

    x = {v: net.index[v][s] for v, s in {**found, **evidence}.items()}
    factors = list(_enumerated_trace(net, net.check_evidence(evidence))[0].values())
    best = contract(",".join(f._pyro_dims for f in factors) + "->", *factors, backend="pyro.ops.einsum.torch_map")
    assert log_joint(x) == pytest.approx(float(best), abs=1e-9)
    for v in found:
        for k in range(net.cardinality(v)):
            assert log_joint({**x, v: k}) <= log_joint(x) + 1e-12


# ---- sampling: within the reported standard error -----------------------------------------------
@pytest.mark.parametrize("method", ["importance", "ancestral"])
def test_sampling_within_reported_standard_error(method):
    net = load("asia")
    evidence = {"xray": "yes", "dysp": "yes"}
    exact = net.query(None, evidence)
    approx = net.query(None, evidence, method=method, num_samples=20_000, seed=1)
    assert approx.method == method and approx.num_samples == 20_000
    assert 0 < approx.ess <= 20_000
    for v in exact:
        for s in exact[v]:
            se = approx.stderr[v][s]
            if exact[v][s] in (0.0, 1.0):  # deterministic: no spread, exact answer
                assert approx[v][s] == pytest.approx(exact[v][s], abs=1e-12)
                continue
            assert se > 0
            assert abs(approx[v][s] - exact[v][s]) < 4 * se, (v, s)


def test_ancestral_ess_counts_the_accepted_draws_and_importance_beats_it():
    net = load("disease_test")
    evidence = {"test": "positive"}  # P = 0.059: about 6% of forward draws survive rejection
    anc = net.query("disease", evidence, method="ancestral", num_samples=10_000, seed=0)
    draws = net.sample(10_000, seed=0)
    assert anc.ess == pytest.approx(sum(s == "positive" for s in draws["test"]))
    imp = net.query("disease", evidence, method="importance", num_samples=100_000, seed=0)
    # likelihood weights are 0.95 (disease) or 0.05 (none): ESS / n -> (E w)^2 / E w^2; by the delta method
    # the sd of ESS / n is about 0.0046 at n = 100,000 (20 seeds agreed), so 4 sd is the tolerance
    expected = 0.059 ** 2 / (0.01 * 0.95 ** 2 + 0.99 * 0.05 ** 2)
    assert abs(imp.ess / 100_000 - expected) < 4 * 0.0046
    assert imp.ess / 100_000 > 4 * anc.ess / 10_000  # per draw


def test_reported_standard_error_is_calibrated():
    """Across independent runs the estimates spread as much as the reported standard error says."""
    net = load("disease_test")
    truth = 0.0095 / 0.059
    estimates, errors = [], []
    for seed in range(60):
        q = net.query("disease", {"test": "positive"}, method="importance", num_samples=2000, seed=seed)
        estimates.append(q["disease"]["yes"])
        errors.append(q.stderr["disease"]["yes"])
    spread, reported = np.std(estimates, ddof=1), np.mean(errors)
    # the sample sd of 60 draws is within ~20% of the true sd with high probability
    assert 0.7 < spread / reported < 1.3
    assert abs(np.mean(estimates) - truth) < 4 * reported / math.sqrt(60)


def test_forward_sampling_matches_the_prior_marginals():
    net = load("student")
    draws = net.sample(20_000, seed=3)
    prior = net.query(None)
    for v in net.order:
        for s, p in prior[v].items():
            freq = np.mean([x == s for x in draws[v]])
            assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / 20_000) + 1e-12


def test_sampling_is_reproducible_by_seed():
    net = load("asia")
    a = net.query(None, {"xray": "yes"}, method="importance", num_samples=500, seed=7)
    b = net.query(None, {"xray": "yes"}, method="importance", num_samples=500, seed=7)
    assert a == b


# ---- the Pyro program ---------------------------------------------------------------------------
def test_program_has_one_site_per_node_in_topological_order_with_evidence_observed():
    net = load("asia")
    trace = poutine.trace(net.model).get_trace({"xray": "yes"})
    sites = [n for n, s in trace.nodes.items() if s["type"] == "sample"]
    assert sites == net.order
    assert trace.nodes["xray"]["is_observed"] and not trace.nodes["either"]["is_observed"]
    seen = set()
    for v in sites:
        assert set(net.parents[v]) <= seen
        seen.add(v)


def test_program_dependencies_are_the_dag():
    net = load("asia")
    deps = get_dependencies(net.model, (), {"evidence": {"xray": "yes"}})["prior_dependencies"]
    for v in net.order:
        assert set(deps[v]) - {v} == set(net.parents[v]), v


# ---- through inference.fit -----------------------------------------------------------------------
def test_registered_with_default_data():
    assert "bayes_net" in ppl_models.names()
    spec = ppl_models.get("bayes_net")
    assert spec.engines == ("nuts", "hmc", "svi", "map")
    data = spec.validate(spec.default_data(seed=0))
    assert data == {"evidence": {"wet_grass": "yes"}, "network": "sprinkler"}
    assert load("asia").spec.validate({"evidence": {"xray": 0}}) == {"evidence": {"xray": 0}}


@pytest.mark.parametrize("method", ["nuts", "hmc", "svi"])
def test_fit_draws_follow_the_exact_posterior(method):
    from inference import fit

    evidence = {"xray": "yes", "dysp": "yes"}
    options = {"num_chains": 2, "num_samples": 1000} if method != "svi" else {"num_samples": 2000}
    post = fit("bayes_net", data={"evidence": evidence, "network": "asia"}, method=method, progress=False, **options)
    net = load("asia")
    exact = net.query(None, evidence)
    assert set(post.samples) == set(exact)
    for v, probs in exact.items():
        draws = post.samples[v].ravel()
        n = draws.size
        for s, p in probs.items():
            freq = np.mean(draws == net.index[v][s])
            assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-12, (v, s, freq, p)


def test_fit_map_is_the_mpe_and_mle_does_not_apply():
    from inference import InputError, fit

    evidence = {"xray": "yes", "dysp": "yes"}
    post = fit("bayes_net", data={"evidence": evidence, "network": "asia"}, method="map", progress=False)
    net = load("asia")
    assert {v: net.states[v][int(x.item())] for v, x in post.samples.items()} == net.mpe(evidence)
    with pytest.raises(InputError, match="mle"):
        fit("bayes_net", data={"evidence": evidence, "network": "asia"}, method="mle", progress=False)


def test_fit_on_a_network_spec_and_arviz_log_likelihood():
    from inference import fit

    net = load("sprinkler")
    post = fit(net.spec, data={"evidence": {"wet_grass": "yes"}}, method="nuts", num_chains=2, num_samples=50,
               progress=False)
    idata = post.to_arviz()
    ll = idata.log_likelihood["wet_grass"].values
    assert ll.shape == (2, 50)
    assert np.allclose(ll, math.log(net.evidence_probability({"wet_grass": "yes"})))


def test_fit_rejects_bad_evidence_naming_it():
    from inference import fit

    with pytest.raises(DataError, match="unknown variable 'wet'"):
        fit("bayes_net", data={"evidence": {"wet": "yes"}}, progress=False)
    with pytest.raises(DataError, match="'wet_grass' has no state 'damp'"):
        fit("bayes_net", data={"evidence": {"wet_grass": "damp"}}, progress=False)
    with pytest.raises(DataError, match="unknown network 'nope'"):
        fit("bayes_net", data={"network": "nope"}, progress=False)
    with pytest.raises(DataError, match="evidence: unknown variable"):
        fit(load("asia").spec, data={"evidence": {"wet_grass": "yes"}}, progress=False)


# ---- parse_evidence (the command line's --evidence) ----------------------------------------------
def test_parse_evidence():
    assert parse_evidence(["xray=yes", " dysp = no "], "asia") == {"xray": "yes", "dysp": "no"}
    assert parse_evidence([], load("asia")) == {}
    with pytest.raises(DataError, match="unknown variable 'xrays'"):
        parse_evidence(["xrays=yes"], "asia")
    with pytest.raises(DataError, match="'xray' has no state 'maybe'; its states are yes, no"):
        parse_evidence(["xray=maybe"], "asia")
    with pytest.raises(DataError, match="expected VARIABLE=STATE"):
        parse_evidence(["xray"], "asia")
    with pytest.raises(DataError, match="given twice"):
        parse_evidence(["xray=yes", "xray=no"], "asia")


# ---- BIF and pgmpy import ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["asia", "alarm", "child", "insurance", "hailfinder"])
def test_bif_reader_agrees_with_pgmpy_reader(name):
    theirs = pgmpy_example(name)
    net = load(name)
    assert set(net.order) == set(theirs.nodes())
    for cpd in theirs.get_cpds():
        v = cpd.variable
        assert net.states[v] == [str(s) for s in cpd.state_names[v]]
        assert net.parents[v] == list(cpd.variables[1:])
        values = cpd.get_values()
        values = values / values.sum(0)
        assert np.allclose(net.cpts[v].numpy().reshape(-1, net.cardinality(v)), values.T, atol=1e-12)


def test_from_pgmpy_and_bif_round_trip():
    ours = bn.from_pgmpy(pgmpy_example("asia"))
    net = load("asia")
    evidence = {"xray": "yes", "smoke": "no"}
    assert_marginals_close(ours.query(None, evidence), net.query(None, evidence), 1e-12)
    again = parse_bif(to_bif(net))
    assert again.order == net.order and again.parents == net.parents and again.states == net.states
    for v in net.order:
        assert torch.equal(again.cpts[v], net.cpts[v])


def test_bif_table_default_and_comments(tmp_path):
    text = """
    /* a block comment */
    network demo { property author x; }
    variable a { type discrete [ 2 ] { t, f }; property p 1; }
    variable b { type discrete [ 3 ] { lo, mid, hi }; }  // trailing comment
    probability ( a ) { table 0.25, 0.75; }
    probability ( b | a ) {
      (t) 0.1, 0.2, 0.7;
      default 0.5, 0.25, 0.25;
    }
    """
    path = tmp_path / "demo.bif"
    path.write_text(text)
    net = read_bif(path)
    assert net.name == "demo"
    assert net.cpts["b"].tolist() == [[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]]
    # a conditional `table`: the child's state slowest, as pgmpy reads it
    net2 = parse_bif("""variable a { type discrete [ 2 ] { t, f }; }
    variable b { type discrete [ 2 ] { y, n }; }
    probability ( a ) { table 0.5, 0.5; }
    probability ( b | a ) { table 0.9, 0.2, 0.1, 0.8; }""")
    assert net2.cpts["b"].tolist() == [[0.9, 0.1], [0.2, 0.8]]


def test_load_unknown_names_the_known_networks(tmp_path):
    with pytest.raises(DataError, match="unknown network 'nope'.*disease_test, sprinkler, student, asia, alarm"):
        load("nope")
    with pytest.raises(DataError, match="no such BIF file"):
        load(str(tmp_path / "missing.bif"))
    assert load("asia") is load("asia")


# ---- bad networks: one clear error each ----------------------------------------------------------
YN = ["yes", "no"]


def test_cpt_row_not_summing_to_one():
    with pytest.raises(DataError, match=r"b: CPT the row for a=no sums to 0.9, not 1"):
        BayesNet({"a": YN, "b": YN}, {"b": ["a"]}, {"a": [0.5, 0.5], "b": [[0.5, 0.5], [0.3, 0.6]]})
    with pytest.raises(DataError, match="a: CPT its table sums to 1.2"):
        parse_bif("""variable a { type discrete [ 2 ] { yes, no }; }
        probability ( a ) { table 0.6, 0.6; }""")


def test_cycle():
    cycles = "a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c"
    with pytest.raises(DataError, match=f"network: the graph has a cycle: ({cycles})"):
        BayesNet({"a": YN, "b": YN, "c": YN, "d": YN}, {"a": ["c"], "b": ["a"], "c": ["b"], "d": ["a"]},
                 {"a": [[1, 0], [0, 1]], "b": [[1, 0], [0, 1]], "c": [[1, 0], [0, 1]], "d": [[1, 0], [0, 1]]})
    with pytest.raises(DataError, match="own parent"):
        BayesNet({"a": YN}, {"a": ["a"]}, {"a": [[1, 0], [0, 1]]})


def test_missing_parent():
    with pytest.raises(DataError, match="b: parent 'z' is not a variable of the network"):
        BayesNet({"a": YN, "b": YN}, {"b": ["z"]}, {"a": [0.5, 0.5], "b": [[1, 0], [0, 1]]})
    with pytest.raises(DataError, match="b: parent 'z' is not a declared variable"):
        parse_bif("""variable b { type discrete [ 2 ] { yes, no }; }
        probability ( b | z ) { (yes) 0.5, 0.5; (no) 0.5, 0.5; }""")
    with pytest.raises(DataError, match="b: CPT has no row for a=no"):
        parse_bif("""variable a { type discrete [ 2 ] { yes, no }; }
        variable b { type discrete [ 2 ] { yes, no }; }
        probability ( a ) { table 0.5, 0.5; }
        probability ( b | a ) { (yes) 0.5, 0.5; }""")


def test_unknown_state():
    net = load("asia")
    with pytest.raises(DataError, match="evidence: 'xray' has no state 'maybe'"):
        net.query(None, {"xray": "maybe"})
    with pytest.raises(DataError, match="evidence: 'xray' has no state 2"):
        net.mpe({"xray": 2})
    with pytest.raises(DataError, match="unknown variable 'Xray'"):
        net.evidence_probability({"Xray": "yes"})
    with pytest.raises(DataError, match="b: CPT row names state 'maybe' of parent 'a'"):
        parse_bif("""variable a { type discrete [ 2 ] { yes, no }; }
        variable b { type discrete [ 2 ] { yes, no }; }
        probability ( a ) { table 0.5, 0.5; }
        probability ( b | a ) { (yes) 0.5, 0.5; (maybe) 0.5, 0.5; }""")


def test_other_bad_networks_and_queries():
    with pytest.raises(DataError, match=r"b: CPT has shape \(3,\), expected \(2, 2\)"):
        BayesNet({"a": YN, "b": YN}, {"b": ["a"]}, {"a": [0.5, 0.5], "b": [0.5, 0.5, 0.0]})
    with pytest.raises(DataError, match="b: has no conditional probability table"):
        BayesNet({"a": YN, "b": YN}, {"b": ["a"]}, {"a": [0.5, 0.5]})
    with pytest.raises(DataError, match="negative"):
        BayesNet({"a": YN}, {}, {"a": [1.5, -0.5]})
    with pytest.raises(DataError, match="declares 3 states but lists 2"):
        parse_bif("variable a { type discrete [ 3 ] { yes, no }; } probability ( a ) { table 0.5, 0.5; }")
    net = load("asia")
    with pytest.raises(DataError, match="variables: unknown variable 'nope'"):
        net.query(["nope"])
    with pytest.raises(DataError, match="method: unknown query method 'gibbs'"):
        net.query(None, method="gibbs")
    with pytest.raises(DataError, match="num_samples: must be a positive whole number"):
        net.query(None, method="importance", num_samples=0)
    impossible = {"either": "no", "tub": "yes"}  # either = tub OR lung
    with pytest.raises(DataError, match="has probability zero"):
        net.query(None, impossible)
    assert net.evidence_probability(impossible) == 0.0
    with pytest.raises(DataError, match="num_samples: none of the 50 draws"):
        net.query(None, {"asia": "yes", "tub": "yes", "xray": "no"}, method="ancestral", num_samples=50, seed=0)


def test_too_many_unobserved_nodes_for_enumeration_is_a_clear_error():
    n = 70
    chain = BayesNet({f"x{i}": YN for i in range(n)}, {f"x{i}": [f"x{i-1}"] for i in range(1, n)},
                     {f"x{i}": ([[0.9, 0.1], [0.2, 0.8]] if i else [0.5, 0.5]) for i in range(n)})
    with pytest.raises(DataError, match="70 unobserved nodes; exact enumeration handles at most 64"):
        chain.query(["x0"])
    q = chain.query(["x0"], {"x69": "yes"}, method="importance", num_samples=2000, seed=0)
    assert q.ess > 0
    observed = {f"x{i}": "yes" for i in (0, 2, 10, 20, 30, 40, 50, 60)}  # 62 unobserved
    exact = chain.query(["x1"], observed)
    assert abs(exact["x1"]["yes"] - 0.9 * 0.9 / (0.9 * 0.9 + 0.1 * 0.2)) < TOL  # x0 and x2 observed 'yes'


# ---- pointwise log-likelihood by contraction (inference/predictive.py) ------------------------------
def test_log_likelihood_by_contraction_equals_the_dense_sum(monkeypatch):
    import inference.predictive as pred
    from inference import fit

    post = fit("bayes_net", data={"evidence": {"xray": "yes", "dysp": "yes"}, "network": "asia"}, method="nuts",
               num_chains=2, num_samples=10, progress=False)
    dense, note = pred.log_likelihood(post.model, post.data, post.structure, post.samples)
    assert note is None
    monkeypatch.setattr(pred, "_DENSE_LIMIT", 0)  # force the contraction path
    contracted, note = pred.log_likelihood(post.model, post.data, post.structure, post.samples)
    assert note is None and set(contracted) == {"xray", "dysp"}
    for k in dense:
        assert contracted[k].shape == (2, 10)
        assert np.allclose(contracted[k], dense[k], atol=1e-12)
    net = load("asia")  # xray has no observed ancestor: its term is log P(xray = yes)
    assert np.allclose(dense["xray"], net.evidence_probability({"xray": "yes"}, log=True), atol=TOL)


def test_alarm_fit_has_a_log_likelihood():
    from inference import fit

    evidence = {"HRBP": "HIGH", "BP": "LOW"}
    post = fit("bayes_net", data={"evidence": evidence, "network": "alarm"}, method="nuts", num_chains=2,
               num_samples=20, progress=False)
    ll = post.to_arviz(prior=False, predictive=False).log_likelihood
    assert set(ll.data_vars) == {"HRBP", "BP"} and ll["HRBP"].shape == (2, 20)
    assert np.allclose(ll["HRBP"].values, load("alarm").evidence_probability({"HRBP": "HIGH"}, log=True), atol=TOL)
