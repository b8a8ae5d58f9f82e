"""The one error type the engines raise for bad input (as opposed to bugs)."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input to `fit`: `field` names the argument or data field, `problem` says what is wrong."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class ModelError(RuntimeError):
    """The model's (or guide's) own code failed: a bug in the program, not bad input (exit status 1).

    The message is one line: which program raised what, where, e.g.
    ``model coin raised IndexError at model.py:17: list index out of range``.
    """
