import sys
import types

import numpy as np
import pytest
from PIL import Image

from seglab.data.check import LAYOUTS, check, check_folder, detect_layout, read_mask
from seglab.data.sets import DataError, SegmentationSet


def _save(path, array, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return str(path)


def _image(height=16, width=20):
    return np.random.default_rng(height * width).integers(
        0, 255, (height, width, 3), dtype=np.uint8
    )


def _mask(height=16, width=20, value=1):
    mask = np.zeros((height, width), np.uint8)
    mask[4:10, 5:12] = value
    return mask


def _good_pair(folder, stem, masks="masks"):
    return (
        _save(folder / "images" / f"{stem}.jpg", _image()),
        _save(folder / masks / f"{stem}.png", _mask()),
    )


def _class_set(pairs, num_classes=2, label_offset=0):
    return SegmentationSet("bad", tuple(pairs), "class", num_classes, label_offset)


def test_check_reports_every_problem_at_once_naming_each_file(tmp_path):
    good = _good_pair(tmp_path, "good")
    truncated = tmp_path / "images" / "truncated.jpg"
    truncated.write_bytes(open(good[0], "rb").read()[:300])
    garbage = tmp_path / "images" / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    pairs = [
        good,
        (str(truncated), good[1]),
        (str(garbage), good[1]),
        (good[0], str(tmp_path / "masks" / "gone.png")),
        (str(tmp_path / "images" / "gone.jpg"), good[1]),
        (good[0], _save(tmp_path / "masks" / "small.png", _mask(8, 10))),
        (good[0], _save(tmp_path / "masks" / "seven.png", _mask(value=7))),
    ]
    report = check(_class_set(pairs, num_classes=2))
    assert report.checked == 7 and not report.ok
    messages = {(p.path.rsplit("/", 1)[-1], p.message.split(" (")[0]) for p in report.problems}
    assert messages == {
        ("truncated.jpg", "corrupt or unreadable image"),
        ("garbage.png", "corrupt or unreadable image"),
        ("gone.png", "mask file not found"),
        ("gone.jpg", "image file not found"),
        ("small.png", "mask size 10x8 differs from image size 20x16"),
        ("seven.png", "label values {7} outside [0, 2) for num_classes=2"),
    }
    text = str(report)
    assert "6 problem(s)" in text and all(name in text for name, _ in messages)
    with pytest.raises(DataError, match=r"(?s)6 problem\(s\).*truncated\.jpg.*seven\.png"):
        report.raise_if_problems()


def test_labels_negative_after_offset_are_reported(tmp_path):
    pair = (_save(tmp_path / "a.jpg", _image()), _save(tmp_path / "a.png", _mask(value=3)))
    report = check(_class_set([pair], num_classes=3, label_offset=1))  # 0 - 1 = -1
    assert len(report.problems) == 1
    assert report.problems[0].path.endswith("a.png")
    assert "label values {-1} after subtracting label_offset=1 outside [0, 3)" in str(report)
    assert report.label_values == {-1: 16 * 20 - 42, 2: 42}


def test_soft_masks_stored_as_0_1_and_formats_tf_cannot_read_are_reported(tmp_path):
    image = _save(tmp_path / "a.jpg", _image())
    zero_one = _save(tmp_path / "zero_one.png", _mask(value=1))
    tiff = _save(tmp_path / "b.tif", _image())
    soft = SegmentationSet("soft", ((image, zero_one), (tiff, zero_one)), "soft", 1)
    problems = [str(p) for p in check(soft).problems]
    assert any("zero_one.png: soft mask stores 0/1" in p for p in problems)
    assert any("b.tif: TIFF files cannot be decoded by the tf.data pipeline" in p for p in problems)


def test_read_mask_keeps_16_bit_and_palette_values(tmp_path):
    ids = np.array([[0, 1], [2, 1000]], np.uint16)
    np.testing.assert_array_equal(read_mask(_save(tmp_path / "a.png", ids)), ids)
    palette = Image.fromarray(np.array([[0, 1], [2, 3]], np.uint8)).convert("P")
    palette.putpalette([200, 0, 0] * 256)
    palette.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), [[0, 1], [2, 3]])


