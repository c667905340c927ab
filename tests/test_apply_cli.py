"""``unclip-tuner apply``: cached maps -> UFO JSON / submission CSV through the reference path."""

import json

import numpy as np
import pytest

from unclip_tuner.cache.base import MapRecord
from unclip_tuner.cache.store import MapCache
from unclip_tuner.cli import main
from unclip_tuner.io import Dataset, ImageWords, read_dataset
from unclip_tuner.postprocess.params import PostProcessParams
from unclip_tuner.postprocess.reference import decode_reference
from unclip_tuner.synthetic import synthetic_page


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("apply") / "cache"
    rng = np.random.default_rng(21)
    gt = Dataset()
    recs = []
    for i in range(3):
        prob, polys, m = synthetic_page(rng, size=256, n_words=10)
        name = f"r{i}.jpg"
        recs.append(MapRecord(name, prob, m, 300, 400))
        gt[name] = ImageWords([np.round((np.c_[p, np.ones(len(p))] @ m.T)[:, :2]) for p in polys])
    w = MapCache.create(path, {"model": "synthetic"}, meta={"params": {"thresh": 0.3, "box_thresh": 0.4,
                        "use_polygon": True}}, gt=gt)
    for r in recs:
        w.add(r)
    w.close()
    return path, recs


def test_apply_json_matches_reference(cache_dir, tmp_path, capsys):
    path, recs = cache_dir
    out = tmp_path / "pred.json"
    assert main(["apply", "--cache", str(path), "--set", "thresh=0.25", "--set", "polygon_unclip_ratio=1.8",
                 "--out", str(out), "--evaluate", "--json", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert 0.0 <= printed["hmean"] <= 1.0
    got = read_dataset(out)
    p = PostProcessParams(thresh=0.25, box_thresh=0.4, use_polygon=True, polygon_unclip_ratio=1.8)
    n = 0
    for r in recs:
        ref = decode_reference(r.prob, r.inverse_matrix, p)
        assert len(ref) == len(got[r.name])
        for (a, _), b in zip(ref, got[r.name].polygons):
            assert np.array_equal(np.asarray(a, dtype=np.int64), b.astype(np.int64))
            n += 1
    assert n > 0


def test_apply_csv_with_template(cache_dir, tmp_path):
    path, recs = cache_dir
    tpl = tmp_path / "sample_submission.csv"
    tpl.write_text("filename,polygons\nextra.jpg,\nr2.jpg,\nr0.jpg,\nr1.jpg,\n")
    out = tmp_path / "sub.csv"
    params = tmp_path / "best.yaml"
    params.write_text("thresh: 0.3\nbox_thresh: 0.5\nuse_polygon: false\n")
    assert main(["apply", "--cache", str(path), "--params", str(params), "--out", str(out),
                 "--template", str(tpl), "--evaluate", "--no-progress"]) == 0
    lines = out.read_text().splitlines()
    assert [ln.split(",")[0] for ln in lines] == ["filename", "extra.jpg", "r2.jpg", "r0.jpg", "r1.jpg"]
    assert lines[1] == "extra.jpg,"
    got = read_dataset(out)
    assert all(len(p) == 4 for w in got.values() for p in w.polygons)


def test_apply_bad_input(cache_dir, tmp_path, capsys):
    path, _ = cache_dir
    assert main(["apply", "--cache", str(path), "--set", "thresh=1.5", "--out", str(tmp_path / "x.json")]) == 2
    assert "thresh" in capsys.readouterr().err
    assert main(["apply", "--cache", str(path), "--set", "nope=1", "--out", str(tmp_path / "x.json")]) == 2
    assert main(["apply", "--cache", str(path), "--out", str(tmp_path / "x.txt")]) == 2
    assert main(["apply", "--cache", str(tmp_path / "missing"), "--out", str(tmp_path / "x.json")]) == 2


def test_apply_rejects_invalid_recorded_parameters(tmp_path, capsys):
    """A cache whose manifest records invalid parameters is an error naming them, as in
    tune-post, not a silent fall back to the defaults."""
    rng = np.random.default_rng(5)
    prob, _, m = synthetic_page(rng, size=128, n_words=3)
    path = tmp_path / "cache"
    w = MapCache.create(path, {"model": "synthetic"}, meta={"params": {"thresh": 1.7}})
    w.add(MapRecord("a.jpg", prob, m, 128, 128))
    w.close()
    out = tmp_path / "x.json"
    assert main(["apply", "--cache", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "manifest" in err and "thresh" in err
    assert not out.exists()
