"""The VAE: contract, bad input, the analytic-KL guide, ELBO / IWAE identities, the baseline, the PNG grids."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

import ppl_models
from inference import InputError, fit
from inference.structure import inspect_model
from ppl_models import DataError, vae


@pytest.fixture(scope="module")
def digits():
    return vae.digits_split(seed=0)


@pytest.fixture(scope="module")
def fitted(digits):
    """A short fit on all training digits (mini-batches of 128): enough to beat the baseline."""
    train, _ = digits
    post = fit("vae", data={"x": train, "batch_size": 128}, method="svi", num_steps=400, num_samples=4,
               progress=False, seed=0)
    return post


def _fresh(data: dict, seed: int = 1) -> None:
    """Untrained networks for `data` in a clean param store."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    vae.elbo_per_datum(data, data["x"][:2], num_samples=1)


def _se(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1) / np.sqrt(len(values)))


def test_registered_contract():
    spec = ppl_models.get("vae")
    assert spec.guide is vae.vae_guide and spec.engines == ("svi",)
    data = spec.default_data(seed=0)
    assert data["x"].shape == (1438, 64) and 0 <= data["x"].min() and data["x"].max() <= 1
    structure = inspect_model(spec.model, spec.validate(data))
    assert structure.local == ["z"] and structure.observed == ["x"] and structure.global_ == []
    # the subsampled plate is evaluated at full size
    assert structure.trace.nodes["z"]["value"].shape == (1438, 8)


def test_digits_split_is_disjoint_and_seeded():
    train, test = vae.digits_split(seed=3)
    again, _ = vae.digits_split(seed=3)
    assert np.array_equal(train, again) and len(train) + len(test) == 1797
    rows = {r.tobytes() for r in train}
    assert sum(r.tobytes() in rows for r in test) < 5  # the digits set has a few exact duplicates


@pytest.mark.parametrize("bad, field", [
    ({"x": np.full((4, 64), 1.5)}, "x"),
    ({"x": np.full((4, 64), np.nan)}, "x"),
    ({"x": np.zeros((4, 64)), "net": "rnn"}, "net"),
    ({"x": np.zeros((4, 64)), "likelihood": "poisson"}, "likelihood"),
    ({"x": np.zeros((4, 64)), "beta": -1.0}, "beta"),
])
def test_bad_input_names_the_field(bad, field):
    with pytest.raises((DataError, InputError)) as err:
        fit("vae", data=bad, method="svi", num_steps=1, progress=False)
    assert err.value.field == field


def test_conv_needs_square_images_and_bad_hidden_is_reported():
    with pytest.raises(DataError, match="net: 'conv' needs square images") as err:
        fit("vae", data={"x": np.zeros((4, 10)), "net": "conv"}, method="svi", num_steps=1, progress=False)
    assert err.value.field == "net"
    with pytest.raises(DataError, match="hidden: must be a positive whole number") as err:
        fit("vae", data={"x": np.zeros((4, 64)), "hidden": [0]}, method="svi", num_steps=1, progress=False)
    assert err.value.field == "hidden"


@pytest.mark.slow
@pytest.mark.parametrize("net", ["mlp", "conv"])
def test_minibatch_fit_converts_to_arviz(digits, net):
    x = digits[0][:60]
    post = fit("vae", data={"x": x, "batch_size": 16, "net": net, "hidden": 32}, method="svi", num_steps=5,
               num_samples=3, progress=False)
    idata = post.to_arviz()
    assert post.samples["z"].shape == (1, 3, 60, 8)
    assert idata.log_likelihood["x"].shape == (1, 3, 60)
    assert idata.posterior_predictive["x"].shape == (1, 3, 60, 64)
    assert np.isfinite(idata.log_likelihood["x"].values).all()


def test_same_seed_same_fit(digits):
    x = digits[0][:40]
    runs = [fit("vae", data={"x": x, "hidden": 16}, method="svi", num_steps=5, num_samples=2, progress=False,
                seed=7).loss for _ in range(2)]
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-5)


