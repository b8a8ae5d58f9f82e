"""Rendering: every format, the missing-Graphviz fallback, every registered model, no side effects."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pyro
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import plate_standins as S  # noqa: E402

import plates  # noqa: E402
from plates import GraphvizMissingWarning, PlateError  # noqa: E402

needs_dot = pytest.mark.skipif(plates.dot_program() is None, reason="Graphviz 'dot' is not installed")


def mixture():
    return plates.graph(S.coin_mixture, {"flips": torch.tensor([1.0, 0.0, 1.0])}, **S.MIXTURE_DISPLAY)


def test_dot_file_needs_no_graphviz(tmp_path):
    g = mixture()
    out = g.render(tmp_path / "m.dot")
    assert out == tmp_path / "m.dot" and out.read_text() == g.to_dot()
    assert out.read_text().startswith('digraph "coin_mixture" {')


@needs_dot
@pytest.mark.parametrize("suffix,magic", [(".svg", b"<?xml"), (".png", b"\x89PNG"), (".pdf", b"%PDF")])
def test_graphviz_formats(tmp_path, suffix, magic):
    out = mixture().render(tmp_path / f"m{suffix}")
    assert out.suffix == suffix and out.read_bytes().startswith(magic)
    if suffix == ".svg":
        svg = out.read_text()
        assert "θ" in svg and "π" in svg and "j = 1..N (N = 3)" in svg
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary files left
    assert out.stat().st_mode & 0o044  # readable by others, like any file the user writes


@needs_dot
def test_tikz(tmp_path):
    tex = mixture().render(tmp_path / "m.tex").read_text()
    assert tex.startswith(r"\documentclass[tikz")
    assert tex.rstrip().endswith(r"\end{document}")
    assert tex.count(r"\node[obs]") == 1 and tex.count(r"\node[latent]") == 3 and tex.count(r"\node[const") == 3
    assert tex.count(r"\draw[plate]") == 2
    assert r"$j = 1, \dots, N$ $(N = 3)$" in tex and r"$k = 1, \dots, K$ $(K = 2)$" in tex
    assert r"\theta \sim \mathrm{Beta}(\alpha, \beta)" in tex
    assert tex.count(r"\draw[->]") == 6
    vae = plates.graph(S.vae, {"x": torch.ones(3, 4)}, guide=S.vae_guide, **S.VAE_DISPLAY).to_tikz()
    assert vae.count(r"\draw[infer]") == 2
    assert tex.count("{") == tex.count("}")


def test_missing_graphviz_writes_dot_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert plates.dot_program() is None
    g = mixture()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = g.render(tmp_path / "m.svg")
    assert out == tmp_path / "m.dot" and out.read_text() == g.to_dot()
    assert not (tmp_path / "m.svg").exists()
    (w,) = [c for c in caught if issubclass(c.category, GraphvizMissingWarning)]
    message = str(w.message)
    assert "\n" not in message and "m.dot" in message and "m.svg" in message and "dot" in message
    with pytest.raises(plates.GraphvizNotFound):
        g.to_tikz()


def test_unknown_format(tmp_path):
    with pytest.raises(PlateError, match=r"unknown diagram format \.jpg"):
        mixture().render(tmp_path / "m.jpg")


def test_drawing_leaves_rng_and_param_store_alone():
    pyro.clear_param_store()
    torch.manual_seed(3)
    state = torch.get_rng_state()
    plates.graph(S.vae, {"x": torch.ones(3, 4)}, guide=S.vae_guide)
    assert torch.equal(torch.get_rng_state(), state)
    assert list(pyro.get_param_store().keys()) == []


def test_every_registered_model_renders(tmp_path):
    import ppl_models

    names = ppl_models.names()
    assert "coin" in names
    for name in names:
        g = plates.graph(name)
        G = g.networkx
        assert len(G) > 0, name
        assert {d["kind"] for _, d in G.nodes(data=True)} <= {
            "latent", "observed", "deterministic", "parameter", "hyperparameter"}, name
        assert any(d["kind"] == "observed" for _, d in G.nodes(data=True)), name
        for p, info in g.plates.items():
            assert info["size"] >= 1 and info["index"], (name, p)
        assert g.factorization().startswith("p("), name
        dot = g.to_dot()
        assert all(f'"{n}" [' in dot for n in G), name
        out = g.render(tmp_path / f"{name}.svg")
        assert out.stat().st_size > 0, name


def test_command_line(tmp_path, capsys):
    from plates.__main__ import main

    assert main(["coin", "--query", "flips[1] _|_ flips[2] | p", "--out", str(tmp_path / "c.dot")]) == 0
    out = capsys.readouterr().out
    assert "flips[1] _|_ flips[2] | p: d-separated" in out and (tmp_path / "c.dot").exists()
    assert main(["coin", "--query", "flips[1] _|_ flips[2]"]) == 0
    assert "not d-separated" in capsys.readouterr().out
    assert main(["coin", "--query", "flips _|_ q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "q: is not a node" in err
    assert main(["no_such_model"]) == 2
    assert "known models" in capsys.readouterr().err
    assert main(["--all", "--out", str(tmp_path / "all"), "--format", "dot"]) == 0
    assert (tmp_path / "all" / "coin.dot").exists()
