"""Diagrams of programs users write: Pyro's examples (a horseshoe, the corpus) and sequences in `pyro.markov`.

- A horseshoe regression as Pyro's examples/sparse_regression.py writes its scales (a ``HalfCauchy`` whose
  scale is computed from another site) used to fail: provenance tracking turned the ``torch.Size`` of
  ``loc.new(shape)`` into a tuple, so Cauchy sampled an empty tensor.
- Markov chains and HMMs (one site per step, ``x_{t}``, in ``pyro.markov``) are folded into one node per
  variable on a time plate: drawn unrolled (``x_1 -> x_2 -> x_3 -> ... -> x_T``), factorized as
  ``p(x_1) prod_{t=2}^{T} p(x_t | x_{t-1})``, and queried on the unrolled chain.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import plates
from benchmarks.corpus import PROGRAMS
from plates.render import run_dot

needs_dot = pytest.mark.skipif(plates.dot_program() is None, reason="Graphviz 'dot' is not installed")


# --- programs -----------------------------------------------------------------------------------------


def sparse_regression(X, Y, hypers, jitter=1.0e-4):
    """Pyro's examples/sparse_regression.py `model` (with its `kernel` and `dot`), as written there."""

    def dot(X, Z):
        return torch.mm(X, Z.t())

    def kernel(X, Z, eta1, eta2, c):
        eta1sq, eta2sq = eta1.pow(2.0), eta2.pow(2.0)
        k1 = 0.5 * eta2sq * (1.0 + dot(X, Z)).pow(2.0)
        k2 = -0.5 * eta2sq * dot(X.pow(2.0), Z.pow(2.0))
        k3 = (eta1sq - eta2sq) * dot(X, Z)
        k4 = c**2 - 0.5 * eta2sq
        return k1 + k2 + k3 + k4

    S, P, N = hypers["expected_sparsity"], X.size(1), X.size(0)
    sigma = pyro.sample("sigma", dist.HalfNormal(hypers["alpha3"]))
    phi = sigma * (S / math.sqrt(N)) / (P - S)
    eta1 = pyro.sample("eta1", dist.HalfCauchy(phi))
    msq = pyro.sample("msq", dist.InverseGamma(hypers["alpha1"], hypers["beta1"]))
    xisq = pyro.sample("xisq", dist.InverseGamma(hypers["alpha2"], hypers["beta2"]))
    eta2 = eta1.pow(2.0) * xisq.sqrt() / msq
    lam = pyro.sample("lambda", dist.HalfCauchy(torch.ones(P, device=X.device)).to_event(1))
    kappa = msq.sqrt() * lam / (msq + (eta1 * lam).pow(2.0)).sqrt()
    kX = kappa * X
    k = kernel(kX, kX, eta1, eta2, hypers["c"]) + (sigma**2 + jitter) * torch.eye(N, device=X.device)
    pyro.sample("Y", dist.MultivariateNormal(torch.zeros(N, device=X.device), covariance_matrix=k), obs=Y)


def horseshoe(X, Y, hypers):
    """A horseshoe regression with its scales written the way sparse_regression.py writes them: the
    global scale's prior scales with the noise (Piironen and Vehtari's tau_0), local scales per feature."""
    S, P, N = hypers["expected_sparsity"], X.size(1), X.size(0)
    sigma = pyro.sample("sigma", dist.HalfNormal(hypers["alpha3"]))
    tau = pyro.sample("tau", dist.HalfCauchy(sigma * (S / math.sqrt(N)) / (P - S)))  # global scale
    with pyro.plate("features", P):
        lam = pyro.sample("lambda", dist.HalfCauchy(torch.ones(P, device=X.device)))  # local scales
        beta = pyro.sample("beta", dist.Normal(0.0, tau * lam))
    with pyro.plate("data", N):
        pyro.sample("y", dist.Normal(X @ beta, sigma), obs=Y)


HYPERS = {"expected_sparsity": 2.0, "alpha1": 3.0, "beta1": 1.0, "alpha2": 3.0, "beta2": 1.0, "alpha3": 1.0, "c": 1.0}


