"""The fast backend as a sealed wing: one way in, both compilers, the chain dimension added either way."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from inference import fit
from inference import fast, options

ROOT = pathlib.Path(__file__).resolve().parent.parent
WING = ROOT / "inference" / "fast"


def _imports(path: pathlib.Path):
    """(module, names) of every ``from module import names`` and ``import module`` in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = node.module
            if node.level:  # relative: resolve against the file's package
                package = path.parent.relative_to(ROOT).parts
                module = ".".join(package[:len(package) - node.level + 1] + (node.module,))
            yield module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def _sources(*folders: str):
    for folder in folders:
        yield from (ROOT / folder).rglob("*.py")


def test_nothing_outside_the_wing_reaches_into_it():
    """Library code and benchmarks import only the package `inference.fast` (its public names); tests may
    import its modules, but no private name. Fails on the code before the wing (ppl/checks.py imported
    `inference.potential` and called `_eager`, ppl/demo.py `inference.fast_mcmc`)."""
    offences = []
    for path in _sources("inference", "ppl", "ppl_models", "plates", "benchmarks", "tests"):
        if WING in path.parents:
            continue
        for module, names in _imports(path):
            inside = module.startswith("inference.fast.")
            if inside and "tests" not in path.parts:
                offences.append(f"{path.relative_to(ROOT)} imports {module}")
            if (module == "inference.fast" or inside) and any(n.startswith("_") for n in names):
                offences.append(f"{path.relative_to(ROOT)} imports private {names} from {module}")
        text = path.read_text()
        for private in ("._eager(", "._log_density(", "._one_chain_graph", "._batched_graphs"):
            if private in text and path != pathlib.Path(__file__).resolve():
                offences.append(f"{path.relative_to(ROOT)} uses {private}")
    assert not offences, offences


def test_the_options_name_the_wings_choices():
    assert options.BY_NAME["batching"].choices == fast.BATCHINGS
    assert options.BY_NAME["adaptation"].choices == fast.ADAPTATIONS
    assert options.BY_NAME["compiler"].choices == fast.COMPILERS


def _regression(X, y=None):
    b = pyro.sample("b", dist.Normal(torch.zeros(X.shape[1]), 1.0).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", dist.Normal(X @ b, sigma), obs=y)


@pytest.fixture(scope="module")
def regression_data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 2, generator=g)
    return {"X": X, "y": X @ torch.tensor([1.0, -1.0]) + 0.5 * torch.randn(40, generator=g)}


def test_both_compilers_give_the_same_draws(regression_data):
    """The plain-Python compiler (no TorchScript) runs the same tree on the same recorded graph: the same
    transitions from the same seed as TorchScript's, and its note says the trajectory is not scripted.
    (Compared over a few transitions: the two executors round differently in the last place, and a long run
    of NUTS amplifies that into different trajectories.)"""
    runs = {c: fit(_regression, data=regression_data, num_chains=2, num_samples=5, num_warmup=0, seed=3,
                   progress=False, compiler=c) for c in ("torchscript", "python")}
    assert "and trajectory" in runs["torchscript"].notes[0]
    assert "compiled leapfrog step," in runs["python"].notes[0]
    for site in ("b", "sigma"):
        np.testing.assert_allclose(runs["python"].samples[site], runs["torchscript"].samples[site], rtol=1e-4,
                                   atol=1e-5)


def test_vectorised_and_chain_plate_agree_where_both_apply():
    """A model that broadcasts over a chain plate can run either way; the two potentials agree to
    rounding at the same points (checked against one plain trace per chain when prepared)."""
    def coin(flips):
        p = pyro.sample("p", dist.Beta(2.0, 2.0))
        with pyro.plate("flips", flips.shape[0]):
            pyro.sample("x", dist.Bernoulli(p), obs=flips)

    from inference.structure import inspect_model

    data = {"flips": torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])}
    structure = inspect_model(coin, data)
    z = torch.linspace(-2, 2, 5).unsqueeze(-1)
    values = {}
    for batching in ("vectorised", "chain plate"):
        potential = fast.Potential(coin, data, structure, num_chains=5, batching=batching)
        assert potential.prepare(z) == batching
        values[batching] = potential.value_and_grad(z)
    torch.testing.assert_close(values["vectorised"], values["chain plate"], rtol=1e-5, atol=1e-5)
    exact = torch.distributions.Beta(6.0, 4.0).log_prob(torch.sigmoid(z[:, 0]))  # 4 heads, 2 tails
    U = values["vectorised"][0]
    jacobian = torch.log(torch.sigmoid(z[:, 0]) * torch.sigmoid(-z[:, 0]))
    differences = (-U - exact - jacobian)
    torch.testing.assert_close(differences, differences[0].expand(5), rtol=1e-5, atol=1e-5)


def test_a_chain_plate_asked_of_a_program_that_does_not_broadcast_says_so(regression_data):
    post = fit(_regression, data=regression_data, num_chains=2, num_samples=10, num_warmup=10, progress=False,
               batching="chain plate")
    fallback = [n for n in post.notes if "unavailable" in n]
    assert len(fallback) == 1 and "chain plate" in fallback[0] and "\n" not in fallback[0], post.notes


def test_a_bad_choice_is_one_input_error():
    from inference.errors import InputError

    with pytest.raises(InputError, match="compiler"):
        fit(_regression, data={"X": torch.ones(3, 2), "y": torch.ones(3)}, compiler="xla")


def test_a_pyro_param_is_held_fixed_and_said_so():
    """A program with a ``pyro.param`` beside its sample sites (Pyro's mixed-effects HMM, the GP tutorial):
    NUTS draws the sample sites with the param at its current value, as Pyro's NUTS does, and says so.
    (It crashed after sampling: the energies carried a gradient into the param store.)"""
    def model(y):
        s = pyro.param("s", torch.tensor(2.0), constraint=dist.constraints.positive)
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("n", len(y)):
            pyro.sample("y", dist.Normal(mu, s), obs=y)

    pyro.clear_param_store()
    y = torch.tensor([0.5, 1.5, 1.0, 2.0])
    post = fit(model, data={"y": y}, num_chains=2, num_samples=300, num_warmup=200, progress=False)
    assert any("pyro.param sites s are held" in n for n in post.notes)
    # the exact posterior of mu with s = 2: Normal(sum(y) / (n + 4), sqrt(4 / (n + 4)))
    mean, sd = float(y.sum()) / 8, (4 / 8) ** 0.5
    assert abs(post.samples["mu"].mean() - mean) < 4 * sd / np.sqrt(200)


def test_the_programs_own_error_under_pyros_kernels_is_one_line():
    from inference.errors import ModelError

    def model(y):
        mu = pyro.sample("mu", dist.Uniform(0.0, 1.0))
        if mu.numpy() <= 0.0:  # a bug of the program's own (the value needs a gradient)
            return
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    with pytest.raises(ModelError, match=r"test_fast_wing.py:\d+: Can't call numpy"):
        fit(model, data={"y": torch.tensor(0.3)}, num_chains=2, num_samples=5, num_warmup=5, progress=False)
