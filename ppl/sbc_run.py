"""`ppl sbc`: simulation-based calibration into a run directory that keeps every finished replicate.

    ppl sbc coin --replicates 100 --samples 300 --warmup 300 --chains 1 --out runs/coin-sbc

The directory (default ``runs/NAME-sbc-METHOD``) holds

- ``run.json``: the manifest (`ppl.rundir`'s format: written by ppl, naming every file), with the settings
  that decide the replicates' results (model, method, seed, fit options, data) and the status;
- ``replicates.jsonl``: one JSON line per finished replicate, appended as each arrives (one ``write`` of a
  whole line on an ``O_APPEND`` descriptor, flushed to disk; a line cut short by a crash is dropped on
  reading), so an interrupted run keeps what it finished;
- when the run is over: ``ranks.csv`` (replicate x parameter), ``sbc.txt`` (the verdicts), ``sbc.json`` and
  ``ecdf.png`` (the ECDF-difference plots), each written to a temporary name and renamed.

A rerun with the same settings resumes: finished replicates are read back and only the missing ones fitted
(``--replicates`` may grow). With other settings the directory is replaced by a fresh run, and, as for
``ppl fit``, only a directory the suite wrote (or an empty one) is ever replaced (`ppl.rundir.check_target`).
Two runs into one directory at once are refused (an exclusive lock on ``replicates.jsonl``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np

from .io import UsageError
from .rundir import MANIFEST, OutError, check_target, run_directory

LOG = "replicates.jsonl"
OUTPUTS = ("ranks.csv", "sbc.txt", "sbc.json", "ecdf.png")


def _plain(value: Any) -> Any:
    """Data as JSON-able plain values (for the settings' fingerprint)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return {"shape": list(value.shape), "values": np.round(value.astype(float), 12).ravel().tolist()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def settings_key(model: str, method: str, seed: int, options: dict, data: dict) -> str:
    """A fingerprint of everything a replicate's result depends on (not the number of replicates)."""
    body = json.dumps({"model": model, "method": method, "seed": seed, "options": _plain(options),
                       "data": _plain(data)}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _write_manifest(folder: Path, manifest: dict) -> None:
    files = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and p.name != MANIFEST)
    body = {"written_by": "ppl", **manifest, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": files}
    _atomic_write(folder / MANIFEST, (json.dumps(body, indent=2, default=str) + "\n").encode())


def read_log(path: Path) -> list[dict]:
    """The replicates recorded in `path`; a last line cut short (a crash mid-write) is dropped, and cut off
    the file so that the next append starts on a line of its own."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    records, good = [], 0
    for line in raw.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            records.append(json.loads(line))
        except ValueError:
            break
        good += len(line)
    if good < len(raw):
        with open(path, "r+b") as fh:
            fh.truncate(good)
    return records


def _previous(target: Path, key: str) -> dict | None:
    """The manifest of an SBC run in `target` with the same settings, or None."""
    try:
        manifest = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("command") == "sbc" and manifest.get("settings_key") == key and (target / LOG).is_file():
        return manifest
    return None


@contextlib.contextmanager
def _locked(log: Path) -> Iterator[None]:
    fd = os.open(log, os.O_RDWR | os.O_APPEND)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutError(f"{str(log.parent)!r} is being written by another ppl sbc; wait for it, or name "
                           "another directory") from None
        yield
    finally:
        os.close(fd)


class SBCDirectory:
    """The run directory of one `ppl sbc`: open (fresh or resumed), append replicates, finish."""

    def __init__(self, out: str, manifest: dict):
        self.target = check_target(out)  # refuses, before any work, what the suite may not replace
        self.manifest = manifest
        self.resumed: list[dict] = []
        self.note: str | None = None

    def open(self) -> "SBCDirectory":
        key = self.manifest["settings_key"]
        previous = _previous(self.target, key) if self.target.is_dir() else None
        if previous is not None:
            self.resumed = read_log(self.target / LOG)
            if self.resumed:
                self.note = (f"resuming {self.target}: {len(self.resumed)} replicates already finished with these "
                             "settings are kept")
        else:
            if self.target.is_dir() and any(self.target.iterdir()):
                self.note = f"{self.target} held another run (other settings): replaced by this one"
            # a fresh directory, put in place whole (the previous run, if any, replaced atomically)
            with run_directory(self.target, {**self.manifest, "status": "running"}) as run:
                (run.path / LOG).touch()
        for stale in self.target.glob(".*.tmp.*"):  # a temporary of a write cut short
            with contextlib.suppress(OSError):
                stale.unlink()
        _write_manifest(self.target, {**self.manifest, "status": "running"})
        return self

    @contextlib.contextmanager
    def appending(self) -> Iterator["SBCDirectory"]:
        log = self.target / LOG
        with _locked(log):
            self._fd = os.open(log, os.O_WRONLY | os.O_APPEND)
            try:
                yield self
            finally:
                os.close(self._fd)

    def append(self, record: dict) -> None:
        """Record one finished replicate: one whole line, one write, flushed to disk."""
        line = (json.dumps(record, default=float) + "\n").encode()
        os.write(self._fd, line)
        os.fsync(self._fd)

    def finish(self, result: Any, status: str) -> list[str]:
        """Write the outputs of `result` and the final manifest; return the files of the directory."""
        import matplotlib

        matplotlib.use("Agg")
        result.ranks.to_csv(tmp := self.target / f".ranks.csv.tmp.{os.getpid()}")
        os.replace(tmp, self.target / "ranks.csv")
        _atomic_write(self.target / "sbc.txt", (str(result) + "\n").encode())
        _atomic_write(self.target / "sbc.json", (json.dumps(result.to_dict(), indent=2, default=float) + "\n").encode())
        if result.ok:
            tmp = self.target / f".ecdf.tmp.{os.getpid()}.png"
            result.plot(tmp)
            os.replace(tmp, self.target / "ecdf.png")
        _write_manifest(self.target, {**self.manifest, "status": status, "replicates": result.requested,
                                      "finished": len(result.ok), "failed": len(result.failed)})
        return sorted(p.name for p in self.target.iterdir() if not p.name.startswith("."))


class SBCRun(NamedTuple):
    """What `run_sbc` produced: the `inference.SBCResult`, the run directory, its files, and notes."""

    result: Any
    folder: Path
    files: list[str]
    notes: list[str]


def run_sbc(spec: Any, data: dict, method: str, replicates: int, seed: int, options: dict, out: str,
            executor: str, workers: int | None, address: str | None, progress: bool) -> SBCRun:
    """Run (or resume) SBC into `out`."""
    from inference import sbc

    key = settings_key(spec.name, method, seed, options, data)
    manifest = {"command": "sbc", "model": spec.name, "method": method, "seed": seed, "options": options,
                "settings_key": key, "executor": executor}
    folder = SBCDirectory(out, manifest).open()
    notes = [folder.note] if folder.note else []
    with folder.appending():
        try:
            result = sbc(spec, data, method=method, replicates=replicates, seed=seed, executor=executor,
                         workers=workers, address=address, resume=folder.resumed, progress=progress,
                         on_replicate=lambda rep: folder.append(rep.to_json()), **options)
        except KeyboardInterrupt:
            done = len(read_log(folder.target / LOG))
            _write_manifest(folder.target, {**manifest, "status": "interrupted", "finished": done})
            raise SBCInterrupted(folder.target, done) from None
    status = "complete" if len(result.replicates) == replicates else "partial"
    files = folder.finish(result, status)
    return SBCRun(result, folder.target, files, notes)


class SBCInterrupted(Exception):
    """Ctrl-C or SIGTERM during `ppl sbc`: what finished is kept in the directory."""

    def __init__(self, folder: Path, done: int):
        self.folder, self.done = folder, done
        super().__init__(f"{done} finished replicates kept in {folder}; rerun the same command to resume")


def check_executor_flags(executor: str, address: str | None, workers: int | None) -> None:
    """One line for flags that do not go together (before any work)."""
    if address is not None and executor != "ray":
        raise UsageError("--address: applies to --executor ray only")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers: must be at least 1, got {workers}")
