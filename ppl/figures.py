"""The figures of a run (matplotlib, Agg backend): trace plots for MCMC, loss curves for SVI/MAP/MLE,
state frequencies for posteriors drawn by exact enumeration, the factorization typeset by mathtext, and
the pictures a model's own results are read from (a VAE's reconstructions and samples, a GraphVAE's
sampled graphs).

Each plotting function writes one file and returns its path; none needs a display. `run_figures` writes
the ones that apply to a fit into its run directory (`ppl fit` and `ppl demo` both call it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

MAX_ROWS = 6  # scalar series in a trace plot
MAX_PER_SITE = 3  # components of one vector site in a trace plot
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
LOSS_NAMES = {"svi": "negative ELBO", "map": "negative log posterior density", "mle": "negative log-likelihood"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _series(post: Any) -> list[tuple[str, np.ndarray]]:
    """Up to MAX_ROWS (label, draws (chain, draw)) pairs: global sites first, then local ones."""
    structure = post.structure
    order = (structure.global_ + structure.local) if structure is not None else list(post.samples)
    out = []
    for site in order:
        if site not in post.samples:
            continue
        draws = np.asarray(post.samples[site], dtype=float)
        flat = draws.reshape(draws.shape[0], draws.shape[1], -1)
        for j in range(min(flat.shape[-1], MAX_PER_SITE)):
            index = np.unravel_index(j, draws.shape[2:]) if draws.ndim > 2 else ()
            label = f"{site}[{','.join(str(i) for i in index)}]" if index else site
            out.append((label, flat[..., j]))
            if len(out) == MAX_ROWS:
                return out
    return out


def trace_plot(post: Any, path: Path) -> Path:
    """Per scalar: the draws' histogram by chain (left) and the chains' traces (right)."""
    plt = _plt()
    series = _series(post)
    if not series:
        raise ValueError("no continuous draws to plot")
    fig, axes = plt.subplots(len(series), 2, figsize=(9, 1.7 * len(series) + 0.5), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 2.2]})
    for row, (label, draws) in enumerate(series):
        left, right = axes[row]
        bins = np.histogram_bin_edges(draws.ravel(), bins=30)
        for c in range(draws.shape[0]):
            color = COLORS[c % len(COLORS)]
            left.hist(draws[c], bins=bins, histtype="step", density=True, color=color, lw=1.2)
            right.plot(np.arange(draws.shape[1]), draws[c], color=color, lw=0.6, alpha=0.8)
        left.set_ylabel(label)
        left.set_yticks([])
        right.set_xlim(0, draws.shape[1] - 1)
    axes[0, 0].set_title("posterior draws, by chain", fontsize=10)
    axes[0, 1].set_title(f"trace ({series[0][1].shape[0]} chains x {series[0][1].shape[1]} draws after warm-up)",
                         fontsize=10)
    axes[-1, 1].set_xlabel("draw")
    fig.tight_layout()
    return _save(fig, path)


def state_plot(post: Any, path: Path, states: dict[str, list[str]] | None = None) -> Path:
    """Posterior state frequencies of discrete sites (draws made by exact enumeration, no chain to trace)."""
    plt = _plt()
    sites = [s for s in post.samples if np.asarray(post.samples[s]).shape[2:] == ()][:MAX_ROWS]
    if not sites:
        raise ValueError("no scalar discrete sites to plot")
    fig, axes = plt.subplots(1, len(sites), figsize=(2.2 * len(sites) + 0.6, 2.4), squeeze=False)
    for ax, site in zip(axes[0], sites):
        draws = np.asarray(post.samples[site]).astype(int).ravel()
        names = (states or {}).get(site) or [str(i) for i in range(int(draws.max()) + 1)]
        freq = np.bincount(draws, minlength=len(names))[: len(names)] / draws.size
        ax.bar(range(len(names)), freq, color=COLORS[0])
        ax.set_xticks(range(len(names)), names, rotation=30 if max(map(len, names)) > 4 else 0)
        ax.set_ylim(0, 1)
        ax.set_title(site, fontsize=10)
    axes[0, 0].set_ylabel("posterior frequency")
    fig.suptitle(f"state frequencies of {next(iter(post.samples.values())).size} exact draws", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def loss_plot(post: Any, path: Path) -> Path:
    """The optimisation objective by step; with many steps, a second panel zooms on the second half."""
    plt = _plt()
    loss = np.asarray(post.loss, dtype=float)
    if loss.size == 0:
        raise ValueError("no loss history to plot")
    name = LOSS_NAMES.get(post.method, "loss")
    steps = np.arange(1, loss.size + 1)
    many = loss.size >= 40
    fig, axes = plt.subplots(1, 2 if many else 1, figsize=(9 if many else 5, 2.8), squeeze=False)
    ax = axes[0, 0]
    ax.plot(steps, loss, color=COLORS[0], lw=0.8, marker=None if many else "o", ms=3)
    if loss.min() > 0 and loss.max() / loss.min() > 20:  # a steep start would flatten the rest
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(name)
    ax.set_title(f"{name} over {loss.size} steps (final {loss[-1]:.4g})", fontsize=10)
    if many:
        half = loss.size // 2
        zoom = axes[0, 1]
        zoom.plot(steps[half:], loss[half:], color=COLORS[0], lw=0.6, alpha=0.6)
        window = max(loss.size // 50, 5)
        if loss.size - half > window:
            smooth = np.convolve(loss[half:], np.ones(window) / window, mode="valid")
            zoom.plot(steps[half + window - 1:], smooth, color=COLORS[1], lw=1.2, label=f"mean of {window}")
            zoom.legend(fontsize=8, frameon=False)
        zoom.set_xlabel("step")
        zoom.set_title("second half", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def formula(latex: str, path: Path, fontsize: int = 13) -> Path:
    """Typeset a LaTeX formula with matplotlib's mathtext (no LaTeX installation needed)."""
    plt = _plt()
    fig = plt.figure(figsize=(0.1, 0.1))
    fig.text(0, 0, f"${latex}$", fontsize=fontsize)
    try:
        return _save(fig, path, bbox_inches="tight", pad_inches=0.04, dpi=None)
    except (ValueError, RuntimeError):
        plt.close(fig)
        raise


