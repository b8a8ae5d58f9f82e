"""Shared test fixtures: where the optional real data lives, and a quiet default for progress bars."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


# The tests' tensors are small: intra-op threads only add contention (badly so on a loaded 2-core machine).
torch.set_num_threads(1)

# Leaf steps compiled ahead of time go to a folder of the test run, not the user's ~/.cache (the variable
# passes to the subprocesses the tests start: `make run`, `ppl`, notebooks)
if "PPL_CACHE_DIR" not in os.environ:
    import tempfile

    _COMPILED = tempfile.TemporaryDirectory(prefix="ppl-test-cache-")  # (removed when the process ends)
    os.environ["PPL_CACHE_DIR"] = _COMPILED.name


def shared_data_dir() -> Path | None:
    """`../shared/data` beside the checkout (or $PPL_SHARED_DATA); None when absent (a user's checkout)."""
    candidates = [os.environ.get("PPL_SHARED_DATA"), REPO.parent / "shared" / "data", Path("/work/shared/data")]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data is absent (reference posteriors and Cora ship only beside the repository)")
    return path


@pytest.fixture
def posteriordb(shared_data):
    """name -> (its data.json, its reference.json's summary) from `../shared/data/posteriordb` (the test is
    skipped where that is absent)."""
    def read(name: str) -> tuple[dict, dict]:
        folder = shared_data / "posteriordb" / name
        return (json.loads((folder / "data.json").read_text()),
                json.loads((folder / "reference.json").read_text())["summary"])

    return read


@pytest.fixture
def float64():
    """Run a test in double precision (closed-form oracles compared to 1e-6), then restore the default."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def pgmpy_sprinkler():
    """The sprinkler network typed into pgmpy by hand, independently of the suite's BIF file: an oracle for
    the Bayesian-network tests (skips when pgmpy is missing)."""
    pytest.importorskip("pgmpy")
    from pgmpy.factors.discrete import TabularCPD
    from pgmpy.models import DiscreteBayesianNetwork

    yn = ["yes", "no"]
    model = DiscreteBayesianNetwork([("cloudy", "sprinkler"), ("cloudy", "rain"), ("sprinkler", "wet_grass"),
                                     ("rain", "wet_grass")])
    model.add_cpds(
        TabularCPD("cloudy", 2, [[0.5], [0.5]], state_names={"cloudy": yn}),
        TabularCPD("sprinkler", 2, [[0.1, 0.5], [0.9, 0.5]], ["cloudy"], [2],
                   state_names={"sprinkler": yn, "cloudy": yn}),
        TabularCPD("rain", 2, [[0.8, 0.2], [0.2, 0.8]], ["cloudy"], [2], state_names={"rain": yn, "cloudy": yn}),
        TabularCPD("wet_grass", 2, [[0.99, 0.9, 0.9, 0.0], [0.01, 0.1, 0.1, 1.0]], ["sprinkler", "rain"], [2, 2],
                   state_names={"wet_grass": yn, "sprinkler": yn, "rain": yn}),
    )
    assert model.check_model()
    return model


# a dimension ArviZ named itself (`p_dim_0`): the suite should have named it from a plate or the site's states
PLACEHOLDER_DIM = re.compile(r"_dim_\d+$")


def small_data(name: str) -> dict:
    """A catalogue model's default data, cut down where a fit on all of it takes seconds (for tests of the
    result's structure, which does not depend on the amount of data)."""
    import ppl_models

    data = ppl_models.get(name).default_data(seed=0)
    if name == "vae":
        return {**data, "x": data["x"][:24], "batch_size": 24}
    if name == "graph_vae":
        return {**data, "adjacency": data["adjacency"][:6], "features": data["features"][:6], "batch_size": 6}
    if name in ("factor_analysis", "ppca"):
        return {**data, "x": data["x"][:40]}
    if name == "gmm":  # (HMC's fixed trajectory on the 150-point mixture took 80 s)
        return {**data, "x": data["x"][::3]}
    return data


# ---- commands run as a user runs them ------------------------------------------------------------------
BIN = Path(sys.executable).parent  # the environment the tests run in: where `make` put `ppl`


def user_env() -> dict:
    """A user's shell: the suite's environment on PATH; not inside `make test`'s make (whose MAKEFLAGS would
    have a nested make print "make[1]: Leaving directory ...")."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    return {**env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONWARNINGS": "ignore"}


def run_as_user(argv: list[str], cwd: Path, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    """`argv` run in `cwd` from a user's shell; with `check`, a non-zero exit fails with the output's tail."""
    done = subprocess.run(argv, cwd=cwd, env=user_env(), capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, \
            f"{shlex.join(argv)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done
