"""Data validation: each problem named by field, before any inference runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ppl_models
from ppl_models.data import DataError, Field, Option, validate

FIELDS = (Field("X", "real", (("N", "D"),)), Field("y", "binary", (("N",),)))
OPTIONS = {"K": Option(2, low=1), "prior": Option("normal", choices=("normal", "laplace"))}


def test_converts_and_fills_defaults():
    out = validate(FIELDS, OPTIONS, {"X": [[1, 2], [3, 4]], "y": [0, 1]})
    assert out["X"].dtype == torch.get_default_dtype() and out["X"].shape == (2, 2)
    assert out["K"] == 2 and out["prior"] == "normal"


@pytest.mark.parametrize(
    "data, field, problem",
    [
        ({"X": [[1, 2], [3, 4]], "y": [0, 1, 1]}, "y", "N = 3 along that axis but X has N = 2"),
        ({"X": [1, 2], "y": [0, 1]}, "X", "expected shape (N, D)"),
        ({"X": [[1, np.inf]], "y": [0]}, "X", "infinite"),
        ({"X": [[1, 2]], "y": [0.5]}, "y", "whole numbers"),
        ({"X": [[1, 2]]}, "y", "is missing"),
        ({"X": [[1, 2]], "y": [1], "K": 0}, "K", "at least 1"),
        ({"X": [[1, 2]], "y": [1], "K": 1.5}, "K", "whole number"),
        ({"X": [[1, 2]], "y": [1], "prior": "cauchy"}, "prior", "must be one of normal, laplace"),
        ({"X": [[1, 2]], "y": [1], "prior": 3}, "prior", "must be a string"),
        ({"X": [[1, 2]], "y": [True]}, None, None),
    ],
)
def test_problems_name_the_field(data, field, problem):
    if field is None:
        validate(FIELDS, OPTIONS, data)  # booleans are 0/1
        return
    with pytest.raises(DataError) as err:
        validate(FIELDS, OPTIONS, data)
    assert err.value.field == field and problem in err.value.problem


def test_registry_unknown_name_lists_known():
    with pytest.raises(KeyError) as err:
        ppl_models.get("nope")
    assert "coin" in str(err.value)
    assert "coin" in ppl_models.names()


def test_every_registered_model_validates_its_own_default_data():
    for name in ppl_models.names():
        spec = ppl_models.get(name)
        spec.validate(spec.default_data(seed=0))
        assert spec.description and spec.engines