def _save(fig, path: Path, **kwargs) -> Path:
    plt = _plt()
    kwargs.setdefault("dpi", 110)
    path = Path(path)
    try:
        fig.savefig(path, **kwargs)
    finally:
        plt.close(fig)
    return path


class Figure(NamedTuple):
    """A figure written into a run directory: its file name there and a caption for the reader."""

    file: str
    caption: str


def run_figures(post: Any, folder: Path) -> list[Figure]:
    """The figures of a fit, written into `folder`: the trace (MCMC with continuous sites), the loss
    (SVI, MAP, MLE) or the state frequencies (exact draws, by the state names the model declares), then
    the model's own pictures."""
    folder = Path(folder)
    states = post.structure.states if post.structure is not None else None
    continuous = bool(post.structure and post.structure.continuous)
    figures = []
    if post.method in ("nuts", "hmc") and continuous:
        trace_plot(post, folder / "trace.png")
        figures.append(Figure("trace.png", "MCMC: the draws of each chain (left) and their traces (right); "
                                           "chains that agree overlap"))
    elif post.loss is not None and len(post.loss):
        loss_plot(post, folder / "loss.png")
        figures.append(Figure("loss.png", f"{post.method.upper()}: the objective by optimisation step"))
    elif post.samples:
        state_plot(post, folder / "states.png", states)
        figures.append(Figure("states.png", "posterior state frequencies (the draws come from exact "
                                            "enumeration: there is no chain to trace)"))
    pictures = MODEL_PICTURES.get(post.model_name or "")
    if pictures is not None:
        with post.learned_parameters():
            figures += pictures(post, folder)
    return figures


def _vae_pictures(post: Any, folder: Path) -> list[Figure]:
    from ppl_models import vae

    paths = vae.save_image_grids(folder, post.data)
    return [Figure(paths["reconstructions"].name, "VAE: training digits (odd rows) and their reconstructions "
                                                  "(even rows: the decoder's mean at the encoder's mean)"),
            Figure(paths["samples"].name, "VAE: new digits, the decoder's mean at z drawn from the prior N(0, I)")]


def _graph_vae_pictures(post: Any, folder: Path, num: int = 12) -> list[Figure]:
    import networkx as nx

    from ppl_models import graph_vae

    plt = _plt()
    graphs = graph_vae.sample_graphs(post.data, num=num, seed=0)
    fig, axes = plt.subplots(2, num // 2, figsize=(1.5 * num / 2, 3.2))
    for ax, g in zip(axes.ravel(), graphs):
        ax.set_axis_off()
        if g.number_of_nodes():
            nx.draw_networkx(g, pos=nx.kamada_kawai_layout(g) if g.number_of_nodes() > 1 else None, ax=ax,
                             node_size=40, with_labels=False, node_color=COLORS[0], edge_color="#555")
        member = graph_vae.family_member(g)
        ax.set_title(member or "not a family member", fontsize=7)
    fig.suptitle(f"{num} graphs drawn from the GraphVAE (z from the prior), named by the family member they are",
                 fontsize=9)
    fig.tight_layout()
    _save(fig, folder / "graph_vae_samples.png")
    return [Figure("graph_vae_samples.png", "GraphVAE: graphs decoded from z ~ N(0, I), each titled by the "
                                            "training-family member it is isomorphic to")]


# a model's own pictures, by registered name: the results a reader looks at beside the summary
MODEL_PICTURES: dict[str, Callable[[Any, Path], list[Figure]]] = {
    "vae": _vae_pictures,
    "graph_vae": _graph_vae_pictures,
}
