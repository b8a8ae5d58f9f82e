"""The suite's one error type for bad input: `InputError(field, problem)`, printed ``field: problem``.

It lives in the bottom package because every package raises it and imports point one way (`inference`,
`plates` and `ppl` import `ppl_models`, never the reverse). Each package has a subclass where a caller may
want to tell them apart: `ppl_models.DataError` (a model's data or options), `plates.PlateError` (a drawing
option, node or query), `inference.evidence.ZeroProbability` (data the model calls impossible). Catching
`InputError` catches them all; the command line turns any of them into one line and exit status 2.

Any other exception that the suite reports rather than raises (a fit that failed in a batch, a diagnostic
that could not be computed, a compiler that gave up) is reported as one line by `one_line`: its type and
the first line of its message, never a pasted trace table.

    >>> from ppl_models.errors import InputError
    >>> str(InputError("num_samples", "must be at least 1, got 0"))
    'num_samples: must be at least 1, got 0'
    >>> one_line(RuntimeError("shape mismatch\\n  Trace Shapes: ..."))
    'RuntimeError: shape mismatch'
"""

from __future__ import annotations

__all__ = ["InputError", "first_line", "one_line"]


class InputError(ValueError):
    """Bad input: `field` names the argument, data field or option, `problem` says what is wrong with it."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")

    def __reduce__(self):  # pickled as (field, problem), so it crosses to and from worker processes intact
        return type(self), (self.field, self.problem)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when the message is empty. A colon
    that announced the lines left out goes too (torch's "... but found invalid values:" before a tensor)."""
    text = str(exc).strip()
    return _head(text) if text else type(exc).__name__


def _head(text: str) -> str:
    lines = text.splitlines()
    return lines[0].rstrip().rstrip(":") if len(lines) > 1 else lines[0]


def one_line(exc: BaseException, limit: int | None = None) -> str:
    """An exception as one line, ``Type: first line of the message`` (``Type`` alone when the message is
    empty), cut to `limit` characters of message with ``...`` where given."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    text = _head(text)
    if limit is not None and len(text) > limit:
        text = text[:limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"
