"""The one error type the engines raise for bad input (as opposed to bugs)."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input to `fit`: `field` names the argument or data field, `problem` says what is wrong."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")
