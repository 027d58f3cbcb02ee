import pytest

from seglab.data.registry import DATASETS, get_dataset, load_for_training
from seglab.errors import PathNotFoundError, SettingError


def test_recipes_check_and_course_read_the_one_registry():
    from seglab import course, recipes
    from seglab.data.check import LAYOUTS

    assert {recipes.get(name).dataset for name in recipes.names()} <= set(DATASETS)
    for name, dataset in DATASETS.items():
        assert LAYOUTS[name] == dataset.layout
        assert course.SAMPLE_FOLDERS[name] == dataset.sample_folder


def test_unknown_dataset_and_missing_folders_are_setting_errors(tmp_path):
    with pytest.raises(SettingError, match="unknown dataset kind 'voc'; known: oxford_pets"):
        get_dataset("voc")
    with pytest.raises(SettingError, match="^unet-pets: give the Oxford-IIIT Pet folder"):
        load_for_training("oxford_pets", download=False, who="unet-pets")
    with pytest.raises(PathNotFoundError, match="nowhere: data folder not found"):
        load_for_training("duts_te", tmp_path / "nowhere")


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_each_sample_folder_loads_with_its_folder_loader(sample_data, name):
    root = sample_data(DATASETS[name].sample_folder)
    loaded = DATASETS[name].load_folder(root)
    sets = loaded if isinstance(loaded, tuple) else (loaded,)
    assert sets and all(len(dataset) > 0 for dataset in sets)
