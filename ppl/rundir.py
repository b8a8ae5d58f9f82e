"""Run directories: written whole or not at all, and only ever replacing what the suite wrote itself.

`ppl fit --out DIR` and `ppl demo --out DIR` write their files into a temporary sibling of DIR and put it in
place when it is complete. The rules, in the order they are checked:

- DIR may not be the file-system root, a home directory, the current directory or one of its parents.
- An existing DIR is replaced only when it is a run directory the suite wrote: it holds the manifest
  ``run.json`` (written last, naming every file of the run) and nothing the manifest does not name. An
  empty directory may be used too, and so may a run written before manifests existed, recognised by its
  exact layout and its files' content (an HDF5 posterior.nc, an ArviZ summary.csv, the diagram; a demo's
  index.html titled "ppl demo" beside such folders). Anything else (a file, a directory of other files,
  a run directory into which the user saved a file of their own) is refused before any work starts.
- The swap is one atomic ``renameat2(RENAME_EXCHANGE)`` where the kernel has it (the old run is then
  removed); elsewhere two renames. It runs under an exclusive ``flock`` on the parent directory with
  SIGINT and SIGTERM held back, so two processes finishing into one DIR take turns (the last to finish
  wins, nothing is half-replaced) and a signal cannot fall between the two renames.
- Should DIR have become unreplaceable while the run worked (someone saved a file into it), the finished
  run is not thrown away: it is put beside DIR as ``DIR-2`` (or the next free number) and the caller is
  told where.
- Temporary directories are removed on every exit path Python sees (errors, SIGINT, SIGTERM); one left by
  a process that was killed outright (SIGKILL, power loss) is removed by the next run into the same parent
  once its process is gone. Temporaries carry the owner's pid in their name and a marker file, so only the
  suite's own are ever removed.

Why not `tempfile.TemporaryDirectory` + `shutil.move`: neither refuses to replace a user's directory, and
`shutil.move` onto an existing directory moves *into* it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from . import interrupts

MANIFEST = "run.json"
_MARKER = ".ppl-temporary"
_TEMP = re.compile(r"^\.(?P<name>.+)\.ppl-(?:tmp|old)\.(?P<pid>\d+)\.[0-9a-f]+$")


class OutError(Exception):
    """`--out` names a place the suite may not write to: one line, exit status 2."""

    def __init__(self, problem: str):
        self.field = "--out"
        self.problem = problem
        super().__init__(f"--out: {problem}")


@dataclass
class RunDirectory:
    """A run being written: files go into `path` (a temporary directory) until the `with` block ends.

    After the block, `final` is where the run was put: the requested directory, or a free sibling when
    the requested one could no longer be replaced (then `moved_because` says why).
    """

    target: Path
    path: Path
    manifest: dict[str, Any]
    final: Path | None = None
    moved_because: str | None = None
    created_parents: list[Path] = field(default_factory=list)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _shown(path: Path, target_arg: str | os.PathLike) -> str:
    return repr(str(target_arg)) if Path(target_arg).resolve() == path else repr(str(path))


def _protected(target: Path) -> str | None:
    """Why `target` may never be replaced, or None."""
    if target == Path(target.anchor):
        return "is the root of the file system"
    cwd = Path.cwd().resolve()
    if target == cwd:
        return "is the current directory"
    if target in cwd.parents:
        return "is a parent of the current directory"
    homes = {Path.home().resolve()}
    if os.environ.get("HOME"):
        homes.add(Path(os.environ["HOME"]).resolve())
    if target in homes:
        return "is a home directory"
    return None


_LEGACY_FIT = {"posterior.nc", "summary.csv", "model.svg", "model.dot"}
_LEGACY_DEMO_FIGURES = {"trace.png", "loss.png", "states.png", "factorization.svg"}


def _starts_with(path: Path, prefix: bytes) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(prefix)) == prefix
    except OSError:
        return False


def _legacy_fit(folder: Path, entries: set[str], extra: frozenset[str] = frozenset()) -> bool:
    """A `ppl fit` directory of a version before manifests: posterior.nc, an ArviZ summary.csv and the
    diagram (model.svg, or model.dot without Graphviz), nothing else but `extra`."""
    diagram = entries & {"model.svg", "model.dot"}
    return ({"posterior.nc", "summary.csv"} <= entries and len(diagram) == 1
            and entries <= _LEGACY_FIT | extra and _starts_with(folder / "summary.csv", b",mean,sd,")
            and _starts_with(folder / "posterior.nc", b"\x89HDF"))


def _legacy_run(directory: Path, entries: set[str]) -> bool:
    """A run directory of a version before manifests, recognised by its exact layout and the content of its
    files: a fit's, or a demo's index.html beside one such folder per model (so `make run` can replace its
    older output). A directory of the user's that merely holds a posterior.nc does not pass."""
    if _legacy_fit(directory, entries):
        return True
    if "index.html" not in entries or len(entries) < 2 or not _starts_with_title(directory / "index.html"):
        return False
    for name in entries - {"index.html"}:
        folder = directory / name
        if folder.is_symlink() or not folder.is_dir():
            return False
        if not _legacy_fit(folder, {p.name for p in folder.iterdir()}, frozenset(_LEGACY_DEMO_FIGURES)):
            return False
    return True


