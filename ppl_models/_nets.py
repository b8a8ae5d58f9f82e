"""Neural building blocks shared by the deep generative models (`vae`, `graph_vae`, `vgae`).

- `bound_module`: a network registered with Pyro's param store under a fixed name, so its weights are
  learned point parameters of the model (``pyro.module``). The param store is the source of truth:
  after ``pyro.clear_param_store()`` the next call builds a fresh network from the current torch RNG
  (so ``fit(..., seed=s)`` is reproducible), and as long as the store holds the weights every call
  returns the same, trained, network.
- `mlp`: a multilayer perceptron that maps any leading batch shape.
- `subsample_size`: the mini-batch size of a data plate from a model's ``batch_size`` option.
- `write_png_grid`: a grey-level PNG grid of small images, written with zlib alone (no plotting library).
- `roc_auc` and `average_precision`: ranking metrics for link prediction, in NumPy/SciPy.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Callable, Hashable, Sequence

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from scipy.stats import rankdata
from torch import nn
from torch.distributions import kl_divergence

from .data import DataError

_DIVIDER = "$$$"  # pyro.module's separator between module and parameter names
_NETWORKS: dict[str, tuple[Hashable, nn.Module]] = {}


def _stored_names(name: str) -> list[str]:
    return [k for k in pyro.get_param_store().keys() if k.startswith(name + _DIVIDER)]


def _is_bound(name: str, net: nn.Module) -> bool:
    store = pyro.get_param_store()
    for param_name, param in net.named_parameters():
        full = name + _DIVIDER + param_name
        if full not in store or store[full].data_ptr() != param.data_ptr():
            return False
    return True


def bound_module(name: str, key: Hashable, build: Callable[[], nn.Module]) -> nn.Module:
    """The network `name` with architecture `key`, registered with ``pyro.module``.

    Reuses the cached network while the param store holds its very weights; otherwise builds one with
    `build()` (fresh weights from the torch RNG), loading weights the store already holds for `name`
    (e.g. after ``pyro.get_param_store().load(...)``) when their shapes fit the architecture.
    """
    cached = _NETWORKS.get(name)
    if cached is not None and cached[0] == key and _is_bound(name, cached[1]):
        return pyro.module(name, cached[1])
    net = build()
    stored = _stored_names(name)
    if stored:
        store = pyro.get_param_store()
        shapes = {name + _DIVIDER + k: v.shape for k, v in net.named_parameters()}
        if set(stored) == set(shapes) and all(store[k].shape == shapes[k] for k in stored):
            pyro.module(name, net, update_module_params=True)
        else:  # weights of another architecture under this name: stale, replace them
            for k in stored:
                del store[k]
    _NETWORKS[name] = (key, net)
    return pyro.module(name, net)


def hidden_sizes(value: object, field: str = "hidden") -> tuple[int, ...]:
    """Hidden layer widths from an int or a sequence of ints; `DataError` otherwise."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value),)
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    try:
        sizes = tuple(int(v) for v in value)  # type: ignore[union-attr]
        ok = all(float(v) == int(v) for v in value) and all(s >= 1 for s in sizes)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(field, f"must be a positive whole number or a list of them, got {value!r}")
    return sizes


def analytic_kl_factor(name: str, q: dist.Distribution, p: dist.Distribution, z: torch.Tensor) -> None:
    """In a guide, right after ``z ~ q``: the factor KL(q || p) - (log q(z) - log p(z)). Zero in expectation,
    it makes the ELBO estimator use the exact KL (lower variance) while the model stays a plain program."""
    pyro.factor(name, kl_divergence(q, p) - (q.log_prob(z) - p.log_prob(z)), has_rsample=True)


def subsample_size(n: int, batch_size: int | None) -> int | None:
    """``subsample_size`` of a data plate of size `n`: None (the full batch) for a `batch_size` of 0, None
    or at least `n`; else the mini-batch size."""
    return None if not batch_size or batch_size >= n else int(batch_size)


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers of the given widths with `activation` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


# ---- images -------------------------------------------------------------------------------------------
def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a 2-D array in [0, 1] as an 8-bit grey-level PNG."""
    pixels = np.clip(np.round(np.asarray(image, dtype=float) * 255), 0, 255).astype(np.uint8)
    height, width = pixels.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)
    png = (b"\x89PNG\r\n\x1a\n"
           + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
           + _png_chunk(b"IDAT", zlib.compress(raw, 9))
           + _png_chunk(b"IEND", b""))
    path = Path(path)
    path.write_bytes(png)
    return path


def image_grid(images: np.ndarray, columns: int, zoom: int = 4, border: int = 1) -> np.ndarray:
    """Tile images (n, h, w) in [0, 1] into one array, `columns` per row, each enlarged `zoom` times."""
    images = np.asarray(images, dtype=float)
    n, h, w = images.shape
    rows = -(-n // columns)
    big = np.kron(images, np.ones((1, zoom, zoom)))
    hh, ww = h * zoom, w * zoom
    grid = np.full((rows * (hh + border) + border, columns * (ww + border) + border), 0.5)
    for k in range(n):
        r, c = divmod(k, columns)
        top, left = border + r * (hh + border), border + c * (ww + border)
        grid[top:top + hh, left:left + ww] = big[k]
    return grid


def write_png_grid(path: str | Path, images: np.ndarray, columns: int, zoom: int = 4) -> Path:
    """`image_grid` written as a PNG."""
    return write_png(path, image_grid(images, columns, zoom))


# ---- ranking metrics ----------------------------------------------------------------------------------
def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U statistic, ties counted one half)."""
    labels = np.asarray(labels).astype(bool)
    ranks = rankdata(np.asarray(scores, dtype=float))
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc needs both positive and negative labels")
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision: sum over thresholds of (recall step) x precision, as scikit-learn computes it."""
    labels = np.asarray(labels).astype(float)
    scores = np.asarray(scores, dtype=float)
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    # one threshold per distinct score
    last = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    tp = np.cumsum(labels)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / labels.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
