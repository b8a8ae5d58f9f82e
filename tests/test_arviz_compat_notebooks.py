"""`arviz_compat.plot_forest_fits`, the notebooks' forest plot of several fits, under whichever ArviZ is
installed (0.x: ``az.plot_forest`` of a list with ``model_names``; 1.x: of a dict {name: DataTree}): fits of
different sizes (four chains, one chain of guide draws, a single point) side by side, one legend entry per
fit, the intervals' axes returned, no warning, the fits left as they were."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from inference import arviz_compat as azc  # noqa: E402


def _fit(chains: int, draws: int, seed: int):
    rng = np.random.default_rng(seed)
    posterior = azc.dict_to_dataset({"p": rng.beta(9.0, 5.0, (chains, draws)),
                                     "coef": rng.normal(3.0, 1.0, (chains, draws, 2))}, dims={"coef": ["coef_dim"]})
    return azc.from_datasets({"posterior": posterior})


def test_plot_forest_fits_of_different_sizes():
    fits = {"NUTS": _fit(4, 200, 0), "SVI": _fit(1, 300, 1), "MAP": _fit(1, 1, 2)}
    before = {name: azc.group(data, "posterior").copy(deep=True) for name, data in fits.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ax = azc.plot_forest_fits(fits, var_names=["p", "coef"], hdi_prob=0.94)
    try:
        assert isinstance(ax, matplotlib.axes.Axes)
        assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == sorted(fits)
        # the value axis holds every fit's 94% interval: p in (0, 1) and coef near 3
        low, high = ax.get_xlim()
        nuts = azc.group(fits["NUTS"], "posterior")
        assert low < float(nuts["p"].quantile(0.03)) and high > float(nuts["coef"].quantile(0.97))
        assert high < 10
        for name, data in fits.items():
            xr.testing.assert_identical(azc.group(data, "posterior"), before[name])
    finally:
        plt.close(ax.figure)


def test_plot_forest_fits_coords_and_figsize():
    fits = {"a": _fit(2, 100, 3), "b": _fit(2, 100, 4)}
    ax = azc.plot_forest_fits(fits, var_names=["coef"], coords={"coef_dim": [0]}, figsize=(5, 3))
    try:
        assert tuple(ax.figure.get_size_inches()) == (5, 3)
        assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["a", "b"]
    finally:
        plt.close(ax.figure)
