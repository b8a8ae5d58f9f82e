"""The error types of `plates`: both print as one line a command line can show as is."""

from __future__ import annotations

from ppl_models.errors import InputError


class PlateError(InputError):
    """Bad input to `plates` (an `InputError`): `field` names the argument, option or node; `problem` says
    what is wrong."""


class GraphvizNotFound(RuntimeError):
    """Graphviz's ``dot`` program is needed but missing (raised by `to_tikz`, which needs its layout).

    `render` does not raise it: it writes the DOT file, returns that path and warns with this message.
    """

    def __init__(self, requested: str, written: str):
        self.requested = requested
        self.written = written
        super().__init__(
            f"Graphviz 'dot' not found on PATH: wrote {written} instead of {requested} "
            "(install graphviz, e.g. apt-get install graphviz, for SVG/PNG/PDF/TikZ)"
        )


class GraphvizMissingWarning(UserWarning):
    """`render` could not find Graphviz's ``dot`` and wrote the DOT file instead (the message says where)."""