def regression_data(n: int = 20, p: int = 10) -> dict:
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(n, p, generator=gen)
    return {"X": X, "Y": X[:, 0] - 0.5 * X[:, 1] + 0.1 * torch.randn(n, generator=gen), "hypers": HYPERS}


def markov_chain(T: int = 6):
    """A two-state Markov chain, the way the course writes it: the state picks its transition row."""
    probs = pyro.param("probs", torch.tensor([[0.9, 0.1], [0.2, 0.8]]))
    x = 0
    for t in pyro.markov(range(T)):
        x = pyro.sample(f"x_{t}", dist.Categorical(probs[x]))


def hmm(y, hidden: int = 2):
    """A Gaussian HMM with its states enumerated in parallel."""
    probs_x = pyro.sample("probs_x", dist.Dirichlet(torch.ones(hidden, hidden)).to_event(1))
    locs = pyro.sample("locs", dist.Normal(torch.zeros(hidden), 10.0).to_event(1))
    x = 0
    for t in pyro.markov(range(len(y))):
        x = pyro.sample(f"x_{t}", dist.Categorical(probs_x[x]), infer={"enumerate": "parallel"})
        pyro.sample(f"y_{t}", dist.Normal(locs[x], 1.0), obs=y[t])


def chain_with_initial(T: int = 5):
    """The first state from its own distribution, the loop from t = 1."""
    pi = pyro.sample("pi", dist.Dirichlet(torch.ones(3)))
    A = pyro.sample("A", dist.Dirichlet(torch.ones(3, 3)).to_event(1))
    x = pyro.sample("x_0", dist.Categorical(pi))
    for t in pyro.markov(range(1, T)):
        x = pyro.sample(f"x_{t}", dist.Categorical(A[x]))


def random_walk(y):
    """A Gaussian random walk written with a plain loop (no pyro.markov), observed with noise."""
    s = pyro.sample("s", dist.HalfNormal(1.0))
    z = torch.tensor(0.0)
    for t in range(len(y)):
        z = pyro.sample(f"z_{t}", dist.Normal(z, s))
        pyro.sample(f"obs_{t}", dist.Normal(z, 1.0), obs=y[t])


def iid_in_markov(y):
    """Independent steps inside pyro.markov: an ordinary plate, not a chain."""
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    for t in pyro.markov(range(len(y))):
        pyro.sample(f"y_{t}", dist.Normal(mu, 1.0), obs=y[t])


def two_coefficients(x, y):
    """beta_0 and beta_1 are an intercept and a slope, not two steps of a sequence."""
    beta_0 = pyro.sample("beta_0", dist.Normal(0.0, 1.0))
    beta_1 = pyro.sample("beta_1", dist.Normal(0.0, 1.0))
    beta_2 = pyro.sample("beta_2", dist.Normal(0.0, 1.0))
    with pyro.plate("N", len(x)):
        pyro.sample("y", dist.Normal(beta_0 + beta_1 * x + beta_2 * x**2, 1.0), obs=y)


def factorial_hmm(y):
    """Two independent chains that emit together (Ghahramani and Jordan's factorial HMM)."""
    probs_w = pyro.sample("probs_w", dist.Dirichlet(torch.ones(2, 2)).to_event(1))
    probs_x = pyro.sample("probs_x", dist.Dirichlet(torch.ones(2, 2)).to_event(1))
    locs = pyro.sample("locs", dist.Normal(torch.zeros(2, 2), 10.0).to_event(2))
    w = x = 0
    for t in pyro.markov(range(len(y))):
        w = pyro.sample(f"w_{t}", dist.Categorical(probs_w[w]), infer={"enumerate": "parallel"})
        x = pyro.sample(f"x_{t}", dist.Categorical(probs_x[x]), infer={"enumerate": "parallel"})
        pyro.sample(f"y_{t}", dist.Normal(locs[w, x], 1.0), obs=y[t])


def corpus_hmm() -> plates.PlateGraph:
    program = PROGRAMS["hmm"]
    return plates.graph(program.model, program.data(), plate_index={"sequences": "i", "tones": "m"})


