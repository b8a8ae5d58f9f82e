"""Data fields and options of a model, and their validation.

Every model declares its data as `Field`s (kind and symbolic shape, e.g. ``X`` is ``("N", "D")`` and ``y``
is ``("N",)``) and its options as `Option`s. `validate` turns user input (lists, NumPy arrays, tensors,
numbers) into tensors and checks it once, up front, so that bad input becomes one `DataError` naming the
field and the problem instead of a traceback deep inside Pyro or a silent NaN.

Example:
    >>> from ppl_models.data import Field, validate
    >>> validate((Field("flips", "binary", (("N",),)),), {}, {"flips": [0, 1, 1]})["flips"]
    tensor([0., 1., 1.])
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .errors import InputError

KINDS = ("binary", "real", "unit", "positive", "category", "count", "object")


def show_value(value: Any) -> str:
    """A value for a message: plain numbers (never a NumPy repr such as ``np.float64(0.5)``), quoted text,
    else the type's name (a whole array pasted into one line helps nobody)."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):g}"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return show_value(value.item())
    return f"a {type(value).__name__}"


def float_limits(dtype: torch.dtype | None = None) -> tuple[str, float, float]:
    """(name, largest finite value, largest value whose square is finite) of a torch float dtype (default:
    the working dtype, `torch.get_default_dtype()`). A density's arithmetic squares its inputs (a Normal's
    (y - mu)^2, X^T X), so data beyond the second bound makes every density infinite."""
    dtype = dtype or torch.get_default_dtype()
    info = torch.finfo(dtype)
    return str(dtype).replace("torch.", ""), float(info.max), math.sqrt(float(info.max))


def range_problem(array: np.ndarray, dtype: torch.dtype | None = None) -> str | None:
    """Why finite numbers in `array` cannot be used in `dtype` arithmetic, or ``None`` if they can."""
    if array.size == 0 or array.dtype.kind not in "biuf":
        return None
    name, largest, usable = float_limits(dtype)
    if array.dtype.kind in "biu" and array.dtype.itemsize <= 4:
        return None  # below 2**31: always within range (float32 arithmetic is good to about 1.8e19)
    magnitude = np.abs(array.astype(np.float64, copy=False))
    finite = magnitude[np.isfinite(magnitude)] if array.dtype.kind == "f" else magnitude
    if finite.size == 0 or float(finite.max()) <= usable:
        return None
    for bound, why in ((largest, f"is beyond {name}'s range (largest {largest:g})"),
                       (usable, f"is too large for {name} arithmetic: its square overflows (largest usable "
                                f"{usable:.3g})")):
        bad = magnitude > bound
        if bad.any():
            index = _first_bad(bad)
            return f"{float(array[bad][0]):g} at index {index} {why}"
    return None


class DataError(InputError):
    """Bad model input (an `InputError`): `field` names the offending field, `problem` says what is wrong."""


@dataclass(frozen=True)
class Field:
    """One data field of a model.

    Attributes:
        name: keyword argument of the model.
        kind: ``binary`` (0/1), ``real``, ``unit`` (in [0, 1]), ``positive``, ``category`` (0..K-1 integers),
            ``count`` (non-negative integers) or ``object`` (anything; checked by `check` alone).
        dims: the allowed symbolic shapes, e.g. ``(("N",), ("N", "D"))``; symbols shared between fields
            must agree in size.
        doc: what the field holds.
        required: whether `validate` insists on the field (observed data always is).
        check: an extra check on the converted value returning a problem string or ``None``.
    """

    name: str
    kind: str
    dims: tuple[tuple[str, ...], ...] = ()
    doc: str = ""
    required: bool = True
    check: Callable[[Any], str | None] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"field {self.name}: kind must be one of {KINDS}")


