"""The README's example runs as written, and its set-up commands are the ones CI runs."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, run_as_user, user_env


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


# ---- every shell command of the README, run as written ------------------------------------------------
def _readme_commands() -> list[list[str]]:
    """The README's shell commands (lines of its ```bash blocks), as argument lists, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    return [argv for block in blocks for line in block.splitlines() if (argv := shlex.split(line, comments=True))]


def test_the_readme_shows_only_commands_a_test_runs():
    """`make test` is what CI runs (above); `make run` runs in tests/test_demo.py (whose report tests read
    its page); every other command is run by a test below."""
    commands = _readme_commands()
    assert ["make", "run"] in commands and ["make", "test"] in commands and ["make", "notebooks"] in commands
    assert ["ppl", "render", "coin_mixture", "--out", "cm.svg", "--query", "x _|_ theta | z"] in commands
    unknown = [c for c in commands if c[0] != "ppl" and c not in (["make", "run"], ["make", "test"], ["make", "notebooks"])]
    assert not unknown, f"no test runs these README commands: {unknown}"


@pytest.mark.slow
def test_every_ppl_command_of_the_readme_runs_as_written(tmp_path):
    outputs = {}
    for argv in (c for c in _readme_commands() if c[0] == "ppl"):
        outputs[shlex.join(argv)] = run_as_user(argv, tmp_path).stdout
    assert "true (d-separated)" in outputs["ppl render coin_mixture --out cm.svg --query 'x _|_ pi | z'"]
    assert "false (d-connected)" in outputs["ppl render coin_mixture --out cm.svg --query 'x _|_ theta | z'"]
    assert (tmp_path / "cm.svg").is_file()
    assert "flips" in outputs["ppl list"] and "prior_scale" in outputs["ppl list linear_regression"]
    assert (tmp_path / "runs" / "coin-nuts" / "posterior.nc").is_file()
    assert json.loads((tmp_path / "runs" / "coin-map" / "run.json").read_text())["model_options"] == {"alpha": 2, "beta": 2}
    vae = next(text for command, text in outputs.items() if command.startswith("ppl fit vae"))
    assert "held-out ELBO" in vae and "z[0, 0]" not in vae, vae[:3000]
    assert (tmp_path / "runs" / "vae-svi" / "vae_reconstructions.png").is_file()


@pytest.mark.slow
def test_make_notebooks_as_written_serves_the_notebooks():
    """`make notebooks` installs JupyterLab and serves notebooks/ (stopped once it prints its address;
    BROWSER=true stands in for the browser it would open)."""
    server = subprocess.Popen(["make", "notebooks"], cwd=REPO, env={**user_env(), "BROWSER": "true"}, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            line = server.stdout.readline()
            seen.append(line)
            if "http://" in line and "/lab" in line:
                break
            assert line or server.poll() is None, "make notebooks stopped:\n" + "".join(seen[-40:])
        else:
            pytest.fail("make notebooks printed no address in 600 s:\n" + "".join(seen[-40:]))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
