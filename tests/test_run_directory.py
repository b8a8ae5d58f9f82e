"""`--out` never loses a user's file: refusals, clean-up on every exit path, races and signals.

The fault-injection tests at the end start real `ppl fit` processes and stop them with SIGINT, SIGTERM or
SIGKILL at random moments, and race several writers into one directory; afterwards no temporary is left
(SIGKILL's is removed by the next run), no user file is lost, and `--out` holds one complete run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ppl.cli import main

MANIFEST = "run.json"  # ppl.rundir.MANIFEST; the tests import ppl.rundir where they use it, so that the
                       # command-line tests also run (and fail) on a version without it

MAP = ["--method", "map", "--quiet"]


def user_files(folder: Path) -> dict[str, str]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def stray(folder: Path) -> list[str]:
    """The suite's temporaries directly in `folder` (and in a run directory inside it)."""
    inner = [p for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".") for p in d.iterdir()]
    return sorted(p.name for p in [*folder.iterdir(), *inner] if ".ppl-" in p.name)


def is_complete_run(folder: Path) -> bool:
    """A run directory as the suite writes it: a manifest naming exactly the files present, data readable."""
    manifest = json.loads((folder / MANIFEST).read_text())
    present = {p.name for p in folder.iterdir()} - {MANIFEST}
    return manifest["written_by"] == "ppl" and set(manifest["files"]) == present and "posterior.nc" in present


# ---------------------------------------------------------------- refusals (defect 1)

@pytest.fixture
def workdir(tmp_path, monkeypatch):
    # 200 flips: a posterior close to Gaussian in the logit, so a MAP run has nothing to warn about
    (tmp_path / "coin.json").write_text(json.dumps({"flips": [1, 0, 1, 1] * 50}))
    (tmp_path / "notes.txt").write_text("my thesis")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("out, reason", [
    (".", "is the current directory"),
    ("..", "is a parent of the current directory"),
    ("/", "is the root of the file system"),
    ("notes.txt", "exists and is not a directory"),
])
def test_out_refuses_places_the_suite_did_not_write(workdir, capsys, out, reason):
    before = user_files(workdir)
    code = main(["fit", "coin", "--data", "coin.json", "--out", out, *MAP])
    err = capsys.readouterr().err
    assert code == 2 and reason in err and len(err.strip().splitlines()) == 1
    assert user_files(workdir) == before
    assert stray(workdir) == [] and stray(workdir.parent) == []


def test_out_refuses_the_home_directory(workdir, capsys, monkeypatch):
    home = workdir / "home"
    home.mkdir()
    (home / ".bashrc").write_text("alias ll='ls -l'")
    monkeypatch.setenv("HOME", str(home))
    assert main(["fit", "coin", "--data", "coin.json", "--out", "~", *MAP]) == 2
    assert "is a home directory" in capsys.readouterr().err
    assert (home / ".bashrc").read_text() == "alias ll='ls -l'"


def test_out_refuses_a_directory_of_other_files_and_a_run_with_a_file_added(workdir, capsys):
    mine = workdir / "mine"
    mine.mkdir()
    (mine / "data.csv").write_text("x\n1\n")
    assert main(["fit", "coin", "--data", "coin.json", "--out", "mine", *MAP]) == 2
    assert "did not write" in capsys.readouterr().err and (mine / "data.csv").exists()

    assert main(["fit", "coin", "--data", "coin.json", "--out", "run", *MAP]) == 0
    assert is_complete_run(workdir / "run")
    assert main(["fit", "coin", "--data", "coin.json", "--out", "run", *MAP]) == 0  # its own run: replaced
    (workdir / "run" / "analysis.py").write_text("print(1)")
    capsys.readouterr()
    assert main(["fit", "coin", "--data", "coin.json", "--out", "run", *MAP]) == 2
    assert "holds files the suite did not write (analysis.py)" in capsys.readouterr().err
    assert (workdir / "run" / "analysis.py").read_text() == "print(1)"


def test_an_empty_directory_may_be_used(workdir):
    (workdir / "empty").mkdir()
    assert main(["fit", "coin", "--data", "coin.json", "--out", "empty", *MAP]) == 0
    assert is_complete_run(workdir / "empty")


