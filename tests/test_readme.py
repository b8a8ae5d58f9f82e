"""The README's example runs as written, and its set-up commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_readme_example_runs(tmp_path, monkeypatch):
    blocks = _python_blocks((REPO / "README.md").read_text())
    assert blocks, "the README has a python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    code = blocks[0].replace('method="nuts")', 'method="nuts", num_chains=2, num_samples=300, num_warmup=300, progress=False)')
    exec(compile(code, "README.md", "exec"), namespace)
    assert abs(float(namespace["post"].samples["p"].mean()) - 9 / 14) < 0.03
    assert (tmp_path / "coin.svg").exists()


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in readme and "make run" in readme
    assert "make test" in ci


def test_readme_shows_a_diagram_of_every_model_and_names_only_existing_images():
    import ppl_models

    readme = (REPO / "README.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    for image in images:
        assert (REPO / image).is_file(), f"README shows {image}, which does not exist"
    shown = {Path(image).stem.removeprefix("plates-") for image in images}
    shown |= {"linear_regression"} if "regression" in shown else set()
    assert set(ppl_models.names()) <= shown, set(ppl_models.names()) - shown
