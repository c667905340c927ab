"""Importing maps computed elsewhere, exporting them, and the export-maps / info commands."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from unclip_tuner.cache import (CacheError, CacheWarning, MapCache, MapRecord, export_maps,
                                import_maps, letterbox_inverse_matrix, read_map_file)
from unclip_tuner.cache.importers import size_from_matrix, write_npz
from unclip_tuner.cache.store import MANIFEST
from unclip_tuner.cli import main
from unclip_tuner.io import Dataset, ImageWords

PARTS = {"model": "sha256:" + "ab" * 32, "preprocessing": {"profile": "seed", "input_size": 64}}


def seed_rule(width, height, side):
    """The letterbox rule as the project's spec states it, written out in plain Python."""
    scale = side / max(width, height)
    new_w, new_h = int(width * scale), int(height * scale)
    x0, y0 = (side - new_w) // 2, (side - new_h) // 2
    sx, sy = width / new_w, height / new_h
    return np.array([[sx, 0.0, -x0 * sx], [0.0, sy, -y0 * sy], [0.0, 0.0, 1.0]])


def prob_map(i, shape=(64, 64)):
    return np.random.default_rng(i).random(shape, dtype=np.float32)


def gt_for(*names):
    data = Dataset()
    for n in names:
        data[n] = ImageWords([[[1, 1], [9, 1], [9, 4], [1, 4]]])
    return data


# ------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize("size", [(962, 1203), (1203, 962), (64, 64), (100, 37), (37, 100),
                                  (3000, 4000), (50, 20)])
def test_letterbox_matrix_follows_the_seed_rule(size):
    w, h = size
    for side in (64, 1024):
        m = letterbox_inverse_matrix(w, h, side, side)
        assert np.allclose(m, seed_rule(w, h, side), rtol=1e-15, atol=1e-12)
        # the map's full extent covers the image
        corner = m @ [side, side, 1]
        assert corner[0] >= w and corner[1] >= h


def test_letterbox_matches_the_model_side_preprocessing():
    preprocess = pytest.importorskip("unclip_tuner.models.preprocess")
    rng = np.random.default_rng(3)
    for _ in range(200):
        w, h = (int(v) for v in rng.integers(20, 4000, 2))
        assert np.array_equal(letterbox_inverse_matrix(w, h, 1024, 1024),
                              preprocess.seed_inverse_matrix(w, h, 1024))


def test_size_read_back_from_a_matrix():
    rng = np.random.default_rng(5)
    exact = 0
    for _ in range(500):
        w, h = (int(v) for v in rng.integers(130, 4000, 2))
        m = letterbox_inverse_matrix(w, h, 1024, 1024)
        found = size_from_matrix(m, 1024, 1024)
        # Some sizes share one matrix (e.g. 3836x2433 and 3836x2436 at 1280); any size that
        # rebuilds the matrix exactly places the map identically.
        assert np.array_equal(letterbox_inverse_matrix(*found, 1024, 1024), m)
        exact += found == (w, h)
    assert exact >= 490
    assert size_from_matrix(letterbox_inverse_matrix(962, 1203, 1024, 1024), 1024, 1024) == (962, 1203)
    # plain per-axis scaling (PaddleOCR-style maps without padding)
    assert size_from_matrix(np.diag([1000 / 992, 700 / 704, 1.0]), 704, 992) == (1000, 700)
    assert size_from_matrix(np.array([[1.0, 0.2, 0], [0, 1, 0], [0, 0, 1]]), 64, 64) is None


