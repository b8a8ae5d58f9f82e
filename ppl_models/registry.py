"""The model registry: every model is a plain Pyro callable plus a `ModelSpec` describing it.

A spec says what data the model takes (`fields`), which options it has (with defaults), which inference
methods apply (`engines`), and how to build its embedded default data set. It carries no inference or
drawing code: engines and renderers read the spec, never the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .data import DataError, Field, validate

ALL_ENGINES: tuple[str, ...] = ("nuts", "hmc", "svi", "map", "mle")


@dataclass(frozen=True)
class ModelSpec:
    """Everything the suite knows about one model.

    Attributes:
        name: registry name, e.g. ``"coin"``.
        model: the Pyro program, called as ``model(**data)``.
        guide: an amortized guide (same signature as the model) or ``None`` for auto-guides.
        default_data: ``default_data(seed=0) -> dict``, the embedded default data set (data and options).
        engines: the inference methods that apply, the first being the default.
        description: one line for listings; the model's docstring holds the generative story.
        fields: the data fields (observed values and covariates) with their kinds and shapes.
        options: model options and their defaults (prior family, scales, K, ...).
        display: drawing hints that are facts about the model's notation, not drawing code:
            ``{"labels": {site: label}, "plate_index": {plate: index letter}}``.
        demo: engine options for a quick run of the default engine (used by ``ppl demo``), e.g.
            ``{"num_chains": 4, "num_samples": 300}``.
        relabel: for a posterior that does not change under relabelling of its components (mixtures)
            or rotation (factor loadings), a function of the draws ``{site: (chain, draw, ...)}`` that
            puts each draw in one canonical form; ``ppl fit`` and ``ppl demo`` apply it before the
            summary and the diagnostics, and say so. ``None``: the model identifies itself.
    """

    name: str
    model: Callable[..., Any]
    guide: Callable[..., Any] | None
    default_data: Callable[..., dict]
    engines: tuple[str, ...]
    description: str
    fields: tuple[Field, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    display: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    demo: Mapping[str, Any] = field(default_factory=dict)
    relabel: Callable[[Mapping[str, Any]], dict] | None = None

    @property
    def default_method(self) -> str:
        return self.engines[0]

    def validate(self, data: Mapping[str, Any]) -> dict:
        """Check `data` against the fields and options; return it with arrays converted to tensors.

        Raises `DataError` naming the field and the problem.
        """
        return validate(self.fields, self.options, data)

    def option_values(self, data: Mapping[str, Any], **overrides: Any) -> dict:
        """The model's options for a call: each declared option's default, replaced by its value in `data`
        (the data and options of a fit, e.g. ``Posterior.data``; other keys are ignored), then by
        `overrides`. No checks: `validate` checks user input.

            >>> from ppl_models import get
            >>> get("vae").option_values({"x": None, "latent_dim": 2}, batch_size=0)["latent_dim"]
            2
        """
        values = {name: option.default for name, option in self.options.items()}
        values.update({name: value for name, value in data.items() if name in self.options})
        values.update(overrides)
        return values


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a spec to the registry (a model module calls this at import time)."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"model name {spec.name!r} is registered twice")
    unknown = set(spec.engines) - set(ALL_ENGINES)
    if unknown or not spec.engines:
        raise ValueError(f"model {spec.name!r}: engines must be a non-empty subset of {ALL_ENGINES}")
    _REGISTRY[spec.name] = spec
    return spec


def names() -> list[str]:
    """Every registered model name, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def get(name: str) -> ModelSpec:
    """The spec registered under `name`; `KeyError` listing the known names otherwise."""
    _load_all()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}") from None


def resolve(model: Any) -> tuple[ModelSpec | None, Callable[..., Any], str | None]:
    """(spec or None, the Pyro callable, its name) for a registered name, a `ModelSpec` or any callable.

    An unknown name raises `KeyError` listing the known names; anything else that is not callable raises
    `DataError` for the field ``model``.
    """
    if isinstance(model, str):
        spec = get(model)
        return spec, spec.model, spec.name
    if isinstance(model, ModelSpec):
        return model, model.model, model.name
    if callable(model):
        return None, model, getattr(model, "__name__", type(model).__name__)
    raise DataError("model", f"must be a registered name, a ModelSpec or a Pyro callable, got {type(model).__name__}")


_loaded = False


def _load_all() -> None:
    """Import every module of the `ppl_models` package so that each registers its models.

    Discovery keeps adding a model to one step: drop a module in `ppl_models/` that calls `register`.
    """
    global _loaded
    if _loaded:
        return
    import importlib
    import pkgutil
    from pathlib import Path

    package = __name__.rpartition(".")[0]  # ppl_models, found without importing it back
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not info.name.startswith("_") and info.name not in ("registry", "data", "errors"):
            importlib.import_module(f"{package}.{info.name}")
    _loaded = True


__all__ = ["ModelSpec", "register", "names", "get", "resolve", "Field", "DataError", "ALL_ENGINES"]
