"""Run many independent jobs (fits, SBC replicates) in parallel: in this process, in local worker processes,
or on Ray. One interface, `Executor.run(fn, jobs, on_result)`, and `fit_many` on top of it.

    >>> from inference.executors import fit_many
    >>> runs = fit_many([{"model": "coin", "method": "map", "seed": s} for s in range(2)], executor="serial")
    >>> [round(float(r.samples["p"].item()), 2) for r in runs]
    [0.6, 0.6]

- ``serial``: one job after another in this process (debugging, and the reference for the others).
- ``local`` (the default): a `concurrent.futures.ProcessPoolExecutor` of ``workers`` processes (default: every
  core), started with ``spawn`` (no fork of a process holding torch's threads), each running torch on one
  thread. Jobs cross to the workers by pickling: a registered model travels by its name, a user's model
  and fit hook must be importable functions (defined at the top level of a module, not in a notebook cell
  or inside another function).
- ``ray``: the same jobs as Ray tasks of one CPU each; ``ray.init()`` starts a local Ray (``workers`` CPUs),
  or ``address`` joins an existing cluster (``"auto"``, ``"ray://host:10001"``). Ray is an optional extra:
  ``pip install 'ppl-suite[ray]'``.

`on_result(index, result)` is called in this process as each job finishes, in the order they finish, so a
caller can write results as they arrive. Every job's randomness must come from the job itself (its seed):
then the results do not depend on the executor or the number of workers.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ppl_models.errors import one_line

from .errors import InputError

EXECUTORS = ("local", "serial", "ray")


class WorkerError(RuntimeError):
    """A worker process died (not a job's own failure, which comes back as that job's result)."""


def _one_thread() -> None:
    """Worker set-up: torch on one intra-op thread (the workers already use every core between them)."""
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(1)
    from . import api  # noqa: F401  (pays the engines' import once per worker, before the first job)


def check_picklable(obj: Any, what: str) -> None:
    """Refuse, with one line naming `what`, an object that cannot be sent to a worker process."""
    try:
        pickle.dumps(obj)
    except Exception as exc:  # noqa: BLE001 (pickle raises several types)
        raise InputError(what, f"cannot be sent to worker processes ({one_line(exc)}); define it at "
                               "the top level of an importable module, or use executor='serial'") from None


def check_workers(workers: Any) -> int | None:
    """`workers` as a positive int or None (every core)."""
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InputError("workers", f"must be a whole number >= 1 or None (every core), got {workers!r}")
    return int(workers)


class Executor:
    """Runs ``fn(job)`` for each job and calls ``on_result(index, result)`` as each finishes."""

    name = "serial"

    def __init__(self, workers: int | None = None):
        self.workers = 1

    def run(self, fn: Callable[[Any], Any], jobs: Sequence[Any], on_result: Callable[[int, Any], None]) -> None:
        for i, job in enumerate(jobs):
            on_result(i, fn(job))

    def describe(self) -> str:
        return f"{self.name} ({self.workers} worker{'s' if self.workers != 1 else ''})"


class LocalExecutor(Executor):
    """A pool of `workers` spawned processes (default: every core), torch on one thread in each."""

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1
        self._pool: Any = None

    def __enter__(self) -> "LocalExecutor":
        """Keep one pool of workers for several `run`s (their start-up, about 5 s each, is paid once)."""
        self._pool = self._new_pool(self.workers)
        return self

    def __exit__(self, *exc: Any) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            self._stop(pool, now=exc[0] is not None)

    @staticmethod
    def _new_pool(workers: int) -> Any:
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_one_thread)

    @staticmethod
    def _stop(pool: Any, now: bool) -> None:
        """Done: let the workers exit by themselves (a terminated worker leaves its queue's semaphores to the
        resource tracker, which warns about them at exit). After an interrupt or error (`now`): drop the
        queued jobs and stop the workers at once, not after their jobs."""
        if not now:
            pool.shutdown(wait=True)
            return
        if hasattr(pool, "terminate_workers"):  # Python 3.14+
            pool.terminate_workers()
            return
        # before 3.14 no public API reaches the pool's processes
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=5)

    def run(self, fn: Callable[[Any], Any], jobs: Sequence[Any], on_result: Callable[[int, Any], None]) -> None:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        if not jobs:
            return
        check_picklable(fn, "fit")
        kept = self._pool is not None
        pool = self._pool if kept else self._new_pool(min(self.workers, len(jobs)))
        try:
            pending = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        raise WorkerError("a worker process died before finishing its job (out of memory, killed, "
                                          "or a script that starts workers without `if __name__ == "
                                          "\"__main__\":` around its work, which spawned workers re-import); "
                                          "executor='serial' runs in this process") from None
                    on_result(pending.pop(future), result)
        except BaseException:
            if kept:  # the kept pool is unusable after an interrupt: stop it now
                self._pool = None
            self._stop(pool, now=True)
            raise
        if not kept:
            self._stop(pool, now=False)


def _ray_call(fn: Callable[[Any], Any], job: Any) -> Any:
    import torch

    if torch.get_num_threads() != 1:
        _one_thread()
    return fn(job)


class RayExecutor(Executor):
    """Ray tasks of one CPU each: a local Ray of `workers` CPUs, or the cluster at `address`."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise InputError("executor", "ray is not installed; install the extra: pip install 'ppl-suite[ray]' "
                                         "(or pip install 'ray>=2.9,<3')") from None
        self.address = address
        self.workers = workers or (os.cpu_count() or 1)

    def describe(self) -> str:
        where = f"cluster at {self.address}" if self.address else f"local, {self.workers} CPUs"
        return f"ray ({where})"

    def run(self, fn: Callable[[Any], Any], jobs: Sequence[Any], on_result: Callable[[int, Any], None]) -> None:
        import ray

        if not jobs:
            return
        check_picklable(fn, "fit")
        started = not ray.is_initialized()
        if started:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                ray.init(num_cpus=self.workers, **kwargs)
        try:
            remote = ray.remote(num_cpus=1, max_retries=0)(_ray_call)
            pending = {remote.remote(fn, job): i for i, job in enumerate(jobs)}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    on_result(pending.pop(ref), ray.get(ref))
        finally:
            for ref in list(locals().get("pending", {})):
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()