def test_check_folder_on_the_real_samples(sample_data):
    report = check_folder(sample_data("microscopy_sample"), num_classes=2)
    assert report.ok and report.checked == 65 and set(report.label_values) == {0, 1}
    assert report.layout.startswith("PaddleSeg")
    sod = check_folder(sample_data("sod_sample"))
    assert sod.ok and sod.checked == 80 and sod.layout.startswith("paired folders")


def _salient_pair(folder, stem, mask=None):
    return (
        _save(folder / "images" / f"{stem}.jpg", _image()),
        _save(folder / "masks" / f"{stem}.png", _mask(value=255) if mask is None else mask),
    )


def test_check_folder_reports_loader_problems_with_file_names(tmp_path):
    _salient_pair(tmp_path, "a")
    _save(tmp_path / "images" / "lonely.jpg", _image())
    _save(tmp_path / "masks" / "orphan.png", _mask(value=255))
    report = check_folder(tmp_path)
    paths = sorted(p.path.rsplit("/", 1)[-1] for p in report.problems)
    assert paths == ["lonely.jpg", "orphan.png"]
    assert "no mask in" in str(report) and "no image in" in str(report)


def test_loader_problems_keep_their_paths_even_with_a_colon_in_a_file_name(tmp_path):
    # The loader's DataError carries (path, message) pairs: nothing is parsed back from text.
    _salient_pair(tmp_path, "a")
    _save(tmp_path / "images" / "scan: 2.jpg", _image())
    report = check_folder(tmp_path)
    assert [(p.path, p.message) for p in report.problems] == [
        (str(tmp_path / "images" / "scan: 2.jpg"), f"no mask in {tmp_path / 'masks'}")
    ]


