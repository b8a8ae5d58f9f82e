"""Issue 22, what a student sees: queries take the names the diagram shows (``x`` for the site ``flips``,
``theta`` for every theta_i), and the diagrams keep every hyperparameter, print constants with three
significant digits, say when an argument is a function of a node, keep the spaces of their SVG text and
write distributions in a readable size.

Every d-separation answer is checked against networkx on the unrolled graph, where a plain name stands for
all the copies of its node.
"""

from __future__ import annotations

import itertools
import re
import sys
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import networkx as nx
import pyro
import pyro.distributions as dist
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import plate_standins as S  # noqa: E402

import plates  # noqa: E402
from plates import PlateError  # noqa: E402
from plates.symbols import number  # noqa: E402

needs_dot = pytest.mark.skipif(plates.dot_program() is None, reason="Graphviz 'dot' is not installed")


# --- the oracle --------------------------------------------------------------------------------------

def oracle(g: plates.PlateGraph, xs, ys, zs) -> bool:
    """networkx's d-separation on the unrolled graph: a plain site name is every copy of its node, an
    indexed one (``flips[2]``) that copy; constants (hyperparameters, parameters, covariates) are given."""
    U = g.unrolled()

    def copies(names) -> set[str]:
        return {n for n in U if n in names or U.nodes[n]["base"] in names}

    X, Y, Z = copies(xs), copies(ys), copies(zs)
    constants = {n for n in U if U.nodes[n]["kind"] in ("hyperparameter", "parameter")
                 or U.nodes[n].get("role") == "covariate"} - X - Y
    separated = getattr(nx, "is_d_separator", None) or nx.d_separated
    return separated(U, X, Y, Z | constants)


@pytest.fixture(scope="module")
def mixture():
    """The registered mixture of Bernoullis: `flips` is drawn as x, theta_i on plate K, z_j and x_j on N."""
    return plates.graph("coin_mixture")


# --- item 4: queries accept the names the diagram shows ------------------------------------------------

def test_the_readme_query_runs_and_answers_as_the_unrolled_graph(tmp_path, capsys, mixture):
    from ppl.cli import main

    target = tmp_path / "somewhere" / "cm.svg"
    code = main(["render", "coin_mixture", "--out", str(target), "--query", "x _|_ theta | z"])
    out, err = capsys.readouterr()
    assert code == 0, err
    # theta -> x is an arrow: given every z, x still depends on the coins' biases
    assert oracle(mixture, {"flips"}, {"theta"}, {"z"}) is False
    assert "x _|_ theta | z: false (d-connected)" in out
    assert target.exists() or target.with_suffix(".dot").exists()


def test_drawn_symbols_site_names_unicode_and_latex_name_the_same_node(mixture):
    g = mixture
    assert g.query("x _|_ theta | z") is g.query("flips _|_ theta | z") is False
    for x, pi in (("x", "pi"), ("flips", "π"), ("x", r"\pi")):
        assert g.d_separated(x, pi, "z") is True  # the tosses see the mixing weights only through z
    assert g.query("x ⊥ π | z") is True
    assert g.query("θ _|_ π") is True and g.query(r"\theta _|_ \pi | x") is False  # explaining away
    assert g.markov_blanket("x") == g.markov_blanket("flips") == {"z", "theta"}
    assert g.markov_blanket("x[3]") == {"z[3]", "theta[1]", "theta[2]"}


def test_plain_names_stand_for_every_copy_next_to_indexed_ones(mixture):
    g = mixture
    assert g.query("x[1] _|_ x[2] | theta, pi") is True
    assert g.query("x[1] _|_ x[2] | theta, pi") is g.query("flips[1] _|_ flips[2] | theta[1], theta[2], pi")
    assert g.query("x[1] _|_ x[2] | theta") is False  # open through pi and the z's
    assert g.d_separated("z", "x[1]") is False  # z[1] -> x[1]
    assert g.d_separated("theta[1]", "z", "pi") is True
    assert g.d_separated("theta[1]", "z", ["pi", "x"]) is False


