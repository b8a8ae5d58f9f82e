"""Reading data files and writing run directories atomically.

Data files (`ppl fit NAME --data FILE`):
- ``.json``: an object of field -> value (arrays as nested lists, options as numbers or strings);
- ``.npz``: one array per field (0-d arrays become plain numbers);
- ``.csv``: one column per 1-D field with the field's name as header; a 2-D field ``X`` takes the columns
  ``X.0, X.1, ...`` (or ``X[0], X[1], ...``), in order.

Run directories are written into a temporary sibling first and renamed into place only when complete,
so an error never leaves a half-written directory behind.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


def read_data(path: str | os.PathLike) -> dict[str, Any]:
    """Read a .json, .csv or .npz data file into a dict of field -> value."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"data file {str(path)!r} does not exist")
    if not path.is_file():
        raise UsageError(f"data file {str(path)!r} is not a file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            if not isinstance(data, dict):
                raise UsageError(f"data file {str(path)!r}: expected a JSON object of field -> value")
            return data
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                return {k: (npz[k].item() if npz[k].ndim == 0 else npz[k]) for k in npz.files}
        if suffix == ".csv":
            return _read_csv(path)
    except UsageError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read data file {str(path)!r}: {exc}") from None
    raise UsageError(f"data file {str(path)!r}: unsupported format {suffix or '(none)'}; use .json, .csv or .npz")


_COLUMN = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\.(?P<a>\d+)|\[(?P<b>\d+)\])$")


def _read_csv(path: Path) -> dict[str, Any]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise UsageError(f"data file {str(path)!r} is empty")
    header, body = rows[0], rows[1:]
    if len(set(header)) != len(header):
        raise UsageError(f"data file {str(path)!r}: repeated column names in the header")
    for i, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise UsageError(f"data file {str(path)!r}: line {i} has {len(row)} values, the header has {len(header)}")
    columns: dict[str, list] = {}
    for j, name in enumerate(header):
        values = []
        for i, row in enumerate(body, start=2):
            cell = row[j].strip()
            try:
                values.append(float(cell) if cell.lower() not in ("nan", "") else float("nan"))
            except ValueError:
                raise UsageError(f"{name}: line {i} holds {cell!r}, not a number") from None
        columns[name] = values
    data: dict[str, Any] = {}
    grouped: dict[str, dict[int, list]] = {}
    for name, values in columns.items():
        match = _COLUMN.match(name)
        if match:
            index = int(match.group("a") or match.group("b"))
            grouped.setdefault(match.group("name"), {})[index] = values
        else:
            data[name] = np.asarray(values)
    for name, parts in grouped.items():
        if sorted(parts) != list(range(len(parts))):
            raise UsageError(f"{name}: columns {name}.0 .. {name}.{len(parts) - 1} must all be present")
        data[name] = np.stack([np.asarray(parts[k]) for k in range(len(parts))], axis=1)
    return data


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces `target`, on error it is removed.

    An existing `target` is swapped out only after the new directory is complete.
    """
    target = Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.{os.getpid()}.old"
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file through a temporary sibling and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