def _starts_with_title(index: Path) -> bool:
    try:
        return "<title>ppl demo:" in index.read_text(encoding="utf-8", errors="replace")[:4096]
    except OSError:
        return False


def _foreign_entries(directory: Path) -> list[str] | None:
    """Entries of an existing directory that the suite did not write; None when it is no run directory."""
    entries = {p.name for p in directory.iterdir()} - {_MARKER}
    if not entries or (MANIFEST not in entries and _legacy_run(directory, entries)):
        return []
    manifest = directory / MANIFEST
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8"))
        files = set(recorded["files"]) if recorded.get("written_by") == "ppl" else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        files = None
    if files is None:
        return None
    foreign = entries - files - {MANIFEST, _MARKER}
    for name in entries & files:  # the suite writes files, and folders only as run directories of their own
        entry = directory / name
        if entry.is_symlink() or (entry.is_dir() and (not (entry / MANIFEST).is_file() or _foreign_entries(entry))):
            foreign.add(name)
    return sorted(foreign)


def check_target(target_arg: str | os.PathLike) -> Path:
    """Resolve `--out` and refuse, before any work, a place the suite may not replace; return the path."""
    if not str(target_arg).strip():
        raise OutError("is empty; name a new directory for the run")
    target = Path(target_arg).expanduser().resolve()
    reason = _protected(target)
    if reason:
        raise OutError(f"{str(target_arg)!r} {reason}; name a new directory for the run")
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise OutError(f"{str(target_arg)!r} exists and is not a directory; name a new directory for the run")
    if target.is_dir():
        try:
            foreign = _foreign_entries(target)
        except PermissionError:
            raise OutError(f"{str(target_arg)!r} cannot be read (permission denied)") from None
        if foreign is None:
            raise OutError(f"{str(target_arg)!r} is a directory the suite did not write; it is left alone: "
                           "name a new directory, or remove it yourself")
        if foreign:
            raise OutError(f"{str(target_arg)!r} holds files the suite did not write ({', '.join(foreign[:3])}"
                           f"{', ...' if len(foreign) > 3 else ''}); it is left alone: name a new directory")
    for parent in [target.parent, *target.parent.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise OutError(f"cannot create {str(target_arg)!r}: {str(parent)!r} is not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OutError(f"cannot create {str(target_arg)!r}: {str(parent)!r} is not writable")
            break
    return target


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mark(folder: Path) -> None:
    """Mark `folder` as a temporary of this process (what `clean_stale` asks before removing one)."""
    (folder / _MARKER).write_text(f"{os.getpid()}\n", encoding="utf-8")


def _marked_by(folder: Path, pid: str) -> bool:
    try:
        return (folder / _MARKER).read_text(encoding="utf-8").strip() == pid
    except (OSError, UnicodeDecodeError):
        return False


def clean_stale(parent: Path) -> list[Path]:
    """Remove the suite's temporaries in `parent` whose process is gone; return what was removed. A
    temporary is a directory named ``.NAME.ppl-tmp.PID.HEX`` (or ``-old``) whose marker file holds that
    same PID: nothing else is ever removed."""
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP.match(entry.name)
        if not match or _pid_alive(int(match.group("pid"))):
            continue
        if entry.is_dir() and not entry.is_symlink() and _marked_by(entry, match.group("pid")):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def _parent_lock(parent: Path) -> Iterator[None]:
    fd = os.open(parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2); False when the system cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _temp_name(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.ppl-{kind}.{os.getpid()}.{secrets.token_hex(4)}"


def _mkdir_parents(target: Path) -> list[Path]:
    """Create the missing parents of `target`; return those created (outermost first)."""
    missing = []
    for parent in [target.parent, *target.parent.parents]:
        if parent.exists():
            break
        missing.append(parent)
    missing.reverse()
    for parent in missing:
        try:
            parent.mkdir()
        except FileExistsError:
            continue
    return missing


def _remove_created(parents: list[Path]) -> None:
    for parent in reversed(parents):
        with contextlib.suppress(OSError):
            parent.rmdir()  # only when empty


def _free_sibling(target: Path) -> Path:
    for k in range(2, 10_000):
        candidate = target.with_name(f"{target.name}-{k}")
        if not candidate.exists() and not candidate.is_symlink():
            return candidate
    raise OutError(f"no free name beside {str(target)!r}")


def _write_manifest(run: RunDirectory) -> None:
    files = sorted(p.name for p in run.path.iterdir() if p.name not in (_MARKER, MANIFEST))
    body = {"written_by": "ppl", **run.manifest, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": files}
    (run.path / MANIFEST).write_text(json.dumps(body, indent=2, default=str) + "\n", encoding="utf-8")


def _commit(run: RunDirectory) -> None:
    """Put the finished temporary directory in place of the target (see the module docstring)."""
    _write_manifest(run)  # the marker stays until the run is in place: a kill before that leaves it marked
    target = run.target
    old: Path | None = None
    with _parent_lock(target.parent), interrupts.held():
        signum = interrupts.pending_signal()
        if signum is not None:  # the interrupt was swallowed somewhere (a weakref callback): do not commit
            raise KeyboardInterrupt(f"signal {signum}")
        try:
            replaceable = not target.exists() and not target.is_symlink()
            if not replaceable and target.is_dir() and not target.is_symlink():
                foreign = _foreign_entries(target)
                replaceable = foreign == []
                if not replaceable:
                    run.moved_because = (f"{str(target)!r} now holds files the suite did not write "
                                         f"({', '.join(foreign[:3])})" if foreign else
                                         f"{str(target)!r} is now a directory the suite did not write")
            elif not replaceable:
                run.moved_because = f"{str(target)!r} is now a file"
        except OSError as exc:
            run.moved_because = f"{str(target)!r} cannot be read ({exc.strerror})"
            replaceable = False
        final = target if replaceable else _free_sibling(target)
        if final.exists() and _exchange(run.path, final):
            old = run.path  # after the exchange the temporary name holds the previous run
            _mark(old)
        elif final.exists():
            old = _temp_name(target, "old")
            os.rename(final, old)
            _mark(old)
            try:
                os.rename(run.path, final)
            except BaseException:
                os.rename(old, final)  # put the previous run back
                (final / _MARKER).unlink(missing_ok=True)
                old = None
                raise
        else:
            os.rename(run.path, final)
        (final / _MARKER).unlink(missing_ok=True)
        run.final = final
        if not any(_TEMP.match(p.name) for p in final.parents):  # a demo's model folder is not the run
            interrupts.note_written(final)
    # the previous run goes last, outside the lock (a kill here leaves it to clean_stale)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def run_directory(target_arg: str | os.PathLike, manifest: dict[str, Any] | None = None) -> Iterator[RunDirectory]:
    """Yield a `RunDirectory` whose `path` receives the run's files; put it in place when the block ends.

    `manifest` (model, method, seed, options...) is recorded in ``run.json`` with the list of files.
    Raises `OutError` (before the block runs) when `target_arg` may not be written; on any exception in the
    block, including KeyboardInterrupt, the temporary directory and any parent created for it are removed
    and the target is untouched.
    """
    target = check_target(target_arg)
    try:
        created = _mkdir_parents(target)
    except OSError as exc:
        raise OutError(f"cannot create {str(target_arg)!r}: {exc.strerror}") from None
    clean_stale(target.parent)
    path = _temp_name(target, "tmp")
    try:
        path.mkdir(mode=0o777)
    except OSError as exc:
        _remove_created(created)
        raise OutError(f"cannot create {str(target_arg)!r}: {exc.strerror}") from None
    run = RunDirectory(target=target, path=path, manifest=dict(manifest or {}), created_parents=created)
    try:
        _mark(path)
        yield run
        _commit(run)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        if run.final is None:
            _remove_created(created)
        raise
    finally:
        # a temporary of this process never outlives the block
        if path.exists() and run.final != path:
            shutil.rmtree(path, ignore_errors=True)