def test_run_directories_take_the_umask_and_a_failed_run_leaves_no_parents(workdir, capsys, monkeypatch):
    os.umask(0o022)
    assert main(["fit", "coin", "--data", "coin.json", "--out", "runs/a", *MAP]) == 0
    assert (workdir / "runs" / "a").stat().st_mode & 0o777 == 0o755

    def boom(*args, **kwargs):
        raise FloatingPointError("the loss became nan")

    monkeypatch.setattr("inference.fit", boom)
    assert main(["fit", "coin", "--data", "coin.json", "--out", "new/a/b", *MAP]) == 1
    assert "the loss became nan" in capsys.readouterr().err
    assert not (workdir / "new").exists()
    # a failed fit into an existing run leaves it as it was
    before = user_files(workdir / "runs" / "a")
    assert main(["fit", "coin", "--data", "coin.json", "--out", "runs/a", *MAP]) == 1
    assert user_files(workdir / "runs" / "a") == before and stray(workdir) == []


@pytest.mark.parametrize("out", ["notes.txt/run", "/proc/run"])
def test_out_under_a_file_or_an_unwritable_place_names_the_users_path(workdir, capsys, out):
    assert main(["fit", "coin", "--data", "coin.json", "--out", out, *MAP]) == 2
    err = capsys.readouterr().err
    assert f"--out: cannot create {out!r}" in err and ".ppl-tmp" not in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- temporaries (defects 3, 5)

def test_stale_temporaries_of_dead_processes_are_removed_and_no_others(tmp_path):
    from ppl.rundir import clean_stale

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".run.ppl-tmp.{pid}.0a1b2c3d"
    stale.mkdir()
    (stale / ".ppl-temporary").write_text(str(pid))
    (stale / "posterior.nc").write_bytes(b"half")
    live = tmp_path / f".run.ppl-tmp.{os.getpid()}.0a1b2c3d"
    live.mkdir()
    (live / ".ppl-temporary").write_text(str(os.getpid()))
    lookalike = tmp_path / f".run.ppl-tmp.{pid}.deadbeef"  # named like one, but not the suite's
    lookalike.mkdir()
    (lookalike / "keep.txt").write_text("mine")
    other = tmp_path / f".run.ppl-old.{pid}.0badf00d"  # a marker, but of another process
    other.mkdir()
    (other / ".ppl-temporary").write_text("1")
    (other / "run.json").write_text("{}")
    assert clean_stale(tmp_path) == [stale]
    assert live.exists() and (lookalike / "keep.txt").exists() and other.exists()


SWALLOWED = r"""
import os, signal, sys, time, weakref
from pathlib import Path
from ppl import interrupts
from ppl.rundir import run_directory

class Thing:
    pass

try:
    with interrupts.handle_signals(), run_directory(Path(sys.argv[1])) as run:
        (run.path / "posterior.nc").write_bytes(b"draws")
        thing = Thing()
        weakref.finalize(thing, lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.2)))
        del thing  # the handler's KeyboardInterrupt is raised inside the callback, and Python drops it
        print("the work went on")
except KeyboardInterrupt:
    print("stopped before the commit")
"""


def test_an_interrupt_swallowed_by_a_weakref_callback_still_stops_the_commit(tmp_path):
    """Python drops an exception raised inside a weakref callback (and prints its traceback on stderr):
    the run must still not commit, and stderr must stay clean."""
    target = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", SWALLOWED, str(target)], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.split("\n")[:2] == ["the work went on", "stopped before the commit"], done
    assert "Traceback" not in done.stderr and done.stderr.strip() == "", done.stderr
    assert not target.exists() and stray(tmp_path) == []


def test_a_target_that_became_foreign_keeps_the_finished_run_beside_it(tmp_path):
    from ppl.rundir import run_directory

    target = tmp_path / "run"
    with run_directory(target) as run:
        (run.path / "posterior.nc").write_bytes(b"first")
    with run_directory(target) as run:
        (run.path / "posterior.nc").write_bytes(b"second")
        (target / "mine.txt").write_text("saved while the run worked")
    assert run.final == tmp_path / "run-2" and (tmp_path / "run-2" / "posterior.nc").read_bytes() == b"second"
    assert (target / "mine.txt").exists() and (target / "posterior.nc").read_bytes() == b"first"


