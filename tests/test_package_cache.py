"""The on-disk cache of packages compiled ahead of time: atomic, bounded, and it never touches a file it
did not write (`inference/fast/package_cache.py`). The builds here write bytes, not compiled packages."""

from __future__ import annotations

import os

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from inference.fast.package_cache import MAX_PACKAGES, cached_package, fingerprint, package_dir

KEY = "0123456789abcdef0123456789abcdef"


def _write(payload: bytes):
    def build(path):
        path.write_bytes(payload)
    return build


def test_a_package_is_built_once_moved_into_place_and_loaded_from_then_on(tmp_path):
    calls = []

    def build(path):
        calls.append(path)
        path.write_bytes(b"compiled")

    first = cached_package(KEY, build, lambda p: p.read_bytes(), folder=tmp_path)
    second = cached_package(KEY, build, lambda p: p.read_bytes(), folder=tmp_path)
    assert first == second == b"compiled"
    assert len(calls) == 1 and calls[0].parent == tmp_path and calls[0].name.startswith(".")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{KEY}.pt2"]


def test_an_interrupted_build_leaves_nothing_and_touches_nothing_else(tmp_path):
    mine = tmp_path / "my notes.txt"
    mine.write_text("keep me")

    def build(path):
        path.write_bytes(b"half a package")
        raise KeyboardInterrupt  # (what SIGINT, and SIGTERM under `ppl`, raise)

    with pytest.raises(KeyboardInterrupt):
        cached_package(KEY, build, lambda p: p, folder=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my notes.txt"]
    assert mine.read_text() == "keep me"


def test_the_cache_is_bounded_and_removes_only_its_own_packages(tmp_path):
    for i in range(MAX_PACKAGES + 5):
        old = tmp_path / f"{i:032x}.pt2"
        old.write_bytes(b"old")
        os.utime(old, (1_000_000 + i, 1_000_000 + i))
    users = [tmp_path / "model.pt2", tmp_path / "README", tmp_path / ("F" * 32 + ".pt2")]
    for f in users:
        f.write_text("the user's")
    cached_package(KEY, _write(b"new"), lambda p: p, folder=tmp_path)
    ours = [p for p in tmp_path.iterdir() if p not in users]
    assert len(ours) == MAX_PACKAGES
    assert (tmp_path / f"{KEY}.pt2").read_bytes() == b"new"
    assert not (tmp_path / f"{0:032x}.pt2").exists()  # the least recently used went first
    assert (tmp_path / f"{MAX_PACKAGES + 4:032x}.pt2").exists()
    assert all(f.read_text() == "the user's" for f in users)


def test_a_folder_that_cannot_be_written_gets_a_temporary_build_and_keeps_nothing(tmp_path):
    blocker = tmp_path / "not a folder"
    blocker.write_text("a file where the cache folder would go")
    seen = []
    loaded = cached_package(KEY, _write(b"built"), lambda p: (seen.append(p), p.read_bytes())[1],
                            folder=blocker / "compiled")
    assert loaded == b"built"
    assert not seen[0].exists()  # the temporary folder is gone once loaded
    assert blocker.read_text() == "a file where the cache folder would go"


def test_the_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PPL_CACHE_DIR", str(tmp_path / "mine"))
    assert package_dir() == tmp_path / "mine"
    monkeypatch.delenv("PPL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert package_dir() == tmp_path / "xdg" / "ppl-suite" / "compiled"


def test_the_fingerprint_follows_the_graph_its_data_its_input_shapes_and_the_processor(monkeypatch):
    """A package's kernels are built for the processor that compiled them (``-march=native``): a cache shared
    between machines of different vector instruction sets must not hand one's package to the other."""
    def recorded(data):  # a graph holding `data` as a constant, as a recorded leaf step holds the model's data
        return make_fx(lambda x: (x * data).sum())(torch.ones(3))

    x = torch.ones(3)
    same_a = fingerprint(recorded(torch.tensor([1.0, 2.0, 3.0])), (x,))
    same_b = fingerprint(recorded(torch.tensor([1.0, 2.0, 3.0])), (x,))
    other_data = fingerprint(recorded(torch.tensor([1.0, 2.0, 4.0])), (x,))
    other_shape = fingerprint(recorded(torch.tensor([1.0, 2.0, 3.0])), (torch.ones(1, 3),))
    assert same_a == same_b
    assert len({same_a, other_data, other_shape}) == 3
    assert len(same_a) == 32 and int(same_a, 16) >= 0
    here = torch.backends.cpu.get_cpu_capability()
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT" if here != "DEFAULT" else "AVX2")
    assert fingerprint(recorded(torch.tensor([1.0, 2.0, 3.0])), (x,)) != same_a
