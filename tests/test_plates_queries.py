"""The factorization view and independence queries, checked against hand-written products and against
d-separation on hand-built DAGs (networkx, and pgmpy's own implementation as a second opinion)."""

from __future__ import annotations

import itertools
import re
import sys
from collections import Counter
from pathlib import Path

import networkx as nx
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import plate_standins as S  # noqa: E402

import plates  # noqa: E402
from plates import PlateError, parse_query  # noqa: E402


def canonical(factorization: str) -> tuple[frozenset, frozenset, Counter, set]:
    """(joint variables, conditioning variables, factors as (head, parents) counts, product indices)."""
    lhs, rhs = factorization.split(" = ")
    joint, _, cond = lhs[2:-1].partition("|")
    factors = Counter()
    for head, given in re.findall(r"p(?:_\w+)?\(([^|)]*)(?:\|([^)]*))?\)", rhs):
        factors[(head.strip(), frozenset(g.strip() for g in given.split(",") if g.strip()))] += 1
    return (frozenset(v.strip() for v in joint.split(",")), frozenset(v.strip() for v in cond.split(",") if v.strip()),
            factors, set(re.findall(r"prod_(\w+)", rhs)))


def each_factor_inside_its_products(factorization: str) -> bool:
    """A factor whose head carries index j comes after a prod_j (products run to the end or to ']')."""
    rhs = factorization.split(" = ")[1]
    open_ = []  # (index, bracket depth)
    depth = 0
    for token in re.findall(r"prod_\w+|p(?:_\w+)?\([^)]*\)|\[|\]", rhs):
        if token == "[":
            depth += 1
        elif token == "]":
            depth -= 1
            open_ = [(i, d) for i, d in open_ if d <= depth]
        elif token.startswith("prod_"):
            open_.append((token[5:], depth))
        else:
            head = re.match(r"p(?:_\w+)?\(([^|)]*)", token).group(1).strip()
            indices = head.split("_", 1)[1] if "_" in head else ""
            if not all(any(i == letter for letter, _ in open_) for i in indices):
                return False
    return True


# --- the factorization view ------------------------------------------------------------------------

def mixture():
    flips = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    return plates.graph(S.coin_mixture, {"flips": flips}, **S.MIXTURE_DISPLAY)


def test_mixture_of_bernoullis_factorization_matches_the_course():
    expected = "p(x, z, theta, pi) = p(pi) prod_k p(theta_k) prod_j p(z_j | pi) p(x_j | theta, z_j)"
    got = mixture().factorization()
    assert canonical(got) == canonical(expected)
    assert each_factor_inside_its_products(got)
    # a wrong product must not pass the comparison
    assert canonical(got) != canonical("p(x, z, theta, pi) = p(pi) prod_k p(theta_k) prod_j p(z_j | pi) p(x_j | z_j)")
    assert not each_factor_inside_its_products("p(x, z) = p(z_j) prod_j p(x_j | z_j)")


def test_mixture_factorization_in_latex():
    tex = mixture().factorization(latex=True)
    assert tex.startswith(r"p(x, z, \theta, \pi) = ")
    assert r"\prod_{k=1}^{K} p(\theta_{k})" in tex
    assert r"\prod_{j=1}^{N}" in tex and r"p(x_{j} \mid \theta, z_{j})" in tex and r"p(z_{j} \mid \pi)" in tex


def test_other_factorizations():
    g = plates.graph(S.linear_regression, {"X": torch.randn(5, 2), "y": torch.randn(5)}, labels={"X": "x"})
    assert canonical(g.factorization()) == canonical(
        "p(y, intercept, coef, sigma | x) = p(intercept) p(coef) p(sigma) prod_i p(y_i | x_i, intercept, coef, sigma)")
    g = plates.graph(S.gmm, {"x": torch.randn(6)}, **S.GMM_DISPLAY)
    assert canonical(g.factorization()) == canonical(
        "p(x, z, pi, mu, sigma) = p(pi) prod_k p(mu_k) p(sigma_k) prod_i p(z_i | pi) p(x_i | mu, sigma, z_i)")
    assert each_factor_inside_its_products(g.factorization())
    g = plates.graph(S.vae, {"x": torch.ones(3, 4)}, **S.VAE_DISPLAY)
    assert g.factorization() == "p(x, z) = prod_i p(z_i) p_theta(x_i | z_i)"
    g = plates.graph("coin", {"flips": [1, 0]})
    assert g.factorization() == "p(flips, p) = p(p) prod_i p(flips_i | p)"


