"""Bad input on the command line: one line naming the field or file and the problem, exit 2, nothing written.

The table of every class tried is docs/bad-input.md; these are the cases of issue 19's item 7 and 12.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from ppl.cli import main


def one_line_exit_2(argv, capsys, tmp_path, expected):
    code = main([*argv, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()
    return err


def test_a_truncated_npz(tmp_path, capsys):
    path = tmp_path / "d.npz"
    np.savez(path, flips=np.array([1, 0, 1]))
    path.write_bytes(path.read_bytes()[:60])
    one_line_exit_2(["fit", "coin", "--data", str(path)], capsys, tmp_path, "is not an .npz archive")


def test_an_npy_named_npz(tmp_path, capsys):
    path = tmp_path / "d.npz"
    with open(path, "wb") as fh:
        np.save(fh, np.array([1, 0, 1]))
    one_line_exit_2(["fit", "coin", "--data", str(path)], capsys, tmp_path, "is not an .npz archive")


def test_an_npz_with_a_corrupt_member(tmp_path, capsys):
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("flips.npy", b"\x93NUMPY garbage")
    one_line_exit_2(["fit", "coin", "--data", str(path)], capsys, tmp_path, "cannot read data file")


def test_json_nested_too_deeply(tmp_path, capsys):
    path = tmp_path / "d.json"
    path.write_text('{"flips": ' + "[" * 100_000 + "]" * 100_000 + "}")
    one_line_exit_2(["fit", "coin", "--data", str(path)], capsys, tmp_path, "nested too deeply")


@pytest.mark.parametrize("suffix, text", [(".csv", "\ufeffflips\n1\n0\n1\n"),
                                           (".json", "\ufeff" + json.dumps({"flips": [1, 0, 1]}))])
def test_a_byte_order_mark_is_read_as_a_spreadsheet_writes_it(tmp_path, capsys, suffix, text):
    path = tmp_path / f"d{suffix}"
    path.write_text(text, encoding="utf-8")
    assert main(["fit", "coin", "--method", "map", "--data", str(path), "--out", str(tmp_path / "r"), "--quiet"]) == 0


@pytest.mark.parametrize("seed", ["-1", str(2**32), str(2**70)])
def test_seeds_outside_numpys_range(tmp_path, capsys, seed):
    one_line_exit_2(["fit", "coin", "--seed", seed], capsys, tmp_path, "--seed: must be")


def test_an_empty_query(tmp_path, capsys):
    code = main(["render", "coin", "--out", str(tmp_path / "c.svg"), "--query", ""])
    err = capsys.readouterr().err
    assert code == 2 and "--query: is empty" in err and not (tmp_path / "c.svg").exists()


def test_render_errors_name_the_users_path(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code = main(["render", "coin", "--out", str(tmp_path / "afile" / "c.svg")])
    err = capsys.readouterr().err
    assert code == 2 and str(tmp_path / "afile" / "c.svg") in err and ".tmp" not in err
    assert "is a file, not a folder" in err


def test_work_bounds_are_checked_before_anything_runs(tmp_path, capsys):
    one_line_exit_2(["fit", "coin", "--warmup", "1000000000"], capsys, tmp_path, "--warmup (num_warmup): must be")


@pytest.mark.parametrize("text, expected", [
    ('{"flips": [0, 1], "flips": [1]}', "flips: is given twice in the data file"),
    ('{"flips": [1, ' + "9" * 5000 + "]}", "holds a number of more than 4300 digits"),
    ('{"flips": [[0, 1], [1]]}', "flips: must be a rectangular array of numbers"),
])
def test_json_surprises(tmp_path, capsys, text, expected):
    path = tmp_path / "d.json"
    path.write_text(text)
    one_line_exit_2(["fit", "coin", "--data", str(path)], capsys, tmp_path, expected)


def test_an_option_in_a_csv_column_says_what_is_wrong(tmp_path, capsys):
    path = tmp_path / "d.csv"
    path.write_text("flips,alpha\n1,2\n0,2\n")
    one_line_exit_2(["fit", "coin", "--data", str(path)], capsys, tmp_path, "alpha: must be one number, got 2 values")


def test_a_size_option_that_contradicts_the_data(tmp_path, capsys):
    path = tmp_path / "d.json"
    path.write_text('{"flips": [0, 1, 1], "N": 5}')
    one_line_exit_2(["fit", "coin", "--data", str(path)], capsys, tmp_path, "N: is 5 but flips has N = 3")
    path.write_text('{"flips": [0, 1, 1], "N": 3}')  # agreeing is fine
    assert main(["fit", "coin", "--method", "map", "--data", str(path), "--out", str(tmp_path / "ok"), "--quiet"]) == 0
