"""Readers and writers: UFO JSON, submission CSV, ICDAR/SROIE txt folders and zips."""

import json
import zipfile

import numpy as np
import pytest

from unclip_tuner.io import (Dataset, FormatError, ImageWords, align, read_dataset,
                             read_template, write_dataset, write_submission, write_txt_dir)
from unclip_tuner.io.icdar import image_key, parse_line, parse_text


def _sample() -> Dataset:
    d = Dataset()
    d["a.jpg"] = ImageWords([[[0, 0], [10, 0], [10, 5], [0, 5]],
                             [[1.5, 2], [3, 2], [3, 4], [1.5, 4], [1, 3]]])
    d["b.jpg"] = ImageWords([])
    return d


def test_ufo_round_trip(tmp_path):
    d = _sample()
    path = tmp_path / "pred.json"
    write_dataset(d, path)
    obj = json.loads(path.read_text())
    assert list(obj["images"]["a.jpg"]["words"]) == ["0001", "0002"]
    assert obj["images"]["a.jpg"]["words"]["0001"]["points"][1] == [10, 0]
    back = read_dataset(path)
    assert list(back) == ["a.jpg", "b.jpg"]
    for k in d:
        assert len(back[k]) == len(d[k])
        for p, q in zip(back[k].polygons, d[k].polygons):
            np.testing.assert_array_equal(p, q)


def test_csv_round_trip_with_template(tmp_path):
    d = _sample()
    path = tmp_path / "sub.csv"
    write_submission(d, path, template=["c.jpg", "b.jpg", "a.jpg"])
    lines = path.read_text().splitlines()
    assert lines[0] == "filename,polygons"
    assert lines[1] == "c.jpg,"
    assert lines[2] == "b.jpg,"
    assert lines[3] == "a.jpg,0 0 10 0 10 5 0 5|1.5 2 3 2 3 4 1.5 4 1 3"
    back = read_dataset(path)
    assert list(back) == ["c.jpg", "b.jpg", "a.jpg"]
    assert len(back["c.jpg"]) == 0
    np.testing.assert_array_equal(back["a.jpg"].polygons[1], d["a.jpg"].polygons[1])
    assert read_template(path) == ["c.jpg", "b.jpg", "a.jpg"]
    with pytest.raises(ValueError, match="not in the template"):
        write_submission(d, tmp_path / "x.csv", template=["a.jpg"])


def test_icdar_line_rules():
    poly, text = parse_line("1,2,3,4,5,6,7,8,RM 1,234.00", "f:1")
    assert poly.shape == (4, 2) and text == "RM 1,234.00"
    poly, text = parse_line("1,2,3,4,5,6,7,8,10,12,2010", "f:1", coords="variable")
    assert poly.shape == (5, 2) and text == "2010"
    poly, text = parse_line("1,2,3,4,5,6,7,8", "f:1", coords="variable")
    assert poly.shape == (4, 2) and text == ""
    with pytest.raises(FormatError, match="f:3"):
        parse_line("1,2,x,4,5,6,7,8,a", "f:3")
    with pytest.raises(FormatError, match="expected 8 coordinates"):
        parse_line("1,2,3", "f:1")
    with pytest.raises(FormatError, match="NaN"):
        parse_line("1,2,3,4,5,6,7,nan,a", "f:1")


def test_icdar_bom_crlf_dont_care(tmp_path):
    content = "\ufeff1,1,5,1,5,3,1,3,hello\r\n2,2,4,2,4,4,2,4,###\r\n\r\n"
    words = parse_text(content, "f")
    assert len(words) == 2
    assert words.texts == ["hello", "###"]
    assert words.dont_care.tolist() == [False, True]
    folder = tmp_path / "gt"
    folder.mkdir()
    (folder / "gt_img_7.txt").write_bytes(content.encode("utf-8"))
    d = read_dataset(folder)
    assert list(d) == ["img_7"]
    zpath = tmp_path / "res.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("res_img_7.txt", "1,1,5,1,5,3,1,3\n")
    r = read_dataset(zpath)
    assert list(r) == ["img_7"] and len(r["img_7"]) == 1


def test_txt_writer_round_trip(tmp_path):
    d = Dataset()
    d["img_1"] = ImageWords([[[0, 0], [4, 0], [4, 2], [0, 2]]], [True], ["x"])
    write_txt_dir(d, tmp_path / "out", prefix="gt_")
    back = read_dataset(tmp_path / "out")
    assert back["img_1"].dont_care.tolist() == [True]


