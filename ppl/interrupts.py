"""SIGINT and SIGTERM end a command the same way: the work stops, temporaries go, nothing is replaced.

Python turns SIGINT into `KeyboardInterrupt`, but not SIGTERM (the signal `kill`, `timeout` and job
schedulers send), which would end the process without any clean-up. `handle_signals` makes both raise
`KeyboardInterrupt` and also records the signal: an exception raised while Python runs a weakref callback
or a ``__del__`` is printed and dropped ("Exception ignored in ..."), so a run could go on and commit its
output after the user asked it to stop. `pending_signal` lets the checkpoints and the last step
(`ppl.rundir`) see that, and Python's report of the dropped exception (a traceback on stderr) is left out.

A signal that arrives while `ppl.rundir` swaps a finished run into place, or while torch and Pyro are
imported (an exception raised inside a C extension's import can abort Python), is recorded but not raised
until the block is over (`held`), so the command can say truthfully whether the run was complete. When
the command line's work is over, `hold_until_exit` keeps recording without raising.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from pathlib import Path
from typing import Iterator

HANDLED = (signal.SIGINT, signal.SIGTERM)
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}

_received: list[int] = []
_written: list[Path] = []


def pending_signal() -> int | None:
    """The first SIGINT/SIGTERM received inside `handle_signals`, or None."""
    return _received[0] if _received else None


def completed_run() -> Path | None:
    """The run directory this command put in place, if it got that far (for the interrupt message)."""
    return _written[-1] if _written else None


def note_written(path: Path) -> None:
    _written.append(path)


_deferred: list[bool] = []  # non-empty while `held` defers the exception


def _raise(signum: int, frame) -> None:
    _received.append(signum)
    if not _deferred:
        raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def handle_signals(restore: bool = True) -> Iterator[None]:
    """Within the block SIGINT and SIGTERM raise `KeyboardInterrupt` and are remembered. With
    ``restore=False`` (the program itself, about to exit) the handlers stay: no default handler can end
    the process between the command's end and its exit."""
    _received.clear()
    _written.clear()
    _deferred.clear()
    previous = {s: signal.getsignal(s) for s in HANDLED}
    try:
        for s in HANDLED:
            signal.signal(s, _raise)
    except ValueError:  # not the main thread: leave the handlers as they are
        previous = {}
    previous_hook = sys.unraisablehook

    def quiet_when_recorded(args) -> None:  # "Exception ignored in ...": a traceback on stderr
        if _received:
            # recorded: the command stops at its next checkpoint and says so in one line. Until then the
            # interrupt may also have cut an object's construction short, whose destructor then fails
            # (h5netcdf's File.close on a file whose __init__ was interrupted); that is not news either
            return
        previous_hook(args)

    sys.unraisablehook = quiet_when_recorded
    try:
        yield
    finally:
        if restore:
            sys.unraisablehook = previous_hook
            for s, handler in previous.items():
                signal.signal(s, handler)
            _received.clear()
            _written.clear()
            _deferred.clear()


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Within the block a SIGINT/SIGTERM is recorded, not raised (`checkpoint` raises it afterwards).

    Deferred in Python rather than blocked with `pthread_sigmask`: the signal may be delivered to any of
    the process's threads (NumPy's BLAS pool starts its own), and Python still runs its handler in the
    main thread at the next instruction.
    """
    _deferred.append(True)
    try:
        yield
    finally:
        _deferred.pop()


def hold_until_exit() -> None:
    """From now on SIGINT and SIGTERM are recorded, never raised (the command has finished its work)."""
    _deferred.append(True)


def reported() -> None:
    """The command has reported the signal itself and chosen its exit status (`ppl sbc`, which keeps what it
    finished): forget it, so that no checkpoint raises it again."""
    _received.clear()
    _written.clear()


def checkpoint() -> None:
    """Raise `KeyboardInterrupt` if a signal arrived whose exception was swallowed on the way."""
    if _received:
        raise KeyboardInterrupt(signal.Signals(_received[0]).name)
