import errno

import pytest

from seglab.errors import PathNotFoundError, SeglabError, SettingError


def test_path_not_found_names_the_path_and_is_a_file_not_found_error(tmp_path):
    error = PathNotFoundError(tmp_path / "nowhere", "data folder not found")
    assert str(error) == f"{tmp_path / 'nowhere'}: data folder not found"
    assert error.filename == str(tmp_path / "nowhere")
    assert error.errno == errno.ENOENT
    assert isinstance(error, FileNotFoundError) and isinstance(error, SeglabError)


@pytest.mark.parametrize(
    ("module", "name", "builtin"),
    [
        ("seglab.data.sets", "DataError", ValueError),
        ("seglab.data.download", "DownloadError", OSError),
        ("seglab.data.download", "ChecksumError", OSError),
        ("seglab.models.backbones", "WeightsDownloadError", RuntimeError),
        ("seglab.recipes", "UnknownRecipeError", KeyError),
        ("seglab.errors", "SettingError", ValueError),
    ],
)
def test_seglab_errors_keep_the_builtin_type_they_were(module, name, builtin):
    import importlib

    error_type = getattr(importlib.import_module(module), name)
    assert issubclass(error_type, SeglabError)
    assert issubclass(error_type, builtin)  # `except ValueError` written before still works


def test_recipe_settings_raise_setting_errors():
    from seglab import recipes

    with pytest.raises(SettingError, match="epochs must not be negative"):
        recipes.get("unet-pets", epochs=-1)
    with pytest.raises(PathNotFoundError, match="data folder not found"):
        recipes.get("u2net-sludge").load_data("/no/such/folder")