@dataclass(frozen=True)
class Option:
    """A model option with its documented default.

    `choices` restricts a string option; `low`/`high` bound a number (inclusive); `kind` is one of
    ``float``, ``int``, ``str``, ``bool`` or ``any`` and defaults to the type of `default`.
    """

    default: Any
    doc: str = ""
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    kind: str | None = None

    @property
    def type_name(self) -> str:
        if self.kind:
            return self.kind
        if isinstance(self.default, bool):
            return "bool"
        if isinstance(self.default, int):
            return "int"
        if isinstance(self.default, float):
            return "float"
        if isinstance(self.default, str):
            return "str"
        return "any"

    def convert(self, name: str, value: Any) -> Any:
        kind = self.type_name
        if kind == "any":
            return value
        if kind == "bool":
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            raise DataError(name, f"must be true or false, got {show_value(value)}")
        if kind == "str":
            if not isinstance(value, str):
                raise DataError(name, f"must be a string, got {show_value(value)}")
            if self.choices and value not in self.choices:
                raise DataError(name, f"must be one of {', '.join(map(str, self.choices))}; got {value!r}")
            return value
        # numbers
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, np.ndarray) and value.size == 1:  # a one-row CSV column
            value = value.reshape(()).item()
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, (np.ndarray, list, tuple, torch.Tensor)):
            raise DataError(name, f"must be one number, got {len(value) if hasattr(value, '__len__') else 'several'} "
                                  "values (a CSV file holds one column per data field: give options in a .json file)")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DataError(name, f"must be a number, got {show_value(value)}")
        if kind == "int":
            if float(value) != int(value):
                raise DataError(name, f"must be a whole number, got {show_value(value)}")
            value = int(value)
        else:
            value = float(value)
        if math.isnan(value) or math.isinf(value):
            raise DataError(name, f"must be finite, got {show_value(value)}")
        problem = range_problem(np.asarray([value]))
        if problem:  # alpha = 1e308 would become inf (or overflow the density) once a tensor
            raise DataError(name, problem.replace(" at index 0", ""))
        if self.low is not None and value < self.low:
            raise DataError(name, f"must be at least {self.low:g}, got {show_value(value)}")
        if self.high is not None and value > self.high:
            raise DataError(name, f"must be at most {self.high:g}, got {show_value(value)}")
        return value