# ------------------------------------------------------------------------------ npz import
def test_npz_without_matrix_gets_the_letterbox_matrix(tmp_path):
    src = tmp_path / "maps"
    src.mkdir()
    write_npz(src / "a.npz", {"prob": prob_map(0)[None], "width": np.array(962),
                              "height": np.array(1203), "filename": np.array("a.jpg")})
    rec = read_map_file(src / "a.npz")
    assert rec.name == "a.jpg" and (rec.width, rec.height) == (962, 1203)
    assert np.allclose(rec.inverse_matrix, seed_rule(962, 1203, 64), rtol=1e-15, atol=1e-12)
    assert np.array_equal(rec.prob, prob_map(0))
    # no matrix and no size: nothing places the map on its image
    write_npz(src / "b.npz", {"prob": prob_map(1)})
    with pytest.raises(CacheError, match=r"b\.npz: neither 'inverse_matrix' nor 'width'/'height'"):
        read_map_file(src / "b.npz")
    with pytest.raises(CacheError, match="b.npz"):
        import_maps(src, tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_npz_with_matrix_only_gets_its_size(tmp_path):
    m = letterbox_inverse_matrix(300, 120, 64, 64)
    write_npz(tmp_path / "x.npz", {"prob": prob_map(0), "inverse_matrix": m})
    rec = read_map_file(tmp_path / "x.npz")
    assert rec.name == "x" and (rec.width, rec.height) == (300, 120)
    assert np.array_equal(rec.inverse_matrix, m)
    # swapped width/height in our own format are an error, not a guess
    write_npz(tmp_path / "y.npz", {"prob": prob_map(0), "inverse_matrix": m,
                                   "width": np.array(120), "height": np.array(300)})
    with pytest.raises(CacheError, match="does not cover the 120x300 image.*swapped"):
        read_map_file(tmp_path / "y.npz")


@pytest.mark.parametrize("arrays,pattern", [
    ({"probability": np.zeros((4, 4), np.float32)}, "no 'prob' map"),
    ({"prob": np.zeros((2, 1, 4, 4), np.float32), "width": 4, "height": 4}, "HxW or 1xHxW"),
    ({"prob": np.zeros((2, 4, 4), np.float32), "width": 4, "height": 4}, "HxW or 1xHxW"),
    ({"prob": np.zeros((4, 4), np.uint8), "width": 4, "height": 4}, "floating point"),
    ({"prob": np.zeros((4, 4), np.float32), "inverse_matrix": np.eye(2)}, "must be 3x3"),
    ({"prob": np.zeros((4, 4), np.float32), "inverse_matrix": np.full((3, 3), np.inf)},
     "not finite"),
    ({"prob": np.zeros((4, 4), np.float32), "width": 4}, "go together"),
    ({"prob": np.zeros((4, 4), np.float32), "width": -4, "height": 4}, "positive integer"),
    ({"prob": np.zeros((4, 4), np.float32), "width": 4.5, "height": 4}, "positive integer"),
])
def test_npz_shape_and_field_checks(tmp_path, arrays, pattern):
    write_npz(tmp_path / "bad.npz", {k: np.asarray(v) for k, v in arrays.items()})
    with pytest.raises(CacheError, match=rf"bad\.npz: .*{pattern}"):
        read_map_file(tmp_path / "bad.npz")


def test_files_that_are_not_maps(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"hello")
    with pytest.raises(CacheError, match="junk.npz: not an .npz"):
        read_map_file(tmp_path / "junk.npz")
    (tmp_path / "cut.npz").write_bytes((b"PK\x03\x04" + b"\0" * 40))
    with pytest.raises(CacheError, match="cut.npz: unreadable"):
        read_map_file(tmp_path / "cut.npz")
    np.save(tmp_path / "bare.npy", prob_map(0))
    with pytest.raises(CacheError, match="bare.npy: holds a bare"):
        read_map_file(tmp_path / "bare.npy")
    with pytest.raises(CacheError, match="nothing: not a folder"):
        import_maps(tmp_path / "nothing", tmp_path / "c")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CacheError, match="no .npz or .npy"):
        import_maps(tmp_path / "empty", tmp_path / "c")