def small_graphs() -> dict[str, plates.PlateGraph]:
    flips = torch.tensor([1.0, 0.0, 1.0])
    return {
        "mixture": plates.graph(S.coin_mixture, {"flips": flips}, **S.MIXTURE_DISPLAY),
        "gmm": plates.graph(S.gmm, {"x": torch.randn(3)}, **S.GMM_DISPLAY),
        "regression": plates.graph(S.linear_regression, {"X": torch.randn(3, 2), "y": torch.randn(3)},
                                   labels={"X": "x"}),
    }


@pytest.mark.parametrize("name", ["mixture", "gmm", "regression"])
def test_every_query_on_plain_names_agrees_with_the_unrolled_graph(name):
    g = small_graphs()[name]
    G = g.networkx
    random = [n for n in G if G.nodes[n]["kind"] in ("latent", "observed", "deterministic")
              and G.nodes[n].get("role") != "covariate"]
    checked = separated = 0
    for x, y in itertools.permutations(random, 2):
        rest = [n for n in random if n not in (x, y)]
        for k in range(len(rest) + 1):
            for given in itertools.combinations(rest, k):
                answer = oracle(g, {x}, {y}, set(given))
                assert g.d_separated(x, y, list(given)) is answer, (x, y, given)
                # the same statement with the symbols the diagram shows
                drawn = [G.nodes[n]["label"] for n in (x, y, *given)]
                assert g.d_separated(drawn[0], drawn[1], drawn[2:]) is answer, (x, y, given)
                # one copy of x against every copy of y: the unrolled graph is queried
                first = x + "[" + ",".join("1" for _ in G.nodes[x]["plates"]) + "]" if G.nodes[x]["plates"] else x
                assert g.d_separated(first, y, list(given)) is oracle(g, {first}, {y}, set(given)), (first, y, given)
                checked += 1
                separated += answer
    assert 0 < separated < checked


def test_a_symbol_drawn_for_two_nodes_is_one_clear_error():
    def twins(a=None, b=None):
        m = pyro.sample("m", dist.Normal(0.0, 1.0))
        pyro.sample("a", dist.Normal(m, 1.0), obs=a)
        pyro.sample("b", dist.Normal(m, 1.0), obs=b)

    g = plates.graph(twins, {"a": torch.tensor(0.0), "b": torch.tensor(1.0)}, labels={"a": "x", "b": "x"})
    with pytest.raises(PlateError) as info:
        g.d_separated("x", "m")
    message = str(info.value)
    assert "\n" not in message and message.startswith("x: ")
    assert "'a'" in message and "'b'" in message
    assert g.d_separated("a", "b", "m") is True  # the site names still tell them apart


def test_index_letters_and_overlaps_say_what_to_write(mixture):
    with pytest.raises(PlateError, match=r"theta_i: .*theta .*theta\[1\]"):
        mixture.d_separated("theta_i", "pi")
    with pytest.raises(PlateError, match="appears in both sides"):
        mixture.d_separated("x", "x[1]")
    with pytest.raises(PlateError, match=r"nope: is not a node of the graph; nodes: .*flips \(drawn x\)"):
        mixture.d_separated("nope", "z")


# --- item 5a: equal option values keep both hyperparameters -------------------------------------------

def eight_schools(y=None, sigma=None, mu_scale: float = 5.0, tau_scale: float = 5.0):
    """Eight schools written with float(): provenance loses both options, which are matched by value."""
    mu = pyro.sample("mu", dist.Normal(0.0, float(mu_scale)))
    tau = pyro.sample("tau", dist.HalfCauchy(float(tau_scale)))
    with pyro.plate("J", len(sigma)):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("y", dist.Normal(theta, sigma), obs=y)


SCHOOLS = {"y": torch.tensor([28.0, 8, -3, 7, -1, 1, 18, 12]), "sigma": torch.tensor([15.0, 10, 16, 11, 9, 11, 10, 18])}