def _as_array(field: Field, value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except Exception:  # ragged lists and the like
        raise DataError(field.name, "must be a rectangular array of numbers (rows of different lengths, "
                                    "or values that are not numbers)") from None
    if array.dtype == object:
        raise DataError(field.name, "must be a rectangular array of numbers (got ragged or mixed values)")
    if array.dtype.kind in "USV":
        raise DataError(field.name, f"must be numeric, got {array.dtype.kind == 'U' and 'text' or 'bytes'}")
    if array.dtype.kind not in "biuf":
        raise DataError(field.name, f"must be numeric, got dtype {array.dtype}")
    return array


def _first_bad(mask: np.ndarray) -> str:
    index = np.argwhere(mask)[0]
    return str(tuple(int(i) for i in index)) if len(index) > 1 else str(int(index[0]))


def _check_numbers(name: str, array: np.ndarray, dtype: torch.dtype | None = None) -> None:
    """NaN, infinities and finite values too large for `dtype` arithmetic: one `DataError` naming the first."""
    if array.dtype.kind == "f":
        nan = np.isnan(array)
        if nan.any():
            raise DataError(name, f"contains NaN (first at index {_first_bad(nan)})")
        inf = np.isinf(array)
        if inf.any():
            raise DataError(name, f"contains an infinite value (first at index {_first_bad(inf)})")
    problem = range_problem(array, dtype)
    if problem:
        raise DataError(name, problem + "; rescale the data")


def _convert(field: Field, value: Any) -> torch.Tensor:
    array = _as_array(field, value)
    _check_numbers(field.name, array)
    kind = field.kind
    if kind in ("binary", "category", "count"):
        if array.dtype.kind == "f" and np.any(array != np.round(array)):
            bad = array != np.round(array)
            raise DataError(field.name, f"must hold whole numbers; index {_first_bad(bad)} is {array[bad][0]:g}")
    if kind == "binary":
        bad = (array != 0) & (array != 1)
        if bad.any():
            raise DataError(field.name, f"must be 0 or 1; index {_first_bad(bad)} is {array[bad][0]:g}")
    elif kind in ("category", "count"):
        bad = array < 0
        if bad.any():
            raise DataError(field.name, f"must be non-negative; index {_first_bad(bad)} is {array[bad][0]:g}")
    elif kind == "unit":
        bad = (array < 0) | (array > 1)
        if bad.any():
            raise DataError(field.name, f"must lie in [0, 1]; index {_first_bad(bad)} is {array[bad][0]:g}")
    elif kind == "positive":
        bad = array <= 0
        if bad.any():
            raise DataError(field.name, f"must be positive; index {_first_bad(bad)} is {array[bad][0]:g}")
    if kind == "category":
        return torch.as_tensor(array.astype(np.int64))
    return torch.as_tensor(array.astype(np.float64)).to(torch.get_default_dtype())


def _match_dims(field: Field, value: torch.Tensor, sizes: dict[str, tuple[int, str]]) -> None:
    candidates = [d for d in field.dims if len(d) == value.dim()]
    if field.dims and not candidates:
        wanted = " or ".join("(" + ", ".join(d) + (",)" if len(d) == 1 else ")") for d in field.dims)
        raise DataError(field.name, f"expected shape {wanted}, got {tuple(value.shape)}")
    if not candidates:
        return
    if value.numel() == 0:
        raise DataError(field.name, "is empty")
    for symbol, size in zip(candidates[0], value.shape):
        if symbol in sizes and sizes[symbol][0] != size:
            other_size, other = sizes[symbol]
            raise DataError(
                field.name,
                f"has {symbol} = {size} along that axis but {other} has {symbol} = {other_size}",
            )
        sizes.setdefault(symbol, (size, field.name))


def validate(fields: Sequence[Field], options: Mapping[str, Option], data: Mapping[str, Any]) -> dict:
    """Check and convert `data` (fields and options) for a model; raise `DataError` on the first problem.

    Missing options take their defaults; unknown keys are an error (a typo should not be ignored).
    """
    if not isinstance(data, Mapping):
        raise DataError("data", f"must be a mapping of field names to values, got {type(data).__name__}")
    known = {f.name for f in fields} | set(options)
    for key in data:
        if key not in known:
            raise DataError(str(key), f"unknown field; this model takes {', '.join(sorted(known))}")
    out: dict[str, Any] = {}
    sizes: dict[str, tuple[int, str]] = {}
    for f in fields:
        value = data.get(f.name)
        if value is None:
            if f.required:
                raise DataError(f.name, "is missing")
            continue
        if f.kind == "object":
            converted = value
        else:
            converted = _convert(f, value)
            _match_dims(f, converted, sizes)
        if f.check is not None:
            problem = f.check(converted)
            if problem:
                raise DataError(f.name, problem)
        out[f.name] = converted
    for name, option in options.items():
        out[name] = option.convert(name, data[name]) if name in data else option.default
        if name in data and name in sizes and out[name] != sizes[name][0]:  # e.g. N given beside the data
            size, other = sizes[name]
            raise DataError(name, f"is {show_value(out[name])} but {other} has {name} = {size}; leave {name} out "
                                  "when the data are given (it is read from them)")
    return out


def plain_data(fn: Callable, data: Mapping[str, Any]) -> dict:
    """Keyword arguments for an unregistered model callable, which has no declared fields.

    Lists and arrays become float tensors (observations of Bernoulli, Normal, Poisson... are floats, and
    Categorical casts for itself); tensors pass with their dtype, so an index array meant for indexing stays
    a long tensor (`fit` casts an integer tensor to float where a site observes it and its distribution
    needs floats). A tensor that requires grad is detached: data are constants. Numbers in arrays and
    tensors are checked as declared fields' are: NaN, infinities and values too large for the working
    float dtype are a `DataError` naming the field and the first index. A key the callable does not take
    is an error.
    """
    import inspect

    if not isinstance(data, Mapping):
        raise DataError("data", f"must be a mapping of argument names to values, got {type(data).__name__}")
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = not params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not takes_any and key not in params:
            raise DataError(str(key), f"is not an argument of {getattr(fn, '__name__', 'the model')}")
        if isinstance(value, torch.Tensor):
            value = value.detach()
            if value.is_floating_point():  # checked in its own dtype, which the model will compute in
                _check_numbers(str(key), value.to(torch.float64).cpu().numpy(), value.dtype)
        elif isinstance(value, (list, tuple, np.ndarray)):
            array = _as_array(Field(str(key), "real"), value)
            _check_numbers(str(key), array)
            value = torch.as_tensor(array.astype(np.float64)).to(torch.get_default_dtype())
        elif isinstance(value, (float, np.floating)):  # a scalar option: NaN or inf would be silent
            _check_numbers(str(key), np.asarray([value], dtype=np.float64))
        out[key] = value
    return out


def as_tensor(value: Any) -> torch.Tensor:
    """An array-like (list, NumPy array, tensor) as a tensor of the working float dtype, without checks: for
    arrays a model's own functions pass around (user input goes through `validate`)."""
    return torch.as_tensor(np.asarray(value), dtype=torch.get_default_dtype())