def edges(g: plates.PlateGraph) -> dict:
    return {(u, v): dict(data) for u, v, data in g.networkx.edges(data=True)}


def dot_edges(g: plates.PlateGraph) -> set[tuple[str, str]]:
    """The drawn arrows (``"a" -> "b";``), without the layout's invisible ones."""
    out = set()
    for line in g.to_dot().splitlines():
        line = line.strip()
        if " -> " in line and "invis" not in line and line.startswith('"'):
            u, _, rest = line.partition(" -> ")
            v = rest.split(" [")[0].rstrip(";")
            out.add((u.strip('"').split('":')[0], v.strip('"')))
    return out


# --- (a) the horseshoe and the corpus -----------------------------------------------------------------


@pytest.mark.parametrize("family", [
    lambda s: dist.HalfCauchy(s / 3.0), lambda s: dist.Cauchy(0.0, s), lambda s: dist.Exponential(s),
    lambda s: dist.Laplace(0.0, s)])
def test_a_scale_that_comes_from_a_site_is_drawn(family):
    """These distributions sample with ``param.new(shape)``, which made an empty tensor here."""
    def model():
        sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
        tau = pyro.sample("tau", family(sigma))
        with pyro.plate("D", 3):
            pyro.sample("w", dist.Normal(0.0, tau.abs()))

    g = plates.graph(model)
    assert set(g.networkx.edges) == {("sigma", "tau"), ("tau", "w")}
    assert g.factorization() == "p(sigma, tau, w) = p(sigma) p(tau | sigma) prod_d p(w_d | tau)"


def test_horseshoe_in_the_style_of_sparse_regression_draws_its_plates(tmp_path):
    g = plates.graph(horseshoe, regression_data())
    G = g.networkx
    assert g.plates["features"]["size"] == 10 and g.plates["data"]["size"] == 20
    assert {n: (G.nodes[n]["kind"], G.nodes[n]["plates"]) for n in G} == {
        "sigma": ("latent", ()), "tau": ("latent", ()),
        "lambda": ("latent", ("features",)), "beta": ("latent", ("features",)),
        "y": ("observed", ("data",)), "X": ("observed", ("data",)),
    }
    assert G.nodes["X"]["role"] == "covariate"
    assert set(G.edges) == {("sigma", "tau"), ("tau", "beta"), ("lambda", "beta"), ("beta", "y"), ("sigma", "y"),
                            ("X", "y")}
    assert g.factorization() == ("p(y, sigma, tau, lambda, beta | X) = p(sigma) p(tau | sigma) "
                                 "prod_d p(y_d | sigma, beta, X_d) "
                                 "prod_f p(lambda_f) p(beta_f | tau, lambda_f)")  # a plate named by a word: its letter
    dot = g.to_dot()
    assert "f = 1..features (features = 10)" in dot.replace("&#160;", " ").replace("<I>", "").replace("</I>", "")
    if plates.dot_program():
        assert g.render(tmp_path / "horseshoe.svg").read_text().startswith("<?xml")


def test_sparse_regression_as_pyro_writes_it_is_drawn():
    g = plates.graph(sparse_regression, regression_data())
    G = g.networkx
    assert {n for n in G if G.nodes[n]["kind"] == "latent"} == {"sigma", "eta1", "msq", "xisq", "lambda"}
    assert G.nodes["Y"]["kind"] == "observed"
    assert ("sigma", "eta1") in G.edges
    assert {"sigma", "eta1", "msq", "xisq", "lambda", "X"} <= set(G.predecessors("Y"))


def test_shapes_stay_sizes_while_a_model_is_traced():
    seen = {}

    def model(X):
        seen["shape"] = X.shape
        seen["size"] = X.size()
        pyro.sample("w", dist.Normal(torch.zeros(X.shape), 1.0).to_event(2))

    plates.graph(model, {"X": torch.ones(3, 2)})
    assert type(seen["shape"]) is torch.Size and type(seen["size"]) is torch.Size


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_every_corpus_program_is_drawn(name, tmp_path):
    program = PROGRAMS[name]
    g = plates.graph(program.model, program.data())
    assert g.factorization().startswith("p(")
    assert g.to_dot().startswith("digraph")
    if plates.dot_program():
        assert g.render(tmp_path / f"{name}.svg").read_text().startswith("<?xml")


