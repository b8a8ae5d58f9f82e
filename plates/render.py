"""Write a diagram to a file; the suffix picks the format (.dot .svg .png .pdf .tex).

`render` returns the path it wrote. Without Graphviz's ``dot`` it writes the DOT source beside the
requested file (same stem, ``.dot``), returns that path and issues one `GraphvizMissingWarning` whose
message is one line; a caller compares the returned suffix with the requested one to know.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

from .errors import GraphvizMissingWarning, GraphvizNotFound, PlateError

FORMATS = (".dot", ".gv", ".svg", ".png", ".pdf", ".tex")


def dot_program() -> str | None:
    """The path of Graphviz's ``dot``, or ``None`` when it is not installed."""
    return shutil.which("dot")


def run_dot(source: str, fmt: str, extra: tuple[str, ...] = ()) -> bytes:
    exe = dot_program()
    if exe is None:
        raise GraphvizNotFound(f"-T{fmt}", "(nothing)")
    proc = subprocess.run([exe, f"-T{fmt}", *extra], input=source.encode(), capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise PlateError("render", f"Graphviz dot failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a diagram is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def render(pg, path) -> Path:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise PlateError(str(path), f"unknown diagram format {suffix or '(no suffix)'}; use one of {', '.join(FORMATS)}")
    source = pg.to_dot()
    if suffix in (".dot", ".gv"):
        _atomic_write(path, source.encode())
        return path
    if dot_program() is None:
        fallback = path.with_suffix(".dot")
        _atomic_write(fallback, source.encode())
        warnings.warn(str(GraphvizNotFound(str(path), str(fallback))), GraphvizMissingWarning, stacklevel=3)
        return fallback
    if suffix == ".tex":
        data = pg.to_tikz().encode()
    elif suffix == ".png":
        data = run_dot(source, "png", ("-Gdpi=150",))
    else:
        data = run_dot(source, suffix[1:])
    _atomic_write(path, data)
    return path
