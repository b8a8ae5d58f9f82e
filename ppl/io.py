"""Reading data files and writing run directories atomically.

Data files (`ppl fit NAME --data FILE`):
- ``.json``: an object of field -> value (arrays as nested lists, options as numbers or strings);
- ``.npz``: one array per field (0-d arrays become plain numbers);
- ``.csv``: one column per 1-D field with the field's name as header; a 2-D field ``X`` takes the columns
  ``X.0, X.1, ...`` (or ``X[0], X[1], ...``), in order.

Any problem with a file (missing, unreadable, truncated, of another format than its suffix says, nested too
deep) is a `UsageError`: one line naming the file, exit status 2. Run directories are `ppl.rundir`'s job.
"""

from __future__ import annotations

import csv
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

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
            with open(path, encoding="utf-8-sig") as fh:
                data = json.load(fh, object_pairs_hook=_no_repeats)
            if not isinstance(data, dict):
                raise UsageError(f"data file {str(path)!r}: expected a JSON object of field -> value")
            return data
        if suffix == ".npz":
            if not zipfile.is_zipfile(path):
                raise UsageError(f"data file {str(path)!r} is not an .npz archive (truncated, or another format "
                                 "under that name)")
            with np.load(path, allow_pickle=False) as npz:
                return {k: (npz[k].item() if npz[k].ndim == 0 else npz[k]) for k in npz.files}
        if suffix == ".csv":
            return _read_csv(path)
    except UsageError:
        raise
    except RecursionError:
        raise UsageError(f"data file {str(path)!r} is nested too deeply to be data") from None
    except ValueError as exc:
        if "digits" in str(exc) and "limit" in str(exc):  # Python's guard against huge integer literals
            raise UsageError(f"data file {str(path)!r} holds a number of more than 4300 digits") from None
        raise UsageError(f"cannot read data file {str(path)!r}: {_first_line(exc)}") from None
    except (OSError, ValueError, UnicodeDecodeError, zipfile.BadZipFile, EOFError) as exc:
        raise UsageError(f"cannot read data file {str(path)!r}: {_first_line(exc)}") from None
    raise UsageError(f"data file {str(path)!r}: unsupported format {suffix or '(none)'}; use .json, .csv or .npz")


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (json keeps the last silently)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise UsageError(f"{key}: is given twice in the data file")
        out[key] = value
    return out


def _first_line(exc: BaseException) -> str:
    """`ppl_models.errors.first_line`, imported when needed: importing `ppl_models` imports torch, and the
    command line imports this module before it installs its signal handlers."""
    from ppl_models.errors import first_line

    return first_line(exc)


_COLUMN = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\.(?P<a>\d+)|\[(?P<b>\d+)\])$")


def _read_csv(path: Path) -> dict[str, Any]:
    with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: a spreadsheet's byte-order mark
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