# --- (b) sequences ------------------------------------------------------------------------------------


def test_markov_chain_is_one_node_on_a_time_plate():
    g = plates.graph(markov_chain)
    G = g.networkx
    assert set(G) == {"probs", "x"}
    assert G.nodes["x"]["plates"] == ("T",) and g.plates["T"]["size"] == 6 and g.plates["T"]["index"] == "t"
    assert G.nodes["x"]["sites"] == tuple(f"x_{t}" for t in range(6))
    assert edges(g) == {("probs", "x"): {"lag": (0,), "first": True}, ("x", "x"): {"lag": (1,), "first": False}}
    assert G.nodes["x"]["distribution"] == "Categorical(probs[x_{t-1}])"
    assert g.factorization() == "p(x) = p_probs(x_1) prod_{t=2}^{T} p_probs(x_t | x_{t-1})"
    assert g.factorization(latex=True) == (
        r"p(x) = p_{\mathrm{probs}}(x_{1}) \, \prod_{t=2}^{T} p_{\mathrm{probs}}(x_{t} \mid x_{t-1})")


def test_markov_chain_independence_on_the_unrolled_chain():
    g = plates.graph(markov_chain)
    U = g.unrolled()
    assert {(u, v) for u, v in U.edges if u != "probs"} == {(f"x[{t}]", f"x[{t + 1}]") for t in range(1, 6)}
    assert g.query("x[1] _|_ x[3] | x[2]") is True
    assert g.query("x[1] _|_ x[3]") is False
    assert g.query("x[1] _|_ x[6] | x[4]") is True
    assert g.query("x[2] _|_ x[4] | x[1]") is False
    assert g.query("x_0 _|_ x_2 | x_1") is True  # the program's site names are steps too
    assert g.markov_blanket("x[3]") == {"x[2]", "x[4]"}


def test_markov_chain_drawn_unrolled_with_an_ellipsis(tmp_path):
    g = plates.graph(markov_chain)
    arrows = dot_edges(g)
    chain = {("x[1]", "x[2]"), ("x[2]", "x[3]"), ("x[3]", "x[...]"), ("x[...]", "x[T]")}
    assert chain <= arrows
    assert {("probs", f"x[{s}]") for s in ("1", "2", "3", "T")} <= arrows
    dot = g.to_dot()
    assert "<I>x</I><SUB><I>T</I></SUB>" in dot and "<I>x</I><SUB>1</SUB>" in dot and "label=<⋯>" in dot
    assert "(<I>T</I>&#160;=&#160;6)" in dot  # the note t = 1..T (T = 6)
    assert "Categorical(probs[<I>x</I><SUB><I>t</I>−1</SUB>])" in dot
    assert '{rank=same; "x[1]"; "x[2]"; "x[3]"; "x[...]"; "x[T]";' in dot


def test_short_chain_drawn_in_full():
    g = plates.graph(markov_chain, {"T": 4})
    arrows = dot_edges(g)
    assert {("x[1]", "x[2]"), ("x[2]", "x[3]"), ("x[3]", "x[4]")} <= arrows
    assert "x[...]" not in g.to_dot()


