"""Golden tests of the graph view: node kinds, plates and edges, and the DOT structure drawn from them.

The models are stand-ins written like the catalogue's (tests/plate_standins.py) plus the registered coin;
`test_plates_render.py` covers every registered model as it lands.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import plate_standins as S  # noqa: E402

import plates  # noqa: E402
from plates import PlateError  # noqa: E402

# --- a small reader of the DOT that plates writes (one statement per line) --------------------------

_ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|<(?:[^<>]|<(?:[^<>]|<[^<>]*>)*>)*>|[^,\]\s]+)')
_ID = r'"((?:[^"\\]|\\.)*)"'


def parse_dot(text: str) -> dict:
    """{'nodes': {id: attrs}, 'edges': [(u, v, attrs)], 'clusters': {id: {'label', 'parent', 'nodes'}}}."""
    nodes, edges, clusters, stack = {}, [], {}, [None]
    for raw in text.splitlines():
        line = raw.strip()
        m = re.match(rf"subgraph {_ID} \{{$", line)
        if m:
            clusters[m.group(1)] = {"parent": stack[-1], "nodes": [], "label": None}
            stack.append(m.group(1))
            continue
        if line == "}":
            stack.pop()
            continue
        if line.startswith("graph [") and stack[-1] is not None:
            clusters[stack[-1]]["label"] = dict(_ATTR.findall(line)).get("tooltip", "").strip('"')
            continue
        m = re.match(rf"{_ID}(:\w+)? -> {_ID}(?: \[(.*)\])?;$", line)
        if m:
            edges.append((m.group(1), m.group(3), {k: v.strip('"') for k, v in _ATTR.findall(m.group(4) or "")}))
            continue
        m = re.match(rf"{_ID} \[(.*)\];$", line)
        if m:
            # labels write their spaces as &#160; (kept in SVG text, see plates.dot.keep_spaces)
            nodes[m.group(1)] = {k: v.strip('"').replace("&#160;", " ") for k, v in _ATTR.findall(m.group(2))}
            if stack[-1] is not None:
                clusters[stack[-1]]["nodes"].append(m.group(1))
    return {"nodes": nodes, "edges": edges, "clusters": clusters}


def model_nodes(d: dict) -> dict:
    return {n: a for n, a in d["nodes"].items() if a.get("class") != "distribution"}


def generative_edges(d: dict) -> set:
    return {(u, v) for u, v, a in d["edges"] if a.get("style") not in ("invis", "dashed")}


def inference_edges(d: dict) -> set:
    return {(u, v) for u, v, a in d["edges"] if a.get("class") == "inference"}


def cluster_of(d: dict, node: str) -> str | None:
    for cid, c in d["clusters"].items():
        if node in c["nodes"]:
            return cid
    return None


def cluster_path(d: dict, node: str) -> list[str]:
    """Labels of the plates around `node`, outermost first."""
    out, cid = [], cluster_of(d, node)
    while cid is not None:
        out.insert(0, d["clusters"][cid]["label"])
        cid = d["clusters"][cid]["parent"]
    return out


def kinds(g) -> dict:
    return {n: a["kind"] for n, a in g.networkx.nodes(data=True)}


def dist_text(d: dict, node: str) -> str:
    label = d["nodes"][node + ":dist"]["label"]
    assert label.startswith("<") and label.endswith(">")  # an HTML label
    return re.sub(r"<[^>]*>", "", label[1:-1].replace("<BR/>", "\n"))


# --- coin ------------------------------------------------------------------------------------------

def test_coin_golden():
    g = plates.graph("coin", {"flips": [1, 0, 1, 1], "alpha": 2.0, "beta": 3.0})
    assert kinds(g) == {"p": "latent", "flips": "observed", "alpha": "hyperparameter", "beta": "hyperparameter"}
    assert set(g.networkx.edges) == {("alpha", "p"), ("beta", "p"), ("p", "flips")}
    assert g.plates == {"N": {"size": 4, "index": "i", "dim": -1}}
    assert g.networkx.nodes["p"]["distribution"] == "Beta(alpha, beta)"
    assert g.networkx.nodes["flips"]["distribution"] == "Bernoulli(p)"
    assert g.networkx.nodes["alpha"]["value"] == 2.0

    d = parse_dot(g.to_dot())
    assert set(model_nodes(d)) == {"p", "flips", "alpha", "beta"}
    assert cluster_path(d, "flips") == ["i = 1..N (N = 4)"] and cluster_path(d, "p") == []
    assert d["nodes"]["p"]["shape"] == "circle" and "filled" not in d["nodes"]["p"].get("style", "")
    assert d["nodes"]["flips"]["shape"] == "circle" and "filled" in d["nodes"]["flips"]["style"]
    assert d["nodes"]["alpha"]["shape"] == "plaintext" and "●" in d["nodes"]["alpha"]["label"]
    assert "α = 2" in d["nodes"]["alpha"]["label"] and "β = 3" in d["nodes"]["beta"]["label"]
    assert generative_edges(d) == {("alpha", "p"), ("beta", "p"), ("p", "flips")}
    assert dist_text(d, "p") == "p ~ Beta(α, β)"


# --- supervised regression: theta outside, x_i and y_i inside, both filled --------------------------

def test_supervised_regression_golden():
    X, y = torch.randn(6, 3), torch.randn(6)
    g = plates.graph(S.linear_regression, {"X": X, "y": y}, labels={"X": "x"})
    assert kinds(g) == {"intercept": "latent", "coef": "latent", "sigma": "latent", "y": "observed",
                        "X": "observed", "prior_scale": "hyperparameter"}
    assert g.networkx.nodes["X"]["role"] == "covariate"
    assert g.networkx.nodes["X"]["plates"] == ("N",) and g.networkx.nodes["y"]["plates"] == ("N",)
    assert {("X", "y"), ("intercept", "y"), ("coef", "y"), ("sigma", "y")} <= set(g.networkx.edges)
    assert set(g.networkx.predecessors("y")) == {"X", "intercept", "coef", "sigma"}
    assert set(g.networkx.successors("prior_scale")) == {"intercept", "coef"}  # not sigma: HalfNormal(1)
    assert g.networkx.nodes["sigma"]["distribution"] == "HalfNormal(1)"
    assert g.networkx.nodes["intercept"]["distribution"] == "Normal(0, prior_scale)"

    d = parse_dot(g.to_dot())
    for inside in ("X", "y"):
        assert cluster_path(d, inside) == ["i = 1..N (N = 6)"]
        assert "filled" in d["nodes"][inside]["style"]
    for outside in ("intercept", "coef", "sigma"):
        assert cluster_path(d, outside) == [] and "filled" not in d["nodes"][outside].get("style", "")
    assert "<I>x</I><SUB><I>i</I></SUB>" in d["nodes"]["X"]["label"]  # x_i, from the label map
    assert "σ" in d["nodes"]["sigma"]["label"]  # Greek where the site is named sigma


# --- mixture of Bernoullis: separate K and N plates, alpha/beta/gamma hyperparameters -----------------

def mixture():
    flips = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    return plates.graph(S.coin_mixture, {"flips": flips, "K": 3, "gamma": 0.5}, **S.MIXTURE_DISPLAY)


def test_mixture_of_bernoullis_golden():
    g = mixture()
    assert kinds(g) == {"theta": "latent", "pi": "latent", "z": "latent", "flips": "observed",
                        "alpha": "hyperparameter", "beta": "hyperparameter", "gamma": "hyperparameter"}
    assert set(g.networkx.edges) == {("alpha", "theta"), ("beta", "theta"), ("gamma", "pi"),
                                     ("pi", "z"), ("z", "flips"), ("theta", "flips")}
    assert g.networkx.nodes["z"]["enumerated"] and g.networkx.nodes["z"]["discrete"]
    assert not g.networkx.nodes["theta"]["enumerated"]
    assert g.plates["K"]["size"] == 3 and g.plates["N"]["size"] == 7 and g.plates["N"]["index"] == "j"
    assert g.networkx.nodes["flips"]["distribution"] == "Bernoulli(theta_z)"

    d = parse_dot(g.to_dot())
    assert cluster_path(d, "theta") == ["k = 1..K (K = 3)"]
    assert cluster_path(d, "z") == cluster_path(d, "flips") == ["j = 1..N (N = 7)"]
    assert cluster_of(d, "theta") != cluster_of(d, "z")  # separate loops, not nested
    assert d["clusters"][cluster_of(d, "theta")]["parent"] is None
    assert d["clusters"][cluster_of(d, "z")]["parent"] is None
    assert cluster_path(d, "pi") == []
    for h in ("alpha", "beta", "gamma"):
        assert d["nodes"][h]["class"] == "hyperparameter" and d["nodes"][h]["shape"] != "circle"
    assert "γ = 0.5" in d["nodes"]["gamma"]["label"]
    assert "filled" in d["nodes"]["flips"]["style"] and "filled" not in d["nodes"]["z"].get("style", "")
    assert "enumerated" in dist_text(d, "z")
    assert dist_text(d, "theta").startswith("θ ~ Beta(α, β)")
    assert "Bernoulli(θz)" in dist_text(d, "flips")  # theta_{z_j}, subscript flattened by the tag strip


# --- Gaussian mixture ------------------------------------------------------------------------------

def test_gmm_golden():
    g = plates.graph(S.gmm, {"x": torch.randn(8)}, **S.GMM_DISPLAY)
    assert kinds(g) == {"weights": "latent", "locs": "latent", "scales": "latent", "z": "latent", "x": "observed"}
    assert set(g.networkx.edges) == {("weights", "z"), ("z", "x"), ("locs", "x"), ("scales", "x")}
    assert g.networkx.nodes["x"]["distribution"] == "Normal(mu_z, sigma_z)"
    assert g.networkx.nodes["weights"]["distribution"] == "Dirichlet(0.5)"
    d = parse_dot(g.to_dot())
    assert cluster_path(d, "locs") == cluster_path(d, "scales") == ["k = 1..K (K = 3)"]
    assert cluster_of(d, "locs") == cluster_of(d, "scales")
    assert cluster_path(d, "x") == cluster_path(d, "z") == ["i = 1..N (N = 8)"]
    assert "μ" in d["nodes"]["locs"]["label"] and "π" in d["nodes"]["weights"]["label"]


# --- VAE with the guide overlay --------------------------------------------------------------------

def test_vae_with_guide_overlay_golden():
    x = (torch.rand(5, 4) > 0.5).float()
    before = set(pyro.get_param_store().keys())
    g = plates.graph(S.vae, {"x": x}, guide=S.vae_guide, **S.VAE_DISPLAY)
    assert set(pyro.get_param_store().keys()) == before  # drawing registers nothing
    assert kinds(g) == {"z": "latent", "x": "observed", "decoder": "parameter"}
    assert set(g.networkx.edges) == {("z", "x"), ("decoder", "x")}
    assert set(g.guide.edges) == {("x", "z"), ("encoder", "z")}
    assert g.networkx.nodes["x"]["distribution"] == "Bernoulli(theta(z))"

    d = parse_dot(g.to_dot())
    assert cluster_path(d, "z") == cluster_path(d, "x") == ["i = 1..N (N = 5)"]
    assert "filled" in d["nodes"]["x"]["style"] and "filled" not in d["nodes"]["z"].get("style", "")
    assert d["nodes"]["decoder"]["shape"] == "plaintext" and d["nodes"]["encoder"]["shape"] == "plaintext"
    assert cluster_path(d, "decoder") == [] and cluster_path(d, "encoder") == []
    assert inference_edges(d) == {("x", "z"), ("encoder", "z")}
    for u, v, a in d["edges"]:
        if (u, v) in inference_edges(d):
            assert a["style"] == "dashed" and a["color"] != ""
    assert generative_edges(d) == {("z", "x"), ("decoder", "x")}
    # no guide, no overlay
    assert plates.graph(S.vae, {"x": x}).guide is None


def test_pyromodule_weights_are_one_parameter_node():
    from pyro.nn import PyroModule

    class Net(PyroModule):
        def __init__(self):
            super().__init__()
            self.hidden = PyroModule[torch.nn.Linear](3, 4)
            self.out = PyroModule[torch.nn.Linear](4, 1)

        def forward(self, X, y=None):
            with pyro.plate("N", X.shape[0]):
                mean = self.out(torch.tanh(self.hidden(X))).squeeze(-1)
                pyro.sample("y", dist.Normal(mean, 1.0), obs=y)

    net = Net()
    g = plates.graph(net, {"X": torch.randn(5, 3), "y": torch.randn(5)})
    assert kinds(g) == {"y": "observed", "X": "observed", "hidden": "parameter", "out": "parameter"}
    assert set(g.networkx.predecessors("y")) == {"X", "hidden", "out"}
    assert g.name == "Net"


# --- a Bayesian network as a Pyro program -----------------------------------------------------------

@pytest.mark.parametrize("network", [S.SPRINKLER, S.ASIA], ids=["sprinkler", "asia"])
def test_bayes_net_golden(network):
    last = list(network)[-1]
    g = plates.graph(S.bayes_net_program(network), {"evidence": {last: 1}})
    assert set(g.networkx.edges) == set(S.hand_built_dag(network).edges)
    assert g.networkx.nodes[last]["kind"] == "observed"
    assert all(g.networkx.nodes[n]["kind"] == "latent" and g.networkx.nodes[n]["enumerated"]
               for n in network if n != last)
    d = parse_dot(g.to_dot())
    assert d["clusters"] == {}
    assert generative_edges(d) == set(S.hand_built_dag(network).edges)


# --- other shapes of plates ------------------------------------------------------------------------

def test_nested_and_overlapping_plates():
    def matrix_factorization(x=None, N=4, D=3):
        with pyro.plate("N", N):
            u = pyro.sample("u", dist.Normal(0.0, 1.0))
        with pyro.plate("D", D):
            v = pyro.sample("v", dist.Normal(0.0, 1.0))
        with pyro.plate("N2", N, dim=-2):
            with pyro.plate("D2", D, dim=-1):
                pyro.sample("x", dist.Normal(u.unsqueeze(-1) * v, 1.0), obs=x)

    def nested(x=None):
        with pyro.plate("G", 3, dim=-2):
            m = pyro.sample("m", dist.Normal(0.0, 1.0))
            with pyro.plate("N", 5, dim=-1):
                pyro.sample("x", dist.Normal(m, 1.0), obs=x)

    g = plates.graph(nested, {"x": torch.randn(3, 5)})
    d = parse_dot(g.to_dot())
    assert cluster_path(d, "m") == ["g = 1..G (G = 3)"]
    assert cluster_path(d, "x") == ["g = 1..G (G = 3)", "i = 1..N (N = 5)"]
    # the last product runs to the end, as in the course's p(pi) prod_k p(theta_k) prod_j ...
    assert g.factorization() == "p(x, m) = prod_g p(m_g) prod_i p(x_gi | m_g)"

    # x lives on both the N and the D plate: Graphviz clusters cannot overlap, so plates that do not
    # nest are drawn once per nesting, each copy with the same label
    def overlapping(x=None, N=4, D=3):
        n_plate, d_plate = pyro.plate("N", N, dim=-2), pyro.plate("D", D, dim=-1)
        with n_plate:
            u = pyro.sample("u", dist.Normal(0.0, 1.0))
        with d_plate:
            v = pyro.sample("v", dist.Normal(0.0, 1.0))
        with n_plate, d_plate:
            pyro.sample("x", dist.Normal(u * v, 1.0), obs=x)

    g = plates.graph(overlapping, {"x": torch.randn(4, 3)})
    d = parse_dot(g.to_dot())
    assert cluster_path(d, "u") == ["i = 1..N (N = 4)"]
    assert cluster_path(d, "x") == ["i = 1..N (N = 4)", "d = 1..D (D = 3)"]
    assert cluster_path(d, "v") == ["d = 1..D (D = 3)"]
    assert cluster_of(d, "v") != cluster_of(d, "x")
    assert g.networkx.nodes["x"]["plates"] == ("N", "D")
    assert set(g.networkx.edges) == {("u", "x"), ("v", "x")}


def test_deterministic_and_param_sites():
    def model(y=None):
        w = pyro.param("w", torch.tensor(0.5))
        a = pyro.sample("a", dist.Normal(0.0, 1.0))
        b = pyro.deterministic("b", 2 * a)
        with pyro.plate("N", 3):
            pyro.sample("y", dist.Normal(b, w.exp()), obs=y)

    g = plates.graph(model, {"y": torch.zeros(3)})
    assert kinds(g) == {"w": "parameter", "a": "latent", "b": "deterministic", "y": "observed"}
    assert set(g.networkx.edges) == {("a", "b"), ("b", "y"), ("w", "y")}
    d = parse_dot(g.to_dot())
    assert "dashed" in d["nodes"]["b"]["style"]
    assert g.factorization() == "p(y, a) = p(a) prod_i p_w(y_i | a)"


def test_hyperparameters_found_when_the_model_wants_floats():
    def model(y=None, scale: float = 2.0):
        s = float(scale)  # the tagged value loses its tag here; the value still identifies it
        mu = pyro.sample("mu", dist.Normal(0.0, s))
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    g = plates.graph(model, {"y": torch.tensor(0.3)})
    assert kinds(g)["scale"] == "hyperparameter" and ("scale", "mu") in g.networkx.edges

    def strict(y=None, scale: float = 2.0):
        assert isinstance(scale, float)
        mu = pyro.sample("mu", dist.Normal(0.0, scale))
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    g = plates.graph(strict, {"y": torch.tensor(0.3)})
    assert kinds(g)["scale"] == "hyperparameter" and ("scale", "mu") in g.networkx.edges

    def kl_weighted(x=None, beta: float = 1.0, gamma: float = 2.0, K: int = 3):
        pi = pyro.sample("pi", dist.Dirichlet(torch.full((K,), gamma)))  # torch.full drops the tag
        with pyro.poutine.scale(scale=beta):  # beta weighs the KL term; it is no argument of a prior
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z + pi[0], 1.0), obs=x)

    g = plates.graph(kl_weighted, {"x": torch.tensor(0.1)})
    assert kinds(g) == {"pi": "latent", "z": "latent", "x": "observed", "gamma": "hyperparameter"}
    assert set(g.networkx.edges) == {("gamma", "pi"), ("pi", "x"), ("z", "x")}
    assert g.networkx.nodes["z"]["distribution"] == "Normal(0, 1)"


def test_data_used_for_shapes_or_masks_is_no_dependency():
    def model(x, latent_dim: int = 2):
        with pyro.plate("N", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(latent_dim), 1.0).to_event(1))
            mask = x.sum(-1) > 0  # a mask computed from the data
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True).expand(x.shape), 1.0).to_event(1).mask(mask), obs=x)

    g = plates.graph(model, {"x": torch.randn(4, 3)})
    assert set(g.networkx.edges) == {("z", "x")}
    assert g.factorization() == "p(x, z) = prod_i p(z_i) p(x_i | z_i)"


# --- bad input -------------------------------------------------------------------------------------

def test_bad_input_is_one_clear_error():
    with pytest.raises(PlateError, match="colour: is not an option"):
        plates.graph("coin", colour="red")
    with pytest.raises(KeyError, match="known models"):
        plates.graph("no_such_model")
    with pytest.raises(plates.InputError, match="model: must be"):  # the suite's one type (a DataError)
        plates.graph(42)
    with pytest.raises(PlateError, match="data: the model cannot run"):
        plates.graph(S.linear_regression, {"X": torch.randn(4, 2), "y": torch.randn(5)})
    with pytest.raises(PlateError, match="guide: must be a callable"):
        plates.graph("coin", guide="normal")
    from ppl_models import DataError

    with pytest.raises(DataError, match="flips"):
        plates.graph("coin", {"flips": [0, 2]})


def test_subsampled_plate_is_labelled_with_the_full_size():
    """A mini-batch model's plate shows the data's N, not the batch size."""
    import numpy as np

    import ppl_models

    data = ppl_models.get("vae").default_data(seed=0)
    dot = plates.graph("vae", {**data, "x": np.asarray(data["x"])[:300], "batch_size": 64}).to_dot()
    assert "N = 300" in dot and "N = 64" not in dot


def test_a_program_that_fails_on_its_data_is_one_line_without_pyros_trace_table():
    """Pyro appends its trace table ("Trace Shapes: ...") to an error inside a plate; the drawing's error
    names the field and the first line only (it pasted the table before)."""
    def mismatched(y):
        mu = pyro.sample("mu", dist.Normal(0., 1.))
        with pyro.plate("N", 5):
            pyro.sample("y", dist.Normal(mu, 1.).expand([3]), obs=y)

    with pytest.raises(PlateError) as err:
        plates.graph(mismatched, {"y": torch.zeros(3)})
    assert str(err.value) == ("data: the model cannot run on this data: ValueError: Shape mismatch inside "
                              "plate('N') at site y dim -1, 5 vs 3")


def test_one_line_keeps_the_type_and_the_first_line_only():
    from ppl_models.errors import first_line, one_line

    exc = ValueError("Shape mismatch\nTrace Shapes:\n  mu dist |")
    assert one_line(exc) == "ValueError: Shape mismatch" and first_line(exc) == "Shape mismatch"
    assert one_line(RuntimeError()) == "RuntimeError" == first_line(RuntimeError("  "))
    assert one_line(RuntimeError("x" * 200), limit=20) == "RuntimeError: " + "x" * 17 + "..."
    invalid = ValueError("Expected parameter a (Tensor of shape ()) to satisfy the constraint GreaterThan(0.0), "
                         "but found invalid values:\n-1.0")
    assert first_line(invalid).endswith("but found invalid values")
    assert first_line(ValueError("ratio 1:")) == "ratio 1:"  # (one line: nothing was left out)


# --- Pyro's enumeration tutorial: a table picked by discrete sites (Vindex), a plate named after a site ---


def _vindex_model(first: str):
    """The enumeration tutorial's Vindex model as written there, except that `first` says which of x and y
    is drawn first: the table is indexed ``[..., x, y, :]`` either way."""
    from pyro.infer import config_enumerate
    from pyro.ops.indexing import Vindex
    from torch.distributions import constraints

    @config_enumerate
    def model():
        p = pyro.param("p", torch.randn(5, 4, 3, 2).exp(), constraint=constraints.simplex)
        draws = {}
        for name, k in sorted({"x": 4, "y": 3}.items(), key=lambda kv: kv[0] != first):
            draws[name] = pyro.sample(name, dist.Categorical(torch.ones(k)))
        with pyro.plate("z_plate", 5):
            p_xy = Vindex(p)[..., draws["x"], draws["y"], :]
            pyro.sample("z", dist.Categorical(p_xy))

    return model


@pytest.mark.parametrize("first", ["x", "y"])
def test_a_table_picked_by_discrete_sites_is_subscripted_in_indexing_order(first):
    """``Vindex(p)[..., x, y, :]`` is p_xy whichever site the program draws first (it read p_yx when y came
    first: the subscripts followed program order); the plate ``z_plate`` around the site z is indexed i, not
    z (which read z_z)."""
    g = plates.graph(_vindex_model(first))
    G = g.networkx
    assert G.nodes["z"]["distribution"] == "Categorical(p_xy)"
    assert G.graph["plates"]["z_plate"]["index"] == "i"
    assert "z_i" in g.factorization()
    assert G.nodes["z"]["distribution"] != "Categorical(p_yx)"


def test_a_table_indexed_twice_reads_in_the_order_of_its_indexings():
    """``probs[y][x]`` picks a row by y, then an entry by x: probs_yx, though x is drawn first."""
    def model():
        probs = pyro.param("probs", torch.ones(3, 4, 2) / 2)
        x = pyro.sample("x", dist.Categorical(torch.ones(4)), infer={"enumerate": "parallel"})
        y = pyro.sample("y", dist.Categorical(torch.ones(3)), infer={"enumerate": "parallel"})
        pyro.sample("w", dist.Categorical(probs[y][x]))

    assert plates.graph(model).networkx.nodes["w"]["distribution"] == "Categorical(probs_yx)"
