from seglab import course


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
