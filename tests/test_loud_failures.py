"""Failures are loud: only seglab's own error types become one-line command-line errors; a
bug keeps its traceback, load_model does not hide a broken import, and training leaves Keras'
global dtype policy as it found it."""

import keras
import pytest

from seglab import cli
from seglab.data.sets import DataError, Problem
from seglab.errors import PathNotFoundError


def _failing_command(monkeypatch, error):
    def command(args):
        raise error

    monkeypatch.setitem(cli.COMMANDS, "check", command)


@pytest.mark.parametrize(
    "error",
    [
        DataError(Problem("/data/a.png", "corrupt")),
        PathNotFoundError("/data/none", "data folder not found"),
    ],
)
def test_seglab_errors_are_one_line(monkeypatch, capsys, tmp_path, error):
    _failing_command(monkeypatch, error)
    monkeypatch.delenv("SEGLAB_DEBUG", raising=False)
    assert cli.main(["check", str(tmp_path)]) == cli.EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert str(error) in err and "Traceback" not in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "error", [ValueError("bug"), KeyError("bug"), OSError("bug"), RuntimeError("bug")]
)
def test_other_errors_keep_their_traceback(monkeypatch, tmp_path, error):
    _failing_command(monkeypatch, error)
    with pytest.raises(type(error), match="bug"):
        cli.main(["check", str(tmp_path)])


def test_a_missing_path_given_on_the_command_line_is_one_line(monkeypatch, capsys, tmp_path):
    given = tmp_path / "nowhere"
    _failing_command(monkeypatch, FileNotFoundError(2, "No such file or directory", str(given)))
    assert cli.main(["check", str(given)]) == cli.EXIT_ERROR
    assert capsys.readouterr().err.strip().endswith(f"{given}: No such file or directory")
    # Another file missing deep inside is a bug: traceback.
    _failing_command(monkeypatch, FileNotFoundError(2, "No such file", "/opt/seglab/x.json"))
    with pytest.raises(FileNotFoundError):
        cli.main(["check", str(given)])


def test_load_model_does_not_hide_a_broken_import(monkeypatch, tmp_path):
    from seglab import training
    from seglab.training import loading

    monkeypatch.setattr(loading, "CUSTOM_OBJECT_MODULES", ("seglab.no_such_module_for_this_test",))
    with pytest.raises(ImportError, match="no_such_module_for_this_test"):
        training.load_model(tmp_path / "model.keras")


def test_training_restores_the_dtype_policy_it_found(monkeypatch, tmp_path):
    from seglab import recipes, training

    def broken_build(self, *args, **kwargs):
        assert keras.config.dtype_policy().name == "mixed_float16"
        raise RuntimeError("stop after the device set-up")

    monkeypatch.setattr(recipes.Recipe, "build_model", broken_build)
    recipe = recipes.get("unet-pets", smoke=True)
    before = keras.config.dtype_policy().name
    with pytest.raises(RuntimeError, match="stop after the device set-up"):
        training.train(recipe, tmp_path / "run", synthetic=True, mixed_precision=True)
    assert keras.config.dtype_policy().name == before
