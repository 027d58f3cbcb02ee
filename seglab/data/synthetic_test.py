import numpy as np
from PIL import Image

from seglab.data.check import check
from seglab.data.pipeline import make_dataset
from seglab.data.synthetic import make_synthetic_multiclass, make_synthetic_salient


def _files(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_salient_set_is_deterministic_and_learnable(tmp_path):
    dataset = make_synthetic_salient(tmp_path / "a", count=6, size=64, seed=3)
    make_synthetic_salient(tmp_path / "b", count=6, size=64, seed=3)
    make_synthetic_salient(tmp_path / "c", count=6, size=64, seed=4)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert _files(tmp_path / "a") != _files(tmp_path / "c")
    assert len(dataset) == 6 and dataset.mask_kind == "soft"
    assert check(dataset).ok
    for image_path, mask_path in dataset.pairs:
        image = np.asarray(Image.open(image_path), np.float32)
        mask = np.asarray(Image.open(mask_path))
        assert image.shape == (64, 64, 3) and mask.shape == (64, 64)
        assert mask.max() == 255 and mask.min() == 0
        assert np.any((mask > 0) & (mask < 255))  # anti-aliased edge
        inside, outside = image[mask == 255], image[mask == 0]
        # The object stands out: its mean colour is far from the background's.
        assert np.linalg.norm(inside.mean(0) - outside.mean(0)) > 40
        assert 0.02 < np.mean(mask > 127) < 0.6


def test_multiclass_set_is_a_paddleseg_layout_with_every_class(tmp_path):
    train, val = make_synthetic_multiclass(tmp_path, count=20, size=48, num_classes=4, seed=1)
    assert (len(train), len(val)) == (16, 4)
    assert (tmp_path / "train_list.txt").is_file() and (tmp_path / "val_list.txt").is_file()
    report = check(train)
    assert report.ok and set(report.label_values) == {0, 1, 2, 3}
    _, masks = next(iter(make_dataset(val, image_size=48, batch_size=4)))
    assert set(np.unique(masks.numpy())) <= {0, 1, 2, 3}
    # Each class has its own colour, so the pixels of a class share a colour.
    image = np.asarray(Image.open(train.image_paths[0]), np.float32)
    label = np.asarray(Image.open(train.mask_paths[0]))
    for class_id in set(np.unique(label)) - {0}:
        colours = image[label == class_id]
        assert colours.std(0).max() < 30