def test_check_happens_before_the_work(tmp_path):
    from ppl.rundir import OutError, run_directory

    (tmp_path / "f").write_text("x")
    ran = []
    with pytest.raises(OutError):
        with run_directory(tmp_path / "f"):
            ran.append(1)
    assert ran == [] and (tmp_path / "f").read_text() == "x"


# ---------------------------------------------------------------- races (defect 4)

WRITER = r"""
import random, sys, time
try:
    from ppl.rundir import run_directory
except ImportError:  # the version before ppl.rundir, for showing the test fails there
    from ppl.io import atomic_directory
    run_directory = lambda target, manifest: atomic_directory(target)
target, tag, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
for round_ in range(int(sys.argv[4])):
    with run_directory(target, {"writer": tag}) as run:
        for k in range(3):
            (getattr(run, "path", run) / f"part{k}.txt").write_text(f"{tag} {round_} {k}")
            time.sleep(rng.random() * 0.002)
"""


def test_concurrent_writers_into_one_directory_never_fail_and_leave_one_whole_run(tmp_path):
    target = tmp_path / "same"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(target), f"w{i}", str(i), "50"],
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors  # 200 commits, none lost
    parts = {p.name: p.read_text() for p in target.iterdir() if p.name != MANIFEST}
    assert set(parts) == {"part0.txt", "part1.txt", "part2.txt"}
    assert len({text.rsplit(" ", 1)[0] for text in parts.values()}) == 1  # all three from one run
    assert stray(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["same"]


# ---------------------------------------------------------------- signals: real `ppl fit` processes

def ppl(*argv: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "ppl", *argv], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_the_command_line_imports_torch_only_after_its_signal_handlers_are_in_place():
    """An interrupt inside torch's import aborts Python with a traceback: `ppl.cli` and what it imports at
    the top must not import torch (or `ppl_models`, which does). The random-signal test below found a
    top-level `from ppl_models.errors import ...` in ppl/cli.py by chance; this finds it every time."""
    code = "import sys, ppl.cli; print(sorted(m for m in ('torch', 'pyro', 'ppl_models') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_signals_at_random_moments_lose_nothing(tmp_path):
    """12 `ppl fit` runs into one directory, each stopped by SIGINT, SIGTERM or SIGKILL after 1-8 s
    (import, data checks, sampling, writing, committing), two at a time."""
    (tmp_path / "coin.json").write_text('{"flips": [1, 0, 1, 1, 1, 0, 1]}')
    (tmp_path / "notes.txt").write_text("my notes")
    argv = ["fit", "coin", "--data", "coin.json", "--method", "nuts", "--chains", "2", "--samples", "300",
            "--warmup", "300", "--out", "out", "--quiet"]
    first = ppl(*argv, cwd=tmp_path)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    rng = random.Random(0)
    plan = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL] * 4
    rng.shuffle(plan)
    outcomes, killed = [], set()
    for a, b in zip(plan[::2], plan[1::2]):
        pair = [(ppl(*argv, cwd=tmp_path), sig, rng.uniform(1.0, 8.0)) for sig in (a, b)]
        start = time.monotonic()
        for proc, sig, delay in sorted(pair, key=lambda t: t[2]):
            time.sleep(max(0.0, delay - (time.monotonic() - start)))
            if proc.poll() is None:
                proc.send_signal(sig)
        for proc, sig, _ in pair:
            code = proc.wait(timeout=300)
            err = proc.stderr.read()
            outcomes.append((sig, code))
            assert code in (0, -signal.SIGKILL, 130, 143), err
            assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err
            if code in (130, 143):
                assert code == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig]
                assert "interrupted" in err
            if code == -signal.SIGKILL:
                killed.add(proc.pid)
        # between rounds: the user's files, one whole run, and no temporary but a killed process's
        assert (tmp_path / "notes.txt").read_text() == "my notes" and (tmp_path / "coin.json").exists()
        assert is_complete_run(tmp_path / "out")
        owners = {int(name.split(".")[-2]) for name in stray(tmp_path)}
        assert owners <= killed, (stray(tmp_path), outcomes)
    assert {code for _, code in outcomes} - {0}, "no run was actually interrupted"
    final = ppl(*argv, cwd=tmp_path)  # the next run cleans what SIGKILL left
    assert final.wait(timeout=300) == 0
    assert stray(tmp_path) == [] and is_complete_run(tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coin.json", "notes.txt", "out"]


@pytest.mark.slow
def test_two_real_runs_finishing_into_one_directory(tmp_path):
    (tmp_path / "coin.json").write_text('{"flips": [1, 0, 1]}')
    argv = ["fit", "coin", "--data", "coin.json", "--method", "map", "--out", "same", "--quiet"]
    for _ in range(3):
        procs = [ppl(*argv, cwd=tmp_path) for _ in range(3)]
        assert [p.wait(timeout=300) for p in procs] == [0, 0, 0], [p.stderr.read() for p in procs]
        assert is_complete_run(tmp_path / "same") and stray(tmp_path) == []


# ---------------------------------------------------------------- ppl render's single files

def test_render_replaces_its_own_diagrams_and_nothing_else(workdir, capsys):
    from PIL import Image

    (workdir / "thesis.pdf").write_bytes(b"%PDF-1.5 my thesis")
    assert main(["render", "coin", "--out", "thesis.pdf"]) == 2
    assert "is not a diagram the suite drew" in capsys.readouterr().err
    assert (workdir / "thesis.pdf").read_bytes() == b"%PDF-1.5 my thesis"
    for suffix in (".svg", ".png", ".pdf", ".dot", ".tex"):
        assert main(["render", "coin", "--out", f"coin{suffix}"]) == 0
        assert main(["render", "coin", "--out", f"coin{suffix}"]) == 0, capsys.readouterr().err  # its own
    Image.open(workdir / "coin.png").verify()  # the mark keeps the PNG valid
    assert (workdir / "coin.pdf").read_bytes().startswith(b"%PDF")
    assert stray(workdir) == [] and not [p for p in workdir.iterdir() if p.name.startswith(".")]


def _old_fit(folder: Path, figures: tuple[str, ...] = ()) -> None:
    folder.mkdir(parents=True)
    (folder / "posterior.nc").write_bytes(b"\x89HDF\r\n\x1a\n old draws")
    (folder / "summary.csv").write_text(",mean,sd,hdi_3%,hdi_97%\np,0.6,0.1,0.4,0.8\n")
    (folder / "model.svg").write_text("<svg/>")
    for name in figures:
        (folder / name).write_text("old")


def test_a_run_written_before_manifests_is_recognised_by_its_exact_layout(workdir):
    from ppl.rundir import OutError, check_target

    _old_fit(workdir / "old_fit")
    assert main(["fit", "coin", "--data", "coin.json", "--out", "old_fit", *MAP]) == 0
    assert is_complete_run(workdir / "old_fit")
    old_demo = workdir / "demo-out"
    _old_fit(old_demo / "coin", ("trace.png",))
    (old_demo / "index.html").write_text("<html><head><title>ppl demo: 1 models</title>")
    assert check_target(old_demo) == old_demo
    (old_demo / "coin" / "my_notes.md").write_text("mine")  # one file more, and it is the user's
    with pytest.raises(OutError, match="did not write"):
        check_target(old_demo)


def test_a_folder_of_the_users_with_the_same_file_names_is_not_taken_for_an_old_run(workdir):
    """Only the content of an old run passes: an ArviZ summary and an HDF5 posterior, not just the names."""
    from ppl.rundir import OutError, check_target

    mine = workdir / "pymc_results"
    mine.mkdir()
    (mine / "posterior.nc").write_bytes(b"\x89HDF\r\n\x1a\n from PyMC")
    (mine / "summary.csv").write_text("parameter,estimate\nmu,1.0\n")
    (mine / "model.svg").write_text("<svg/>")
    with pytest.raises(OutError, match="did not write"):
        check_target(mine)
    (mine / "summary.csv").write_text(",mean,sd\nmu,1.0,0.1\n")
    (mine / "model.svg").unlink()  # an ArviZ summary and a posterior, but no diagram: not an old fit either
    with pytest.raises(OutError, match="did not write"):
        check_target(mine)


def test_without_an_atomic_exchange_a_failed_swap_puts_the_previous_run_back(tmp_path, monkeypatch):
    import ppl.rundir as rundir

    target = tmp_path / "run"
    with rundir.run_directory(target) as run:
        (run.path / "posterior.nc").write_bytes(b"first")
    monkeypatch.setattr(rundir, "_exchange", lambda a, b: False)
    real_rename = os.rename

    def rename(src, dst):
        if ".ppl-tmp." in str(src):  # the finished temporary onto the target: the disk fails
            raise OSError(5, "Input/output error")
        return real_rename(src, dst)

    monkeypatch.setattr(rundir.os, "rename", rename)
    with pytest.raises(OSError):
        with rundir.run_directory(target) as run:
            (run.path / "posterior.nc").write_bytes(b"second")
    monkeypatch.setattr(rundir.os, "rename", real_rename)
    assert (target / "posterior.nc").read_bytes() == b"first" and is_complete_run_bytes(target)
    assert stray(tmp_path) == []


def is_complete_run_bytes(folder: Path) -> bool:
    manifest = json.loads((folder / MANIFEST).read_text())
    return set(manifest["files"]) == {p.name for p in folder.iterdir()} - {MANIFEST}


def test_a_folder_the_manifest_names_must_be_a_run_of_its_own(workdir, capsys):
    """A hand-edited run.json cannot make the suite delete a folder of the user's files."""
    assert main(["fit", "coin", "--data", "coin.json", "--out", "r", *MAP]) == 0
    (workdir / "r" / "data").mkdir()
    (workdir / "r" / "data" / "p.txt").write_text("mine")
    manifest = json.loads((workdir / "r" / MANIFEST).read_text())
    manifest["files"].append("data")
    (workdir / "r" / MANIFEST).write_text(json.dumps(manifest))
    assert main(["fit", "coin", "--data", "coin.json", "--out", "r", *MAP]) == 2
    assert "holds files the suite did not write (data)" in capsys.readouterr().err
    assert (workdir / "r" / "data" / "p.txt").read_text() == "mine"


def test_out_given_as_a_quoted_tilde_and_an_empty_out(workdir, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(workdir))
    assert main(["fit", "coin", "--data", "coin.json", "--out", "~/x", *MAP]) == 0
    assert capsys.readouterr().out == "wrote ~/x/\n" and is_complete_run(workdir / "x")  # --quiet: where it went
    assert main(["fit", "coin", "--data", "coin.json", "--out", "", *MAP]) == 2
    assert "--out: is empty" in capsys.readouterr().err


def test_render_writes_through_a_link_and_refuses_a_dangling_one(workdir, capsys):
    assert main(["render", "coin", "--out", "c.svg"]) == 0
    (workdir / "link.svg").symlink_to("c.svg")
    assert main(["render", "coin", "--out", "link.svg"]) == 0
    assert (workdir / "link.svg").is_symlink() and "wrote link.svg" in capsys.readouterr().out
    (workdir / "dangling.svg").symlink_to("nowhere.svg")
    assert main(["render", "coin", "--out", "dangling.svg"]) == 2
    assert "symbolic link to nothing" in capsys.readouterr().err and (workdir / "dangling.svg").is_symlink()


def test_a_destructor_failing_after_an_interrupt_prints_nothing(monkeypatch):
    """An interrupt can cut an object's __init__ short; its destructor then fails (h5netcdf's File.close on
    a half-built file printed "Exception ignored in ... AttributeError" with a traceback). Once a signal is
    recorded, such failures are not passed on to the reporting hook; before one, they are."""
    from ppl import interrupts

    class HalfBuilt:
        def __del__(self):
            raise AttributeError("'HalfBuilt' object has no attribute '_closed'")

    reported = []
    monkeypatch.setattr(sys, "unraisablehook", lambda args: reported.append(args.exc_type))
    with interrupts.handle_signals():
        HalfBuilt()
        assert reported == [AttributeError]
        interrupts._received.append(signal.SIGINT)
        HalfBuilt()
        assert reported == [AttributeError]