@pytest.mark.parametrize("scales", [(5.0, 5.0), (5.0, 4.0)])
def test_equal_option_values_keep_both_hyperparameter_dots(scales):
    g = plates.graph(eight_schools, {**SCHOOLS, "mu_scale": scales[0], "tau_scale": scales[1]})
    G = g.networkx
    assert G.nodes["mu_scale"]["kind"] == G.nodes["tau_scale"]["kind"] == "hyperparameter"
    assert ("mu_scale", "mu") in G.edges and ("tau_scale", "tau") in G.edges
    assert ("mu_scale", "tau") not in G.edges and ("tau_scale", "mu") not in G.edges
    assert G.nodes["mu"]["distribution"] == "Normal(0, mu_scale)"
    assert G.nodes["tau"]["distribution"] == "HalfCauchy(tau_scale)"
    assert (G.nodes["mu_scale"]["value"], G.nodes["tau_scale"]["value"]) == scales


def test_a_catalogue_model_given_equal_options_keeps_its_hyperparameter():
    spec_data = {"prior_scale": 3.0, "df": 3.0}  # df is not used by normal noise; prior_scale is
    g = plates.graph("linear_regression", {**_regression_data(), **spec_data})
    G = g.networkx
    assert ("prior_scale", "coef") in G.edges and G.nodes["prior_scale"]["value"] == 3.0
    assert G.nodes["coef"]["distribution"] == "Normal(0, prior_scale)"
    assert "df" not in G


def _regression_data() -> dict:
    from ppl_models.registry import resolve

    spec, _, _ = resolve("linear_regression")
    data = spec.default_data(seed=0)
    return {k: data[k] for k in ("X", "y")}


def test_a_literal_of_the_program_equal_to_an_option_stays_a_number():
    def literal(x=None, s: float = 1.0):
        a = pyro.sample("a", dist.Normal(0.0, float(s)))  # the option, its tag lost
        b = pyro.sample("b", dist.HalfNormal(1.0))  # a literal that happens to equal it
        pyro.sample("x", dist.Normal(a, b), obs=x)

    G = plates.graph(literal, {"x": torch.tensor(0.5)}).networkx
    assert G.nodes["a"]["distribution"] == "Normal(0, s)" and ("s", "a") in G.edges
    assert G.nodes["b"]["distribution"] == "HalfNormal(1)" and ("s", "b") not in G.edges


def test_a_value_that_cannot_be_attributed_is_drawn_as_the_number_and_said():
    def picky(x=None, a: float = 2.0, b: float = 2.0):
        if float(a) != 2.0 or float(b) != 2.0:  # perturbing the options to tell them apart fails here
            raise ValueError("only the defaults are supported")
        m = pyro.sample("m", dist.Normal(0.0, float(a)))
        pyro.sample("x", dist.Normal(m, 1.0), obs=x)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = plates.graph(picky, {"x": torch.tensor(0.5)})
    assert g.networkx.nodes["m"]["distribution"] == "Normal(0, 2)"
    said = [str(w.message) for w in caught if "2" in str(w.message) and "'a'" in str(w.message)]
    assert len(said) == 1 and "'b'" in said[0] and "\n" not in said[0]


# --- item 5b: constants with at most three significant digits -------------------------------------------

@pytest.mark.parametrize("value,text", [(-0.0388255, "-0.0388"), (4.42044, "4.42"), (-0.693147, "-0.693"),
                                        (5.74188, "5.74"), (3.0, "3"), (1000.0, "1000"), (12345.6, "12300"),
                                        (0.5, "0.5"), (1e-6, "1e-06"), (-0.0, "0"), (20, "20"), (2.5, "2.5")])
def test_numbers_have_at_most_three_significant_digits(value, text):
    assert number(value) == text


def test_data_derived_constants_in_the_catalogue_read_short():
    two_class = plates.graph("two_class").networkx
    assert re.fullmatch(r"Normal\(-?\d\.?\d*(e-\d+)?, \d\.\d\d\)", two_class.nodes["mu"]["distribution"])
    cloudy = plates.graph("bayes_net").networkx.nodes["cloudy"]["distribution"]
    assert cloudy == "Categorical(logits=-0.693)"


# --- item 5c: a function of one node is not the node ------------------------------------------------------