# ------------------------------------------------------------------------------ values
def test_logits_need_sigmoid_and_nan_is_refused(tmp_path):
    rng = np.random.default_rng(2)
    logits = (rng.standard_normal((64, 64)) * 8).astype(np.float32)
    logits[0, :3] = [-200.0, 200.0, 0.0]
    src = tmp_path / "maps"
    src.mkdir()
    write_npz(src / "a.npz", {"prob": logits, "width": np.array(64), "height": np.array(64)})
    with pytest.raises(CacheError, match=r"a\.npz: values outside \[0, 1\].*--sigmoid"):
        import_maps(src, tmp_path / "c")
    cache = import_maps(src, tmp_path / "c", sigmoid=True)
    got = cache.get("a").prob
    ref = (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
    # float64 logistic rounded to float32: equal up to one float32 rounding step.
    assert np.abs(got - ref).max() <= 6e-8
    assert got[0, 0] == 0.0 and got[0, 1] == 1.0 and got[0, 2] == 0.5
    assert cache.meta["source"]["sigmoid"] is True

    nan = logits.copy()
    nan[5, 5] = np.nan
    write_npz(src / "a.npz", {"prob": nan, "width": np.array(64), "height": np.array(64)})
    for sig in (False, True):
        with pytest.raises(CacheError, match="a.npz: the probability map contains NaN"):
            read_map_file(src / "a.npz", sigmoid=sig)


# ------------------------------------------------------------------------------ pickles
def save_pickle(path: Path, i: int, w: int, h: int, shape_key="network", name=None):
    """The winning team's layout: ``np.save`` of a dict, ``image_shape`` = network (C, H, W)."""
    d = {"prob_map": prob_map(i)[None], "inverse_matrix": letterbox_inverse_matrix(w, h, 64, 64),
         "filename": name or f"{path.stem}.jpg"}
    if shape_key == "network":
        d["image_shape"] = (3, 64, 64)
    elif shape_key == "hw":
        d["image_shape"] = (h, w)
    elif shape_key == "wh":
        d["image_shape"] = (w, h)
    np.save(path, d, allow_pickle=True)


def test_pickled_dicts_need_allow_pickle(tmp_path):
    src = tmp_path / "maps"
    src.mkdir()
    save_pickle(src / "r1.npy", 0, 400, 900)
    save_pickle(src / "r2.npy", 1, 900, 400, shape_key="hw")
    with pytest.raises(CacheError, match=r"r1\.npy: holds pickled.*--allow-pickle"):
        import_maps(src, tmp_path / "c")
    assert not (tmp_path / "c").exists()
    cache = import_maps(src, tmp_path / "c", allow_pickle=True)
    assert cache.names() == ["r1.jpg", "r2.jpg"]
    r1, r2 = cache.get("r1.jpg"), cache.get("r2.jpg")
    assert (r1.width, r1.height) == (400, 900)  # read back from the matrix
    assert (r2.width, r2.height) == (900, 400)  # from image_shape (H, W)
    assert np.array_equal(r1.prob, prob_map(0)) and np.array_equal(r2.prob, prob_map(1))
    assert np.array_equal(r1.inverse_matrix, letterbox_inverse_matrix(400, 900, 64, 64))
    # An object array inside an .npz is refused the same way.
    np.savez(src / "obj.npz", prob=prob_map(0), filename=np.array(["x"], dtype=object))
    with pytest.raises(CacheError, match="obj.npz: holds pickled"):
        read_map_file(src / "obj.npz")


def test_pickled_image_shape_orientation_is_checked(tmp_path):
    save_pickle(tmp_path / "s.npy", 0, 400, 900, shape_key="wh")
    with pytest.warns(CacheWarning, match="using it as \\(W, H\\): 400x900"):
        rec = read_map_file(tmp_path / "s.npy", allow_pickle=True)
    assert (rec.width, rec.height) == (400, 900)
    np.save(tmp_path / "t.npy", {"prob_map": prob_map(0), "image_shape": (5, 6, 7, 8)},
            allow_pickle=True)
    with pytest.raises(CacheError, match="t.npy: cannot read an image size"):
        read_map_file(tmp_path / "t.npy", allow_pickle=True)
    np.save(tmp_path / "v.npy", np.array([{"a": 1}, {"b": 2}], dtype=object), allow_pickle=True)
    with pytest.raises(CacheError, match="v.npy: expected a pickled dict"):
        read_map_file(tmp_path / "v.npy", allow_pickle=True)


# ------------------------------------------------------------------------------ GT matching
def _npz(path: Path, i: int, filename=None, w=100, h=80):
    arrays = {"prob": prob_map(i), "width": np.array(w), "height": np.array(h)}
    if filename is not None:
        arrays["filename"] = np.array(filename)
    write_npz(path, arrays)


def test_maps_matched_to_gt_by_name_then_stem(tmp_path):
    src = tmp_path / "maps"
    src.mkdir()
    _npz(src / "m1.npz", 1, "img_1.jpg")     # exact name
    _npz(src / "img_2.npz", 2)               # no filename: the file stem, matched by stem
    _npz(src / "m3.npz", 3, "res_img_3.png")  # stem after the res_ prefix
    gt = gt_for("img_1.jpg", "img_2.jpg", "img_3.jpg", "img_4.jpg", "img_5.jpg")
    with pytest.warns(CacheWarning, match=r"2 GT image\(s\) have no map: 'img_4.jpg', 'img_5.jpg'"):
        cache = import_maps(src, tmp_path / "c", gt=gt)
    assert cache.names() == ["img_1.jpg", "img_2.jpg", "img_3.jpg"]
    assert np.array_equal(cache.get("img_3.jpg").prob, prob_map(3))
    assert list(cache.gt) == list(gt)
    info = cache.info()["gt"]
    assert info["images_without_map"] == ["img_4.jpg", "img_5.jpg"] and info["maps_without_gt"] == []
    # GT as a file path works too
    from unclip_tuner.io import write_ufo

    write_ufo(gt, tmp_path / "gt.json")
    with pytest.warns(CacheWarning):
        cache = import_maps(src, tmp_path / "c2", gt=tmp_path / "gt.json")
    assert cache.names() == ["img_1.jpg", "img_2.jpg", "img_3.jpg"]


def test_ambiguous_unknown_and_duplicate_maps(tmp_path):
    src = tmp_path / "maps"
    src.mkdir()
    _npz(src / "a.npz", 1, "a.jpg")
    with pytest.raises(CacheError, match=r"a\.npz: image 'a.jpg' matches several GT images by stem"):
        import_maps(src, tmp_path / "c", gt=gt_for("a.png", "a.tif"))
    with pytest.raises(CacheError, match=r"1 map\(s\) match no GT image, e.g. 'a.jpg'"):
        import_maps(src, tmp_path / "c", gt=gt_for("b.jpg"))
    _npz(src / "b.npz", 2, "a.png")
    with pytest.raises(CacheError, match=r"b\.npz: image 'a.jpg' already comes from .*a\.npz"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CacheWarning)
            import_maps(src, tmp_path / "c", gt=gt_for("a.jpg", "x.jpg"))
    _npz(src / "b.npz", 2, "a.jpg")
    with pytest.raises(CacheError, match="already comes from"):
        import_maps(src, tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_import_resumes_and_refuses_other_maps(tmp_path):
    src = tmp_path / "maps"
    src.mkdir()
    for i in range(4):
        _npz(src / f"p{i}.npz", i)
    import_maps(src, tmp_path / "c", meta={"target": "juny79"})
    again = import_maps(src, tmp_path / "c")
    assert again.names() == ["p0", "p1", "p2", "p3"] and again.meta["target"] == "juny79"
    _npz(src / "p1.npz", 11)
    with pytest.raises(CacheError, match="different fingerprint.*overwrite"):
        import_maps(src, tmp_path / "c")
    cache = import_maps(src, tmp_path / "c", overwrite=True, dtype="float16")
    assert cache.dtype == "float16"
    assert np.array_equal(cache.get("p1").prob, prob_map(11).astype(np.float16).astype(np.float32))


# ------------------------------------------------------------------------------ export
def _cache_for_export(root: Path) -> list:
    recs = [MapRecord("img_0.jpg", prob_map(0), letterbox_inverse_matrix(962, 1203, 64, 64), 962, 1203),
            MapRecord("sub/img 1.png", prob_map(1, (48, 64)),
                      np.diag([1000 / 64, 700 / 48, 1.0]), 1000, 700),
            MapRecord("x/img_0.png", prob_map(2), letterbox_inverse_matrix(50, 20, 64, 64), 50, 20)]
    with MapCache.create(root, PARTS) as w:
        for r in recs:
            w.add(r)
    return recs


def test_export_import_export_is_byte_identical(tmp_path):
    recs = _cache_for_export(tmp_path / "c1")
    files1 = export_maps(tmp_path / "c1", tmp_path / "e1")
    # shared stems get a hash of the full name; other files are named after the stem
    assert [f.name for f in files1][1] == "img_1.npz"
    assert len({f.name for f in files1}) == 3
    for f, r in zip(files1, recs):
        with np.load(f, allow_pickle=False) as z:
            assert z.files == ["prob", "inverse_matrix", "width", "height", "filename"]
            assert z["prob"].dtype == np.float32 and np.array_equal(z["prob"], r.prob)
            assert np.array_equal(z["inverse_matrix"], r.inverse_matrix)
            assert (int(z["width"]), int(z["height"]), str(z["filename"])) == (r.width, r.height, r.name)
    import_maps(tmp_path / "e1", tmp_path / "c2")
    # without GT, imported maps are cached in file-name order
    assert sorted(MapCache.open(tmp_path / "c2").names()) == sorted(r.name for r in recs)
    files2 = export_maps(tmp_path / "c2", tmp_path / "e2")
    assert sorted(f.name for f in files1) == sorted(f.name for f in files2)
    for a in files1:
        assert a.read_bytes() == (tmp_path / "e2" / a.name).read_bytes()
    # exporting again later gives the same bytes (no timestamps in the zip)
    export_maps(tmp_path / "c1", tmp_path / "e3")
    for a in files1:
        assert a.read_bytes() == (tmp_path / "e3" / a.name).read_bytes()


def test_export_selected_images(tmp_path):
    _cache_for_export(tmp_path / "c")
    files = export_maps(tmp_path / "c", tmp_path / "e", images=["img 1.png", "img_0.jpg"])
    assert len(files) == 2
    with np.load(files[0]) as z:
        assert str(z["filename"]) == "sub/img 1.png"
    with pytest.raises(CacheError, match="'img_0': matches several images"):
        export_maps(tmp_path / "c", tmp_path / "e", images=["img_0"])
    with pytest.raises(CacheError, match="'nope.jpg': matches no image"):
        export_maps(tmp_path / "c", tmp_path / "e", images=["nope.jpg"])


# ------------------------------------------------------------------------------ commands
def test_info_and_export_commands(tmp_path, capsys):
    _cache_for_export(tmp_path / "c")
    (tmp_path / "c" / "study_thresh.journal").write_text("")
    assert main(["info", "--cache", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "fingerprint  sha256:" in out and "profile" in out and "float32" in out
    assert "3 map(s)" in out and "64x64 (2), 48x64 (1)" in out
    assert "study_thresh.journal" in out and "verified     ok" in out
    assert main(["export-maps", "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "e"),
                 "--images", "img_0.jpg", "--no-progress"]) == 0
    assert "wrote 1 map file(s)" in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "e").iterdir()] == ["img_0.npz"]


def test_info_on_a_damaged_cache(tmp_path, capsys):
    _cache_for_export(tmp_path / "c")
    first = MapCache.open(tmp_path / "c").map_file("img_0.jpg")
    data = bytearray(first.read_bytes())
    data[-1] ^= 1
    first.write_bytes(bytes(data))
    assert main(["info", "--cache", str(tmp_path / "c")]) == 1
    assert f"FAILED: {first}" in capsys.readouterr().out
    (tmp_path / "c" / MANIFEST).write_text('{"format": "unclip-tuner map ca')
    assert main(["info", "--cache", str(tmp_path / "c")]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "manifest.json: corrupt manifest" in err[0]
    assert err[0].startswith("unclip-tuner info: error:")
    assert main(["export-maps", "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "e")]) == 2
    assert "manifest.json" in capsys.readouterr().err
