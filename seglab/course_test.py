import pytest

from seglab import course
from seglab.training import devices


class _FakeRecipe:
    dataset = "oxford_pets"

    def load_data(self, data_dir=None, *, download=True, synthetic=False):
        return ("loaded", data_dir, download, synthetic)


def test_smoke_mode_reads_the_environment(monkeypatch):
    monkeypatch.setenv("SEGLAB_SMOKE", "1")
    assert course.smoke_mode()
    monkeypatch.setenv("SEGLAB_SMOKE", "0")
    assert not course.smoke_mode()
    monkeypatch.delenv("SEGLAB_SMOKE")
    assert not course.smoke_mode()


def test_smoke_run_uses_the_sample_when_present(tmp_path, monkeypatch, capsys):
    (tmp_path / "oxford_pets_sample").mkdir()
    monkeypatch.setenv("SEGLAB_SAMPLE_DATA", str(tmp_path))
    result = course.load_lesson_data(_FakeRecipe(), smoke=True)
    assert result == ("loaded", tmp_path / "oxford_pets_sample", True, False)
    assert "sample data" in capsys.readouterr().out


def test_smoke_run_without_data_says_it_is_synthetic(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEGLAB_SAMPLE_DATA", str(tmp_path))  # no sample inside
    result = course.load_lesson_data(_FakeRecipe(), smoke=True)
    assert result[-1] is True
    assert "SYNTHETIC" in capsys.readouterr().out


def test_an_explicit_data_dir_wins_and_a_full_run_downloads(tmp_path):
    assert course.load_lesson_data(_FakeRecipe(), data_dir=tmp_path, smoke=True)[1] == tmp_path
    assert course.load_lesson_data(_FakeRecipe(), smoke=False) == ("loaded", None, True, False)


def test_max_steps_reads_a_positive_whole_number(monkeypatch):
    monkeypatch.delenv(course.MAX_STEPS_ENV, raising=False)
    assert course.max_steps() is None
    monkeypatch.setenv(course.MAX_STEPS_ENV, " 2 ")
    assert course.max_steps() == 2
    for bad in ("0", "-1", "two", "1.5"):
        monkeypatch.setenv(course.MAX_STEPS_ENV, bad)
        with pytest.raises(ValueError, match=f"SEGLAB_MAX_STEPS='{bad}': expected a positive"):
            course.max_steps()


def test_fit_limits_and_cap_batches_apply_the_cap(monkeypatch):
    monkeypatch.delenv(course.MAX_STEPS_ENV, raising=False)
    assert course.fit_limits(400) == {
        "epochs": 400,
        "steps_per_epoch": None,
        "validation_steps": None,
    }
    assert course.fit_limits(20, 50)["steps_per_epoch"] == 50
    assert list(course.cap_batches(range(5))) == [0, 1, 2, 3, 4]

    monkeypatch.setenv(course.MAX_STEPS_ENV, "2")
    assert course.fit_limits(400) == {"epochs": 1, "steps_per_epoch": 2, "validation_steps": 2}
    assert course.fit_limits(400, 1)["steps_per_epoch"] == 1
    assert course.fit_limits(0)["epochs"] == 0
    assert list(course.cap_batches(range(5))) == [0, 1]

    class Dataset:  # tf.data.Dataset's take()
        def take(self, count):
            return ("took", count)

    assert course.cap_batches(Dataset()) == ("took", 2)


def test_describe_device_names_the_gpu_or_warns_about_the_cpu(monkeypatch, capsys):
    monkeypatch.setattr(devices, "gpu_names", lambda backend=None: ["NVIDIA H100 80GB HBM3"])
    text = course.describe_device()
    assert text.startswith("GPU: NVIDIA H100 80GB HBM3 (Keras backend ")
    assert capsys.readouterr().out == text + "\n"

    monkeypatch.setattr(devices, "gpu_names", lambda backend=None: [])
    text = course.describe_device(print_result=False)
    assert text.startswith("No GPU found")
    assert "takes days on a CPU" in text and "SMOKE = True" in text and "SEGLAB_SMOKE=1" in text
    assert capsys.readouterr().out == ""


def test_describe_device_on_this_machine():
    import keras

    text = course.describe_device(print_result=False)
    gpus = devices.gpu_names(keras.backend.backend())
    assert text.startswith("GPU: " + ", ".join(gpus)) if gpus else text.startswith("No GPU found")


def test_install_cell_names_the_repository_once_and_no_dev_extra():
    assert course.INSTALL_CELL.count(course.REPOSITORY) == 1
    assert f'"seglab @ git+{course.REPOSITORY}"' in course.INSTALL_CELL
    assert "[dev]" not in course.INSTALL_CELL
    assert "tensorflow=={version('tensorflow')}" in course.INSTALL_CELL


def test_rehearsal_caps_apply_to_every_recipe(monkeypatch):
    from seglab import recipes

    monkeypatch.setenv("SEGLAB_MAX_STEPS", "2")
    monkeypatch.setenv("SEGLAB_MAX_BATCH_SIZE", "1")
    recipe = recipes.get("basnet-duts")
    # Only the batch is capped; the model, image size and graph mode stay the full run's
    # (BASNet trains a step in 17 s as a graph, in over 3 minutes eagerly).
    assert recipe.batch_size == 1 and not recipe.run_eagerly and recipe.image_size == 288
    monkeypatch.setenv("SEGLAB_MAX_BATCH_SIZE", "many")
    with pytest.raises(ValueError, match="SEGLAB_MAX_BATCH_SIZE"):
        recipes.get("basnet-duts")
    monkeypatch.delenv("SEGLAB_MAX_BATCH_SIZE")
    monkeypatch.delenv("SEGLAB_MAX_STEPS")
    assert recipes.get("basnet-duts").batch_size == 4
