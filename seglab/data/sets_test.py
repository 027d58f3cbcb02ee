import pytest

from seglab.data.sets import DataError, Problem, pair_by_stem
from seglab.errors import SeglabError


def test_one_problem_is_one_line_naming_the_file():
    error = DataError(Problem("/data/a.png", "corrupt"))
    assert str(error) == "/data/a.png: corrupt"
    assert error.problems == [Problem("/data/a.png", "corrupt")]


def test_several_problems_are_listed_and_kept_as_data():
    problems = [Problem(f"/data/{n}.png", "no mask") for n in range(25)]
    error = DataError(problems)
    lines = str(error).splitlines()
    assert lines[0] == "25 problem(s):"
    assert lines[1] == "  /data/0.png: no mask"
    assert lines[-1] == "  ... and 5 more"
    assert error.problems == problems  # all of them, not only the 20 shown


def test_a_message_about_no_single_file_has_an_empty_path():
    error = DataError("nothing to read")
    assert str(error) == "nothing to read"
    assert error.problems == [Problem("", "nothing to read")]


def test_data_error_is_a_seglab_error_and_still_a_value_error():
    assert issubclass(DataError, SeglabError)
    assert issubclass(DataError, ValueError)


def test_pair_by_stem_reports_unpaired_files_as_problems(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / "images" / name).write_bytes(b"")
    for name in ("a.png", "c.png"):
        (tmp_path / "masks" / name).write_bytes(b"")
    with pytest.raises(DataError) as raised:
        pair_by_stem(tmp_path / "images", tmp_path / "masks")
    assert raised.value.problems == [
        Problem(tmp_path / "images" / "b.jpg", f"no mask in {tmp_path / 'masks'}"),
        Problem(tmp_path / "masks" / "c.png", f"no image in {tmp_path / 'images'}"),
    ]
    unpaired = []
    pairs = pair_by_stem(tmp_path / "images", tmp_path / "masks", unpaired=unpaired)
    assert pairs == [(str(tmp_path / "images" / "a.jpg"), str(tmp_path / "masks" / "a.png"))]
    assert unpaired == raised.value.problems