def test_bad_inputs(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(FormatError, match="invalid JSON"):
        read_dataset(bad)
    bad.write_text(json.dumps({"foo": 1}))
    with pytest.raises(FormatError, match="not a UFO JSON"):
        read_dataset(bad)
    bad.write_text('{"images": {"a.jpg": {"words": {"0001": {"points": [[1, NaN], [2, 3]]}}}}}')
    with pytest.raises(FormatError, match="NaN"):
        read_dataset(bad)
    csv_bad = tmp_path / "bad.csv"
    csv_bad.write_text("filename,polygons\na.jpg,1 2 3\n")
    with pytest.raises(FormatError, match="odd number"):
        read_dataset(csv_bad)
    with pytest.raises(FormatError, match="no such file"):
        read_dataset(tmp_path / "missing.json")
    xml = tmp_path / "x.xml"
    xml.write_text("")
    with pytest.raises(FormatError, match="unknown format"):
        read_dataset(xml)


def test_align_by_name_and_stem():
    gt = Dataset({"img_1.jpg": ImageWords(), "img_2.jpg": ImageWords()})
    pred = Dataset({"res_img_2.txt": ImageWords(), "img_1.jpg": ImageWords()})
    names, pairs = align(gt, pred)
    assert names == ["img_1.jpg", "img_2.jpg"]
    assert pairs == [("img_1.jpg", "img_1.jpg"), ("img_2.jpg", "res_img_2.txt")]
    with pytest.raises(FormatError, match="not in the ground truth"):
        align(gt, Dataset({"img_9.jpg": ImageWords()}))
    with pytest.raises(FormatError, match="several GT images"):
        align(Dataset({"a.jpg": ImageWords(), "a.png": ImageWords()}), Dataset({"a": ImageWords()}))


def test_image_key():
    assert image_key("gt_img_1.txt") == "img_1"
    assert image_key("res_kr_doc_KR03088.txt") == "kr_doc_KR03088"
    assert image_key("000.txt") == "000"


def test_real_files(shared_data):
    gt = read_dataset(shared_data / "cleval" / "gt_eval_doc_v1_kr.zip")
    res = read_dataset(shared_data / "cleval" / "res_eval_doc_v1_kr.zip")
    assert len(gt) == 100 and len(res) == 100
    assert sum(int(w.dont_care.sum()) for w in gt.values()) == 72
    ic = read_dataset(shared_data / "icdar2015_test" / "gt")
    assert ic.n_words() == 5230
    assert sum(int((~w.dont_care).sum()) for w in ic.values()) == 2077
    sroie = read_dataset(shared_data / "sroie_dev" / "gt")
    assert len(sroie) == 200
    assert all(p.shape == (4, 2) for w in sroie.values() for p in w.polygons)
    tt = read_dataset(shared_data / "cleval" / "gt_TotalText.zip", coords="variable")
    assert len(tt) == 300 and max(len(p) for w in tt.values() for p in w.polygons) > 4


def test_pack_polygons_any_layout():
    """Packed points and offsets equal packing each polygon reshaped to (n, 2), for
    OpenCV's (n, 1, 2) contours, (n, 2) arrays, nested lists and a mix of layouts."""
    from unclip_tuner.io.types import pack_polygons

    rng = np.random.default_rng(4)
    layouts = [
        [rng.integers(0, 100, (int(rng.integers(1, 30)), 1, 2)).astype(np.int32) for _ in range(40)],
        [rng.random((int(rng.integers(0, 9)), 2)) for _ in range(30)],
        [np.zeros((3, 2)), np.ones((2, 1, 2)), [[1, 2], [3, 4]]],
        [[[1, 2], [3, 4], [5, 6]], [[7, 8]]],
        [],
    ]
    for polys in layouts:
        for dtype in (np.float64, np.int64):
            coords, offsets = pack_polygons(polys, dtype=dtype)
            each = [np.asarray(p).reshape(-1, 2) for p in polys]
            assert coords.dtype == dtype and coords.flags.c_contiguous and coords.shape[1] == 2
            assert offsets.tolist() == np.cumsum([0] + [len(p) for p in each]).tolist()
            want = np.concatenate(each).astype(dtype) if each else np.zeros((0, 2), dtype)
            assert np.array_equal(coords, want)