def test_hmm_with_enumerated_states():
    g = plates.graph(hmm, {"y": torch.tensor([0.1, 2.0, 1.9, -0.3, 0.0, 2.2, 2.1])})
    G = g.networkx
    assert set(G) == {"probs_x", "locs", "x", "y"}
    assert G.nodes["x"]["enumerated"] and G.nodes["y"]["kind"] == "observed"
    assert G.nodes["y"]["plates"] == ("T",) and g.plates["T"]["size"] == 7
    assert edges(g)[("x", "y")] == {"lag": (0,), "first": True}
    assert G.nodes["y"]["distribution"] == "Normal(locs[x_t], 1)"
    assert g.factorization() == ("p(y, x, probs_x, locs) = p(probs_x) p(locs) p(x_1 | probs_x) "
                                 "prod_{t=2}^{T} p(x_t | x_{t-1}, probs_x) prod_{t=1}^{T} p(y_t | x_t, locs)")
    assert g.query("y[1] _|_ y[3] | x[2], probs_x, locs") is True
    assert g.query("y[1] _|_ y[3] | x[2]") is False  # locs is shared
    assert g.query("x[1] _|_ x[3] | x[2], probs_x") is True
    assert g.query("y[1] _|_ x[3] | x[1], probs_x, locs") is True
    assert g.query("y[1] _|_ x[3] | x[2], probs_x, locs") is True
    assert g.query("y[2] _|_ x[1] | x[2], probs_x, locs") is True
    assert g.query("y[2] _|_ x[1] | probs_x, locs") is False
    assert g.query("y _|_ probs_x | x, locs") is True  # plain names: every step
    arrows = dot_edges(g)
    assert {(f"x[{s}]", f"y[{s}]") for s in ("1", "2", "3", "T")} <= arrows
    assert ("x[...]", "x[T]") in arrows and not any(v == "y[...]" for _, v in arrows)


def test_corpus_hmm_sequences_and_tones():
    g = corpus_hmm()
    G = g.networkx
    assert set(G) == {"probs_x", "probs_y", "x", "y"}
    assert G.nodes["x"]["plates"] == ("sequences", "T") and G.nodes["y"]["plates"] == ("sequences", "T", "tones")
    assert g.plates["T"]["size"] == 10
    assert g.factorization() == (
        "p(y, x, probs_x, probs_y) = p(probs_x) p(probs_y) prod_i p(x_i1 | probs_x) "
        "prod_{t=2}^{T} p(x_it | x_{i,t-1}, probs_x) prod_{t=1}^{T} prod_m p(y_itm | x_it, probs_y)")
    assert g.query("y[1,1,1] _|_ y[1,3,1] | x[1,2], probs_x, probs_y") is True
    assert g.query("x[1,1] _|_ x[2,1] | probs_x") is True  # sequences are independent given the parameters
    assert g.query("x[1,1] _|_ x[2,1]") is False
    assert g.query("x_0 _|_ x_2 | x_1, probs_x") is True  # x_1 is every sequence's step 2
    arrows = dot_edges(g)
    assert {("x[1]", "x[2]"), ("x[3]", "x[...]"), ("x[...]", "x[T]"), ("x[T]", "y[T]"), ("probs_y", "y[1]")} <= arrows
    dot = g.to_dot()
    assert "<I>y</I><SUB><I>i</I>,1,<I>m</I></SUB>" in dot  # y_{i,1,m}: the step between the other plates


def test_chain_with_its_own_initial_distribution():
    g = plates.graph(chain_with_initial)
    assert edges(g) == {("pi", "x"): {"lag": (), "first": True}, ("A", "x"): {"lag": (0,), "first": False},
                        ("x", "x"): {"lag": (1,), "first": False}}
    assert g.factorization() == "p(pi, A, x) = p(pi) p(A) p(x_1 | pi) prod_{t=2}^{T} p(x_t | x_{t-1}, A)"
    U = g.unrolled()
    assert set(U.successors("pi")) == {"x[1]"} and set(U.successors("A")) == {"x[2]", "x[3]", "x[4]", "x[5]"}
    assert g.query("pi _|_ x[3] | x[2], A") is True and g.query("pi _|_ x[3] | A") is False
    assert g.networkx.nodes["x"]["first_distribution"] == "Categorical(pi)"


def test_a_chain_found_by_its_dependencies_without_pyro_markov():
    g = plates.graph(random_walk, {"y": torch.randn(6)})
    assert set(g.networkx) == {"s", "z", "obs"}
    assert g.factorization() == ("p(obs, z, s) = p(s) p(z_1 | s) prod_{t=2}^{T} p(z_t | z_{t-1}, s) "
                                 "prod_{t=1}^{T} p(obs_t | z_t)")


