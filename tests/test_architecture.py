"""The import graph (docs/architecture.py): no circles, no other package's private names, imports along the
layers, and docs/architecture.dot drawn from today's code. Each check is also shown failing on a small
package written with the fault."""

from __future__ import annotations

import importlib.util
import pickle
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _architecture():
    spec = importlib.util.spec_from_file_location("architecture", ROOT / "docs" / "architecture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


arch = _architecture()
FOUND = arch.imports()


def test_no_module_imports_itself_round_a_circle():
    assert arch.circles(FOUND) == []


def test_no_package_imports_another_packages_private_name():
    assert [f"{i.source} imports {i.target}.{i.name}" for i in arch.private_imports(FOUND)] == []


def test_imports_follow_the_layers():
    assert [f"{i.source} imports {i.target}" for i in arch.against_layers(FOUND)] == []


def test_the_picture_is_current():
    committed = (ROOT / "docs" / "architecture.dot").read_text(encoding="utf-8")
    assert committed == arch.to_dot(FOUND), "the code's imports changed: run python docs/architecture.py"


def test_the_walk_sees_imports_inside_functions_but_not_type_checking_ones():
    found = {(i.source, i.target, i.name) for i in FOUND}
    assert ("plates.plategraph", "plates.dot", "to_dot") in found  # deferred, inside a method
    # queries names BayesNet only for type hints; network imports queries inside its methods
    assert ("ppl_models.bayes_net.queries", "ppl_models.bayes_net.network", "BayesNet") not in found


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_the_checks_fail_on_a_faulty_package(tmp_path):
    root = _package(tmp_path, {
        "ppl_models/__init__.py": "",
        "ppl_models/a.py": "from .b import thing\n",
        "ppl_models/b.py": "def f():\n    from .a import other\n",  # a deferred import closes the circle
        "ppl_models/c.py": "from inference.api import fit\n",  # a model importing an engine
        "inference/__init__.py": "",
        "inference/api.py": "from ppl_models.a import _hidden\n",  # another package's private name
        "plates/__init__.py": "", "ppl/__init__.py": "",
    })
    found = arch.imports(root)
    assert arch.circles(found) == [["ppl_models.a", "ppl_models.b"]]
    assert [(i.source, i.name) for i in arch.private_imports(found)] == [("inference.api", "_hidden")]
    assert [(i.source, i.target) for i in arch.against_layers(found)] == [("ppl_models.c", "inference.api")]


# ---- the one error type --------------------------------------------------------------------------------
def test_every_bad_input_error_is_one_type():
    import inference
    import plates
    import ppl_models
    from inference.evidence import ZeroProbability
    from ppl_models.errors import InputError

    assert inference.InputError is InputError and plates.InputError is InputError
    for cls in (ppl_models.DataError, plates.PlateError, ZeroProbability):
        assert issubclass(cls, InputError)
    with pytest.raises(InputError, match="^model: must be a registered name"):
        inference.fit(42)
    with pytest.raises(InputError, match="^model: must be a registered name"):
        plates.graph(42)


@pytest.mark.parametrize("cls", ["InputError", "DataError", "PlateError"])
def test_errors_cross_process_boundaries_intact(cls):
    import plates
    import ppl_models

    error = {"InputError": ppl_models.InputError, "DataError": ppl_models.DataError,
             "PlateError": plates.PlateError}[cls]("flips", "must be 0 or 1")
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and (back.field, back.problem, str(back)) == (
        "flips", "must be 0 or 1", "flips: must be 0 or 1")