def test_an_argument_computed_from_one_node_is_written_as_a_function_of_it():
    def scaled(x=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        tau = pyro.sample("tau", dist.HalfNormal(1.0))
        with pyro.plate("N", 3):
            pyro.sample("x", dist.Normal(2.0 * mu, tau), obs=x)

    G = plates.graph(scaled, {"x": torch.zeros(3)}).networkx
    assert G.nodes["x"]["distribution"] == "Normal(f(mu), tau)"  # tau is passed as is: its own symbol
    regression = plates.graph("linear_regression").networkx
    assert re.fullmatch(r"Normal\(f\(coef\), \d+(\.\d+)?\)", regression.nodes["intercept"]["distribution"])
    assert ("coef", "intercept") in regression.edges  # the centred prior: p(intercept | coef)
    assert plates.graph("coin").networkx.nodes["flips"]["distribution"] == "Bernoulli(p)"
    schools = plates.graph(eight_schools, SCHOOLS).networkx
    assert schools.nodes["theta"]["distribution"] == "Normal(mu, tau)"
    assert schools.nodes["y"]["distribution"] == "Normal(theta, sigma)"


# --- items 5d and 5e: the SVG text -------------------------------------------------------------------

SVG = "{http://www.w3.org/2000/svg}"


def svg_text(element: ET.Element) -> str:
    """The text a browser shows for the <text> elements under `element`, one line, in document order.

    SVG's default white-space handling (xml:space="default", what Chromium does with inline SVG) strips
    every text element's leading and trailing spaces and collapses runs of spaces; each element is placed
    at its own x, so a space lost at the edge of one is lost on the screen."""
    runs = []
    for t in element.iter(SVG + "text"):
        text = re.sub(" +", " ", (t.text or "").replace("\n", "").replace("\t", " ")).strip(" ")
        runs.append(text)
    return "".join(runs).replace("\u00a0", " ")


@needs_dot
def test_plate_labels_keep_their_spaces_in_the_svg(tmp_path):
    g = plates.graph(S.coin_mixture, {"flips": torch.tensor([1.0, 0.0, 1.0])}, **S.MIXTURE_DISPLAY)
    root = ET.parse(g.render(tmp_path / "m.svg")).getroot()
    clusters = {svg_text(c) for c in root.iter(SVG + "g") if c.get("class") == "cluster"}
    assert clusters == {"j = 1..N (N = 3)", "k = 1..K (K = 2)"}
    notes = {svg_text(n) for n in root.iter(SVG + "g") if "distribution" in n.get("class", "").split()}
    assert "x ~ Bernoulli(θz)" in notes and "θ ~ Beta(α, β)" in notes  # (the z is a subscript)


# The demo report shows a diagram in a column at most 605 px wide (55 % of its 1100 px page) and shrinks
# a wider one to fit: the text must stay readable there too, so long distributions wrap.
DEMO_COLUMN_PX = 605


@needs_dot
def test_distribution_text_is_readable_at_its_own_size_and_in_the_demo_column(tmp_path):
    import ppl_models

    for name in ppl_models.names():
        root = ET.parse(plates.graph(name).render(tmp_path / f"{name}.svg")).getroot()
        sizes = [float(t.get("font-size")) for n in root.iter(SVG + "g") if "distribution" in n.get("class", "").split()
                 for t in n.iter(SVG + "text")]
        width_pt = float(root.get("width").removesuffix("pt"))
        shown = min(1.0, DEMO_COLUMN_PX / (width_pt * 4 / 3))  # the SVG's units are points: 4/3 px
        assert sizes and min(sizes) * 4 / 3 >= 15, name  # at its own size
        assert min(sizes) * 4 / 3 * shown >= 11, (name, width_pt)  # in the demo report


def test_long_distributions_wrap_between_their_arguments():
    from plates.dot import wrap_distribution

    assert wrap_distribution("θ ~ Beta(α, β)") == "θ ~ Beta(α, β)"
    assert wrap_distribution("coef ~ Normal(0, prior_scale)") == "coef ~ Normal(<BR/>0, prior_scale)"
    assert (wrap_distribution("<I>y</I> ~ Normal(f(coef, intercept, <I>x</I>), σ)")
            == "<I>y</I> ~ Normal(<BR/>f(coef, intercept, <I>x</I>), σ)")  # tags are no characters
    assert (wrap_distribution("y ~ StudentT(degrees_of_freedom, f(coef, intercept), sigma)")
            == "y ~ StudentT(<BR/>degrees_of_freedom,<BR/>f(coef, intercept),<BR/>sigma)")