def test_independent_steps_in_pyro_markov_are_an_ordinary_plate():
    g = plates.graph(iid_in_markov, {"y": torch.randn(4)})
    assert set(g.networkx) == {"mu", "y"} and not g.plates["T"]["markov"]
    assert g.factorization() == "p(y, mu) = p(mu) prod_t p(y_t | mu)"
    assert "cluster_T" in g.to_dot()  # a box t = 1..T
    assert g.query("y[1] _|_ y[2] | mu") is True


def test_numbered_names_that_are_no_sequence_stay_apart():
    g = plates.graph(two_coefficients, {"x": torch.randn(5), "y": torch.randn(5)})
    assert {"beta_0", "beta_1", "beta_2"} <= set(g.networkx) and "T" not in g.plates


def test_factorial_hmm_two_chains_one_plate():
    g = plates.graph(factorial_hmm, {"y": torch.randn(6)})
    assert set(g.networkx) == {"probs_w", "probs_x", "locs", "w", "x", "y"}
    assert g.networkx.nodes["y"]["distribution"] == "Normal(locs[w_t, x_t], 1)"
    assert g.factorization() == (
        "p(y, w, x, probs_w, probs_x, locs) = p(probs_w) p(probs_x) p(locs) p(w_1 | probs_w) p(x_1 | probs_x) "
        "prod_{t=2}^{T} [p(w_t | w_{t-1}, probs_w) p(x_t | x_{t-1}, probs_x)] prod_{t=1}^{T} p(y_t | w_t, x_t, locs)")
    assert g.query("w[2] _|_ x[2] | probs_w, probs_x, locs") is True  # a priori independent chains
    assert g.query("w[2] _|_ x[2] | y[2], probs_w, probs_x, locs") is False  # explaining away


def _positions(g: plates.PlateGraph) -> dict[str, tuple[float, float]]:
    """Where Graphviz puts each drawn node: name -> (x, y), y upwards."""
    out = {}
    for line in run_dot(g.to_dot(), "plain").decode().splitlines():
        parts = line.split()
        if parts and parts[0] == "node":
            out[parts[1].strip('"')] = (float(parts[2]), float(parts[3]))
    return out


@needs_dot
@pytest.mark.parametrize("which", ["chain", "hmm", "corpus", "factorial"])
def test_each_variable_is_one_row_from_left_to_right(which):
    g = {"chain": lambda: plates.graph(markov_chain),
         "hmm": lambda: plates.graph(hmm, {"y": torch.randn(8)}),
         "corpus": corpus_hmm,
         "factorial": lambda: plates.graph(factorial_hmm, {"y": torch.randn(8)})}[which]()
    pos = _positions(g)
    rows = [n for n in ("w", "x", "y") if f"{n}[1]" in pos]
    assert rows == {"chain": ["x"], "hmm": ["x", "y"], "corpus": ["x", "y"], "factorial": ["w", "x", "y"]}[which]
    heights = []
    for n in rows:
        row = [pos[f"{n}[{s}]"] for s in ("1", "2", "3", "T")]
        assert [x for x, _ in row] == sorted(x for x, _ in row), f"{n}: {row}"
        assert len({round(y, 2) for _, y in row}) == 1, f"{n} is not one row: {row}"
        heights.append(row[0][1])
    assert heights == sorted(heights, reverse=True)  # w above x above y


@needs_dot
@pytest.mark.parametrize("which", ["chain", "hmm", "corpus"])
def test_sequences_render(which, tmp_path):
    g = {"chain": lambda: plates.graph(markov_chain),
         "hmm": lambda: plates.graph(hmm, {"y": torch.randn(8)}),
         "corpus": corpus_hmm}[which]()
    png = g.render(tmp_path / f"{which}.png")
    assert png.read_bytes().startswith(b"\x89PNG")
    svg = g.render(tmp_path / f"{which}.svg").read_text().replace("\xa0", " ")
    assert ">⋯</text>" in svg and "> = 1..</text>" in svg
    tex = g.to_tikz()
    assert r"$\cdots$" in tex and tex.count("{") == tex.count("}")
