"""Where AOTInductor's compiled packages are kept between fits: one file per graph, named by a fingerprint.

Compiling a leaf step ahead of time costs 10-35 s (`compile`), so a package is kept on disk and any later
fit whose graph is the same, with the same constants (the data), input shapes and torch, loads it instead.

- **Where.** ``$PPL_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/ppl-suite/compiled``, else
  ``~/.cache/ppl-suite/compiled``. Nothing else is written there and nothing outside it is touched.
- **Names.** ``<fingerprint>.pt2``, the fingerprint being 32 hex digits of a SHA-256 (`fingerprint`). Only
  files of that form are ever replaced or removed, so a file a user put in the folder is never lost.
- **Writes.** The package is compiled into a temporary file beside its final name and moved into place
  with ``os.replace``: a reader, a second process compiling the same graph, or an interrupt (SIGINT,
  SIGTERM, which `ppl` turns into an exception) never leaves a half-written package under the final name;
  the temporary is removed on the way out.
- **Bounded.** At most `MAX_PACKAGES` packages: after a write, the least recently used beyond that go.

Written here rather than taken from torch: Inductor's own caches keep intermediate artefacts (it still
re-exports and re-lowers the graph, 5-20 s), not a loadable package per graph.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import torch
import torch.fx as fx

__all__ = ["package_dir", "fingerprint", "cached_package", "MAX_PACKAGES"]

MAX_PACKAGES = 64
T = TypeVar("T")
_NAME = re.compile(r"^[0-9a-f]{32}\.pt2$")


def package_dir() -> Path:
    """The folder packages are kept in (see the module's docstring)."""
    if os.environ.get("PPL_CACHE_DIR"):
        return Path(os.environ["PPL_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ppl-suite" / "compiled"


def fingerprint(graph: fx.GraphModule, example: tuple, *salt: str) -> str:
    """What a compiled package of `graph` depends on: its code, the values of its constants, the dtype,
    shape and layout of each input, the torch and Python versions and the machine: its architecture and the
    vector instructions it has, since the kernels are compiled for the processor they are built on (plus
    `salt`)."""
    h = hashlib.sha256()
    machine = (platform.machine(), torch.backends.cpu.get_cpu_capability())
    for part in (torch.__version__, sys.version, *machine, *salt, graph.code):
        h.update(part.encode())
        h.update(b"\0")
    for node in graph.graph.nodes:
        if node.op == "get_attr":
            value = getattr(graph, node.target)
            h.update(f"{node.target}:{getattr(value, 'dtype', '')}:{tuple(getattr(value, 'shape', ()))}".encode())
            if isinstance(value, torch.Tensor):
                h.update(value.detach().contiguous().cpu().numpy().tobytes())
            else:
                h.update(repr(value).encode())
    for t in example:
        h.update(f"{t.dtype}:{tuple(t.shape)}:{t.stride()}".encode())
    return h.hexdigest()[:32]


@contextlib.contextmanager
def _temporary(folder: Path, key: str) -> Iterator[Path]:
    tmp = folder / f".{key}.{os.getpid()}.part.pt2"
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _prune(folder: Path, keep: Path) -> None:
    packages = sorted((p for p in folder.iterdir() if _NAME.match(p.name) and p != keep),
                      key=lambda p: p.stat().st_atime, reverse=True)
    for stale in packages[MAX_PACKAGES - 1:]:
        stale.unlink(missing_ok=True)


def cached_package(key: str, build: Callable[[Path], None], load: Callable[[Path], T],
                   folder: Path | None = None) -> T:
    """``load(path)`` of the package named `key`, first built by ``build(path)`` into a temporary file
    and moved into place if it is not there yet. Where the folder cannot be written, the package is built
    in a temporary folder, loaded, and removed."""
    folder = package_dir() if folder is None else folder
    path = folder / f"{key}.pt2"
    if path.is_file():
        with contextlib.suppress(OSError):
            os.utime(path)  # (least recently used is what `_prune` removes)
        return load(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK)
    except OSError:
        writable = False
    if not writable:
        with tempfile.TemporaryDirectory(prefix="ppl-compiled-") as scratch:  # (removed with what is in it)
            package = Path(scratch) / f"{key}.pt2"
            build(package)
            return load(package)
    with _temporary(folder, key) as tmp:
        build(tmp)
        os.replace(tmp, path)
    with contextlib.suppress(OSError):
        _prune(folder, path)
    return load(path)
