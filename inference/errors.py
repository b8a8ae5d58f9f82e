"""The engines' errors: `InputError` for bad input (the suite's one type, defined in `ppl_models.errors`) and
`ModelError` for a program's own bug."""

from __future__ import annotations

from ppl_models.errors import InputError

__all__ = ["InputError", "ModelError"]


class ModelError(RuntimeError):
    """The model's (or guide's) own code failed: a bug in the program, not bad input (exit status 1).

    The message is one line: which program raised what, where, e.g.
    ``model coin raised IndexError at model.py:17: list index out of range``.
    """
