"""The suite's one error type for bad input: `InputError(field, problem)`, printed ``field: problem``.

It lives in the bottom package because every package raises it and imports point one way (`inference`,
`plates` and `ppl` import `ppl_models`, never the reverse). Each package has a subclass where a caller may
want to tell them apart: `ppl_models.DataError` (a model's data or options), `plates.PlateError` (a drawing
option, node or query), `inference.evidence.ZeroProbability` (data the model calls impossible). Catching
`InputError` catches them all; the command line turns any of them into one line and exit status 2.

    >>> from ppl_models.errors import InputError
    >>> str(InputError("num_samples", "must be at least 1, got 0"))
    'num_samples: must be at least 1, got 0'
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: `field` names the argument, data field or option, `problem` says what is wrong with it."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")

    def __reduce__(self):  # pickled as (field, problem), so it crosses to and from worker processes intact
        return type(self), (self.field, self.problem)