@pytest.mark.slow
def test_analytic_and_sampled_kl_give_the_same_elbo_in_expectation(digits):
    """The guide's analytic-KL factor has expectation zero: both estimators target the same ELBO."""
    x = torch.as_tensor(digits[1][:50])
    data = {"x": x, "hidden": 32}
    _fresh(data)
    elbo = Trace_ELBO()
    opts = {k: v for k, v in data.items()}
    draws = {kl: np.array([elbo.loss(vae.vae, vae.vae_guide, kl=kl, **opts) for _ in range(300)])
             for kl in ("analytic", "sampled")}
    diff = draws["analytic"].mean() - draws["sampled"].mean()
    assert abs(diff) < 4 * np.hypot(_se(draws["analytic"]), _se(draws["sampled"]))
    assert draws["analytic"].std() < draws["sampled"].std()  # and with less variance


def test_iwae_with_one_sample_equals_the_elbo_in_expectation(digits):
    x = digits[1][:100]
    data = {"x": x, "latent_dim": 4, "hidden": 32}
    _fresh(data)
    reps = 200
    iwae1 = np.array([vae.iwae_per_datum(data, x, K=1).mean() for _ in range(reps)])
    elbo = np.array([vae.elbo_per_datum(data, x, num_samples=1).mean() for _ in range(reps)])
    assert abs(iwae1.mean() - elbo.mean()) < 4 * np.hypot(_se(iwae1), _se(elbo))
    # the test can fail: IWAE with many samples is a different, larger number
    iwae64 = vae.iwae_per_datum(data, x, K=64).mean()
    assert iwae64 - elbo.mean() > 10 * np.hypot(_se(iwae1), _se(elbo))


@pytest.mark.slow
def test_elbo_improves_with_training(fitted, digits):
    loss = fitted.loss
    first, last = loss[:50], loss[-50:]
    assert first.mean() - last.mean() > 4 * np.hypot(_se(first), _se(last))
    _, test = digits
    trained = vae.elbo_per_datum(fitted.data, test)
    state = pyro.get_param_store().get_state()
    try:
        _fresh(fitted.data)
        untrained = vae.elbo_per_datum(fitted.data, test)
    finally:
        pyro.get_param_store().set_state(state)
    gain = trained - untrained
    assert gain.mean() > 4 * _se(gain)


@pytest.mark.slow
def test_iwae_bounds_the_elbo_from_above_and_beats_the_bernoulli_baseline(fitted, digits):
    train, test = digits
    pyro.set_rng_seed(0)
    elbo = vae.elbo_per_datum(fitted.data, test)
    iwae = vae.iwae_per_datum(fitted.data, test, K=100)
    gap = iwae - elbo
    assert gap.mean() > 4 * _se(gap)  # IWAE_100 >= ELBO, by more than noise
    baseline = vae.bernoulli_baseline(train, test)
    win = elbo - baseline
    assert win.mean() > 4 * _se(win)  # a lower bound of the VAE beats the exact independent-pixel model
    report = vae.evaluate(fitted.data, test, K=20)
    assert report["test_iwae_20"] > report["test_elbo"] > report["test_bernoulli_baseline"]


def test_bernoulli_baseline_matches_a_direct_computation():
    train = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    test = np.array([[0.5, 1.0]])
    p = np.array([3 / 5, 2 / 5])  # (count + 1) / (N + 2)
    expected = 0.5 * np.log(p[0]) + 0.5 * np.log(1 - p[0]) + np.log(p[1])
    np.testing.assert_allclose(vae.bernoulli_baseline(train, test), [expected])


def _read_png(path) -> np.ndarray:
    blob = path.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(blob):
        (length,) = struct.unpack(">I", blob[pos:pos + 4])
        tag, body = blob[pos + 4:pos + 8], blob[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", blob[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF
        if tag == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, width + 1)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:]


def test_image_grids_hold_the_originals_and_their_reconstructions(tmp_path, digits):
    x = digits[0][:8]
    data = ppl_models.get("vae").validate({"x": x, "hidden": 16})
    _fresh(data)
    paths = vae.save_image_grids(tmp_path / "run", data, num=8, columns=4)
    grid = _read_png(paths["reconstructions"])
    zoom, border = 4, 1
    assert grid.shape == (4 * (8 * zoom + border) + border, 4 * (8 * zoom + border) + border)
    tile = grid[border:border + 8 * zoom:zoom, border:border + 8 * zoom:zoom]  # top-left: the first original
    np.testing.assert_allclose(tile / 255.0, x[0].reshape(8, 8), atol=1 / 255 + 1e-6)
    samples = _read_png(paths["samples"])
    assert samples.shape == (2 * (8 * zoom + border) + border, 4 * (8 * zoom + border) + border)