def test_sibling_plates_in_one_plate_read_by_the_documented_rule():
    """Two plates side by side inside a third (a new user's program): by docs/plates.md's rule a product
    covers the factor right after it, or its bracket, and the last one runs to the end, so the product
    over k covers p(theta_dk) alone and the one over d everything after it."""
    import pyro
    import pyro.distributions as dist

    def model(x):
        with pyro.plate("D", 3, dim=-2):
            with pyro.plate("K", 4, dim=-1):
                theta = pyro.sample("theta", dist.Normal(0.0, 1.0))
            with pyro.plate("N", 6, dim=-1):
                pyro.sample("x", dist.Normal(theta.sum(-1, keepdim=True), 1.0), obs=x)

    g = plates.graph(model, {"x": torch.zeros(3, 6)})
    assert g.factorization() == "p(x, theta) = prod_d prod_k p(theta_dk) prod_i p(x_di | theta_d)"
    assert each_factor_inside_its_products(g.factorization())


@pytest.mark.parametrize("network", [S.SPRINKLER, S.ASIA], ids=["sprinkler", "asia"])
def test_bayes_net_factorization_is_the_chain_rule_of_the_dag(network):
    g = plates.graph(S.bayes_net_program(network))
    joint, cond, factors, prods = canonical(g.factorization())
    assert joint == frozenset(network) and not cond and not prods
    assert factors == Counter({(n, frozenset(parents)): 1 for n, (parents, _) in network.items()})


# --- d-separation ----------------------------------------------------------------------------------

def _nx_d_separated(G, xs, ys, zs) -> bool:
    f = getattr(nx, "is_d_separator", None) or nx.d_separated
    return f(G, set(xs), set(ys), set(zs))


@pytest.mark.parametrize("network", [S.SPRINKLER, S.ASIA], ids=["sprinkler", "asia"])
def test_d_separation_equals_networkx_and_pgmpy_on_the_hand_built_dag(network):
    from pgmpy.base import DAG

    last = list(network)[-1]
    g = plates.graph(S.bayes_net_program(network), {"evidence": {last: 0}})
    dag = S.hand_built_dag(network)
    pg_dag = DAG(list(dag.edges))
    names = list(network)
    checked = separated = 0
    for x, y in itertools.combinations(names, 2):
        rest = [n for n in names if n not in (x, y)]
        for k in range(len(rest) + 1):
            for given in itertools.combinations(rest, k):
                ours = g.d_separated(x, y, list(given))
                assert ours == _nx_d_separated(dag, [x], [y], given), (x, y, given)
                assert ours == (not pg_dag.is_dconnected(x, y, observed=list(given))), (x, y, given)
                checked += 1
                separated += ours
    assert checked == (28 * 64 if network is S.ASIA else 6 * 4)
    assert 0 < separated < checked  # both answers occur


def test_textbook_answers_on_asia_and_sprinkler():
    asia = plates.graph(S.bayes_net_program(S.ASIA))
    assert asia.d_separated("tub", "smoke")  # independent causes
    assert not asia.d_separated("tub", "smoke", "dysp")  # explaining away through a descendant of either
    assert asia.d_separated("xray", "dysp", "either")
    assert not asia.d_separated("xray", "dysp")
    assert asia.d_separated(["asia", "tub"], ["smoke", "bronc"], [])
    sprinkler = plates.graph(S.bayes_net_program(S.SPRINKLER))
    assert sprinkler.d_separated("sprinkler", "rain", "cloudy")
    assert not sprinkler.d_separated("sprinkler", "rain", ["cloudy", "wet_grass"])
    assert asia.markov_blanket("either") == {"tub", "lung", "xray", "dysp", "bronc"}
    assert sprinkler.markov_blanket("cloudy") == {"sprinkler", "rain"}