def test_a_pets_folder_with_a_bad_list_line_names_the_line(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations" / "trimaps").mkdir(parents=True)
    (tmp_path / "annotations" / "trainval.txt").write_text("Abyssinian_1 1 1\n")
    (tmp_path / "annotations" / "test.txt").write_text("")
    report = check_folder(tmp_path)
    assert [p.path for p in report.problems] == [f"{tmp_path / 'annotations' / 'trainval.txt'}:1"]
    assert report.problems[0].message.startswith("expected 'Image CLASS-ID SPECIES BREED-ID'")


def test_check_folder_still_checks_the_pairs_beside_a_missing_mask(tmp_path):
    _salient_pair(tmp_path, "a")
    _save(tmp_path / "images" / "lonely.jpg", _image())
    _salient_pair(tmp_path, "wrong_size", mask=_mask(height=8, width=8, value=255))
    (tmp_path / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    _save(tmp_path / "masks" / "broken.png", _mask(value=255))
    report = check_folder(tmp_path)
    # The missing mask is reported, and so are the problems of the pairs beside it.
    named = sorted(p.path.rsplit("/", 1)[-1].split(".")[0] for p in report.problems)
    assert named == ["broken", "lonely", "wrong_size"], str(report)


def test_check_folder_paddleseg_reports_bad_lines_and_labels(tmp_path):
    for stem in ("a", "b"):
        _good_pair(tmp_path, stem, masks="labels")
    _save(tmp_path / "labels" / "b.png", _mask(value=5))
    (tmp_path / "train_list.txt").write_text(
        "images/a.jpg labels/a.png\nimages/b.jpg labels/b.png\n"
    )
    (tmp_path / "val_list.txt").write_text("images/a.jpg labels/a.png\nonly_one_field.jpg\n")
    report = check_folder(tmp_path, num_classes=2)
    text = str(report)
    assert "val_list.txt:2: expected 'image_path label_path'" in text
    assert "b.png: label values {5} outside [0, 2)" in text
    # Without num_classes the values are listed, not judged.
    relaxed = check_folder(tmp_path)
    assert set(relaxed.label_values) == {0, 1, 5}
    assert not any("outside" in p.message for p in relaxed.problems)


def test_missing_empty_and_unknown_folders_raise_naming_the_folder(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nowhere'}: folder not found"):
        check_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=f"{tmp_path / 'empty'}: the folder is empty"):
        check_folder(tmp_path / "empty")
    (tmp_path / "odd" / "pictures").mkdir(parents=True)
    with pytest.raises(DataError, match="odd: unknown dataset layout") as error:
        check_folder(tmp_path / "odd")
    assert "pictures" in str(error.value)
    assert all(description in str(error.value) for description in LAYOUTS.values())


def test_empty_images_folder_is_a_problem_naming_it(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    report = check_folder(tmp_path)
    assert [str(p) for p in report.problems] == [
        f"{tmp_path / 'images'}: no images found (looked for .jpg, .jpeg, .png, .bmp, .gif, .tif, .tiff)"
    ]


@pytest.mark.parametrize(
    "folders, layout, module, loader",
    [
        (("images", "annotations/trimaps"), "oxford_pets", "seglab.data.pets", "load_oxford_pets"),
        (
            ("DUTS-TE/DUTS-TE-Image", "DUTS-TE/DUTS-TE-Mask"),
            "duts_te",
            "seglab.data.duts",
            "load_duts_te",
        ),
        (
            (
                "instance-level_human_parsing/Training/Images",
                "instance-level_human_parsing/Training/Category_ids",
            ),
            "cihp",
            "seglab.data.cihp",
            "load_cihp",
        ),
    ],
)
def test_public_dataset_layouts_are_detected_and_loaded_by_their_module(
    tmp_path, monkeypatch, folders, layout, module, loader
):
    for folder in folders:
        (tmp_path / folder).mkdir(parents=True)
    assert detect_layout(tmp_path) == layout
    pair = (_save(tmp_path / "x.jpg", _image()), _save(tmp_path / "x.png", _mask(value=4)))
    calls = []

    def fake_loader(root):
        calls.append(root)
        return _class_set([pair], num_classes=3)

    monkeypatch.setitem(sys.modules, module, types.SimpleNamespace(**{loader: fake_loader}))
    report = check_folder(tmp_path)
    assert calls == [tmp_path]
    assert [p.message.split(" outside")[0] for p in report.problems] == ["label values {4}"]


# ----------------------------------------------------------------------------------------------
# The ignore label (255 by default) and masks saved as 0/255


def _labels_folder(root, masks, layout="labels"):
    """images/ + labels/ (or a PaddleSeg layout with both splits) holding these masks."""
    for index, mask in enumerate(masks):
        _save(root / "images" / f"{index}.jpg", _image())
        _save(root / "labels" / f"{index}.png", mask)
    if layout == "paddleseg":
        lines = [f"images/{i}.jpg labels/{i}.png\n" for i in range(len(masks))]
        (root / "train_list.txt").write_text("".join(lines[1:]))
        (root / "val_list.txt").write_text(lines[0])
    return root


def _with_border(mask, value=255):
    mask = mask.copy()
    mask[0] = value
    return mask


def test_the_ignore_label_is_allowed_and_counted_apart(tmp_path):
    pair = (_save(tmp_path / "a.jpg", _image()), _save(tmp_path / "a.png", _with_border(_mask())))
    report = check(_class_set([pair], num_classes=2))
    assert report.ok, str(report)
    assert report.ignored_pixels == 20 and report.label_values == {0: 16 * 20 - 20 - 42, 1: 42}
    assert "ignored (label 255): 20 pixels" in str(report)
    # With no ignore label, 255 is a label value out of range.
    strict = check(_class_set([pair], num_classes=2).replace(ignore_label=None))
    assert [p.message for p in strict.problems] == [
        "label values {255} outside [0, 2) for num_classes=2 (ignore_label=None)"
    ]


def test_the_ignore_label_is_a_stored_value_and_other_values_stay_errors(tmp_path):
    # Trimap ids 1..3 (label_offset=1) with 255 borders: 255 is ignored, not class 254.
    trimap = _with_border(_mask(value=2) + 1)
    good = (_save(tmp_path / "t.jpg", _image()), _save(tmp_path / "t.png", trimap))
    bad = (good[0], _save(tmp_path / "bad.png", _with_border(trimap, value=254)))
    report = check(_class_set([good, bad], num_classes=3, label_offset=1))
    assert report.ignored_pixels == 20
    assert [(p.path.rsplit("/", 1)[-1], p.message) for p in report.problems] == [
        (
            "bad.png",
            "label values {253} after subtracting label_offset=1 outside [0, 3) for "
            "num_classes=3 (ignore_label=255 is allowed)",
        )
    ]


def test_masks_of_only_0_and_255_get_a_warning_saying_how_to_fix_them(tmp_path):
    binary = [_mask(value=255), _mask(value=255)]
    root = _labels_folder(tmp_path / "binary", binary)
    for num_classes in (None, 2):  # 255 is ignored by default, so it is no error either way
        report = check_folder(root, num_classes=num_classes)
        assert report.ok, str(report)
        assert len(report.warnings) == 1
        message = report.warnings[0].message
        assert "every mask holds only 0 and 255, and 255 is the ignore label" in message
        assert "divide them by 255" in message and "mask_kind='soft'" in message
        assert f"warning: {report.warnings[0]}" in str(report)
    # Without an ignore label and without num_classes, still a warning; with num_classes=2,
    # problems that say the same.
    report = check_folder(root, ignore_label=None)
    assert report.ok and "Two classes are stored as 0 and 1" in report.warnings[0].message
    report = check_folder(root, num_classes=2, ignore_label=None)
    assert not report.warnings and len(report.problems) == 2
    assert all(p.message.endswith("divide it by 255)") for p in report.problems)


def test_0_1_255_masks_and_other_two_valued_sets_get_no_warning(tmp_path):
    cases = {
        "with_ignored": [_with_border(_mask()), _mask()],  # 0, 1 and 255: fine
        "zero_one": [_mask(), _mask()],
        "zero_seven": [_mask(value=7), _mask(value=7)],
    }
    for name, masks in cases.items():
        report = check_folder(_labels_folder(tmp_path / name, masks))
        assert not report.warnings, (name, str(report))


def test_train_and_val_lists_warn_once(tmp_path):
    masks = [_mask(value=255)] * 3
    report = check_folder(_labels_folder(tmp_path, masks, layout="paddleseg"))
    assert report.layout.startswith("PaddleSeg") and report.checked == 3
    assert len(report.warnings) == 1 and report.ignored_pixels == 3 * 42


def test_check_folder_refuses_an_ignore_label_that_is_a_class(tmp_path):
    root = _labels_folder(tmp_path, [_mask()])
    with pytest.raises(ValueError, match="ignore_label=1 is also a class id for num_classes=3"):
        check_folder(root, num_classes=3, ignore_label=1)


def test_command_line_check_warns_and_takes_ignore_label(tmp_path, capsys):
    from seglab.cli import main

    root = _labels_folder(tmp_path, [_mask(value=255)])
    assert main(["check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "no problems" in out and "warning:" in out and "divide them by 255" in out
    assert main(["check", str(root), "--num-classes", "2", "--ignore-label", "none"]) == 1
    assert "label values {255} outside [0, 2)" in capsys.readouterr().out
    assert main(["check", str(root), "--ignore-label", "7"]) == 0
    assert main(["check", str(root), "--ignore-label", "x"]) == 2
    assert "--ignore-label" in capsys.readouterr().err
