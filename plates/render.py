"""Write a diagram to a file; the suffix picks the format (.dot .svg .png .pdf .tex).

`render` returns the path it wrote. Without Graphviz's ``dot`` it writes the DOT source beside the
requested file (same stem, ``.dot``), returns that path and issues one `GraphvizMissingWarning` whose
message is one line; a caller compares the returned suffix with the requested one to know.

Every file `render` writes carries a mark ("drawn by ppl-suite": a DOT/SVG/TeX comment, a PNG text chunk,
a trailing PDF comment), and an existing file is replaced only when it carries it: ``--out thesis.pdf``
must not overwrite a thesis. Writes go through a temporary sibling and a rename.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import struct
import zlib

from .dot import MARK
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


def _png_with_mark(data: bytes) -> bytes:
    """Insert a tEXt chunk ``Software: drawn by ppl-suite`` after the PNG header chunk."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    end_of_ihdr = 8 + 8 + struct.unpack(">I", data[8:12])[0] + 4
    body = b"tEXt" + b"Software\x00" + MARK.encode()
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    return data[:end_of_ihdr] + chunk + data[end_of_ihdr:]


def _with_mark(data: bytes, suffix: str) -> bytes:
    if suffix == ".png":
        return _png_with_mark(data)
    if suffix == ".pdf":
        return data + f"%{MARK}\n".encode()  # after %%EOF: readers ignore it
    if suffix == ".tex":  # the second line: the file still starts with \documentclass
        first, _, rest = data.partition(b"\n")
        return first + f"\n% {MARK}\n".encode() + rest
    return data  # .dot/.gv/.svg: the graph's comment attribute carries it


def _is_ours(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
            fh.seek(max(0, path.stat().st_size - 256))
            tail = fh.read()
    except OSError:
        return False
    marks = (MARK.encode(), MARK.replace("-", "&#45;").encode())
    return any(m in head or m in tail for m in marks)


def _check_replaceable(path: Path) -> None:
    if path.is_symlink() and not path.exists():
        raise PlateError(str(path), "is a symbolic link to nothing; name the file itself")
    if path.is_dir():
        raise PlateError(str(path), "is a directory; name a file for the diagram")
    if path.exists() and not _is_ours(path):
        raise PlateError(str(path), "exists and is not a diagram the suite drew; it is left alone: choose another "
                                    "name or remove it yourself")


def _atomic_write(path: Path, data: bytes) -> None:
    _check_replaceable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        problem = f"{str(blocking)!r} is a file, not a folder" if blocking else exc.strerror
        raise PlateError(str(path), f"cannot create its folder ({problem})") from None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise PlateError(str(path), f"cannot be written ({exc.strerror})") from None
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
    target = path  # where the bytes go: through a symbolic link, as any editor writes
    if path.is_symlink() and path.exists():
        target = path.resolve()
        if target.suffix.lower() != path.suffix.lower():
            raise PlateError(str(path), f"links to {str(target)!r}, a file of another format")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise PlateError(str(path), f"unknown diagram format {suffix or '(no suffix)'}; use one of {', '.join(FORMATS)}")
    _check_replaceable(target)  # before any work
    source = pg.to_dot()
    if suffix in (".dot", ".gv"):
        _atomic_write(target, source.encode())
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
    _atomic_write(target, _with_mark(data, suffix))
    return path