def make_executor(executor: str | Executor = "local", workers: int | None = None,
                  address: str | None = None) -> Executor:
    """An `Executor` by name (``local``, ``serial``, ``ray``); an `Executor` instance is returned as it is."""
    if isinstance(executor, Executor):
        return executor
    workers = check_workers(workers)
    if executor not in EXECUTORS:
        raise InputError("executor", f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise InputError("address", "applies to executor='ray' only")
    if executor == "serial":
        return Executor()
    if executor == "ray":
        return RayExecutor(workers, address)
    return LocalExecutor(workers)


# ---- a batch of fits -------------------------------------------------------------------------------------
@dataclass
class FitTask:
    """One fit of a batch: `inference.fit(model, data, method, seed, **options)`."""

    model: Any
    data: dict | None = None
    method: str | None = None
    seed: int = 0
    options: dict = field(default_factory=dict)


@dataclass
class FitOutcome:
    """What came back from one fit of a batch: its draws and problems (a Posterior itself holds the model's
    trace, which need not cross processes), or the error that stopped it."""

    index: int
    model: str
    method: str | None
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None


def _model_ref(model: Any) -> Any:
    """A registered model by name (cheap to send); anything else as it is."""
    from ppl_models.registry import resolve

    spec, _, _ = resolve(model)
    return spec.name if spec is not None and not isinstance(model, str) and _registered(spec) else model


def _registered(spec: Any) -> bool:
    import ppl_models

    try:
        return ppl_models.get(spec.name) is spec
    except KeyError:
        return False


def _run_fit(job: tuple[int, FitTask]) -> FitOutcome:
    from ppl_models.registry import resolve

    from .api import fit

    index, task = job
    start = time.perf_counter()
    name = task.model if isinstance(task.model, str) else getattr(task.model, "__name__", "model")
    try:
        post = fit(task.model, task.data, method=task.method, seed=task.seed, progress=False, pointwise=False,
                   **task.options)
        name = resolve(task.model)[2] or name
        return FitOutcome(index, name, post.method, post.samples, post.problems(), list(post.notes),
                          time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 (a failed fit is one outcome; the batch goes on)
        return FitOutcome(index, name, task.method, seconds=time.perf_counter() - start, error=one_line(exc))


def fit_many(tasks: Sequence[FitTask | dict], executor: str | Executor = "local", workers: int | None = None,
             address: str | None = None, on_result: Callable[[FitOutcome], None] | None = None) -> list[FitOutcome]:
    """Run independent fits in parallel and return their outcomes in the order of `tasks`.

    Args:
        tasks: `FitTask`s or dicts with keys model, data, method, seed, options: one model on many data sets,
            many models on one, or any mix.
        executor, workers, address: where they run (module docstring).
        on_result: called with each `FitOutcome` as it arrives (in completion order).

    A fit that raises is an outcome with `error` set; the others go on.
    """
    items = []
    for i, task in enumerate(tasks):
        if isinstance(task, dict):
            unknown = set(task) - {"model", "data", "method", "seed", "options"}
            if unknown or "model" not in task:
                raise InputError(f"tasks[{i}]", "must be a FitTask or a dict with keys model, data, method, seed, "
                                                f"options{f' (unknown: {sorted(unknown)})' if unknown else ''}")
            task = FitTask(**task)
        task = FitTask(_model_ref(task.model), task.data, task.method, task.seed, dict(task.options))
        items.append((i, task))
    runner = make_executor(executor, workers, address)
    if runner.name != "serial":
        for i, task in items:
            check_picklable(task, f"tasks[{i}]")
    out: list[FitOutcome | None] = [None] * len(items)

    def arrived(i: int, outcome: FitOutcome) -> None:
        out[i] = outcome
        if on_result is not None:
            on_result(outcome)

    runner.run(_run_fit, items, arrived)
    return [o for o in out if o is not None]