def unrolled_mixture_dag(K: int, N: int) -> nx.DiGraph:
    """The mixture unrolled by hand: theta[k] -> x[j] for every k, pi -> z[j] -> x[j]."""
    G = nx.DiGraph()
    for j in range(1, N + 1):
        G.add_edge("pi", f"z[{j}]")
        G.add_edge(f"z[{j}]", f"flips[{j}]")
        for k in range(1, K + 1):
            G.add_edge(f"theta[{k}]", f"flips[{j}]")
    return G


def test_unrolled_queries_on_the_mixture():
    g = mixture()
    U = g.unrolled()
    hand = unrolled_mixture_dag(2, 5)
    assert set(U.subgraph([n for n in U if U.nodes[n]["kind"] != "hyperparameter"]).edges) == set(hand.edges)
    thetas = ["theta[1]", "theta[2]"]
    cases = [
        ("flips[1]", "flips[2]", thetas + ["pi"], True),
        ("flips[1]", "flips[2]", thetas, False),  # open through pi and the z's
        ("flips[1]", "flips[2]", ["z[1]", "z[2]"], False),  # open through theta
        ("flips[1]", "flips[2]", thetas + ["z[1]"], True),
        ("z[1]", "z[2]", ["pi"], True),
        ("z[1]", "theta[1]", [], True),
        ("z[1]", "theta[1]", ["flips[1]"], False),  # explaining away
    ]
    for x, y, given, answer in cases:
        assert g.d_separated(x, y, given) is answer, (x, y, given)
        assert _nx_d_separated(hand, [x], [y], given) is answer
    assert g.query("flips[1] _|_ flips[2] | theta[1], theta[2], pi") is True
    assert g.query("flips ⊥ pi | z") is True  # the plate graph
    assert g.query("flips _|_ pi") is False
    assert g.markov_blanket("z") == {"pi", "flips", "theta"}
    assert g.markov_blanket("theta") == {"flips", "z"}  # alpha and beta are constants, left out
    assert g.markov_blanket("z[2]") == {"pi", "flips[2]", "theta[1]", "theta[2]"}


def test_constants_are_always_given():
    # alpha -> p and alpha is fixed: two coins sharing alpha are not dependent through it
    import pyro
    import pyro.distributions as dist

    def two_coins(a=None, b=None, alpha: float = 1.0):
        p = pyro.sample("p", dist.Beta(alpha, 1.0))
        q = pyro.sample("q", dist.Beta(alpha, 1.0))
        pyro.sample("a", dist.Bernoulli(p), obs=a)
        pyro.sample("b", dist.Bernoulli(q), obs=b)

    g = plates.graph(two_coins, {"a": torch.tensor(1.0), "b": torch.tensor(0.0)})
    assert ("alpha", "p") in g.networkx.edges and ("alpha", "q") in g.networkx.edges
    assert g.d_separated("a", "b")


def test_parse_query():
    assert parse_query("x _|_ theta | z") == (["x"], ["theta"], ["z"])
    assert parse_query("x[1,2], y ⊥ theta") == (["x[1,2]", "y"], ["theta"], [])
    assert parse_query(" a _|_ b | c, d[3] ") == (["a"], ["b"], ["c", "d[3]"])
    with pytest.raises(PlateError, match="query"):
        parse_query("x independent of y")


def test_bad_queries_name_the_problem():
    g = mixture()
    with pytest.raises(PlateError, match="nope: is not a node"):
        g.d_separated("nope", "z")
    with pytest.raises(PlateError, match=r"z\[9\]: index 9 is outside 1..5 of plate N"):
        g.d_separated("z[9]", "pi")
    assert g.d_separated("z", "flips[1]") is False  # a plain name beside an indexed one: every copy of z
    with pytest.raises(PlateError, match="appears in"):
        g.d_separated("z", "z")
    with pytest.raises(PlateError, match="needs 1 indices"):
        g.d_separated("z[1,1]", "pi")
