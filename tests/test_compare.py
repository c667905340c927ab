"""``compare``: every model tuned on one split and compared on held-out images.

Small synthetic caches (192-pixel maps, 20-24 images, 8-12 trials). Model B is model A with
its maps degraded: Gaussian-blurred and scaled down by a smooth factor that varies across
the page between 0.5 and 1 (a less confident model: no single threshold suits every word),
so tuning B cannot make up for it and A must come out better with an interval above 0.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from unclip_tuner.cache import MapCache, MapRecord
from unclip_tuner.cache.base import InMemoryMapStore
from unclip_tuner.cli import main
from unclip_tuner.io.types import Dataset, ImageWords
from unclip_tuner.postprocess.engine import ReferenceEngine
from unclip_tuner.postprocess.params import PostProcessParams
from unclip_tuner.search.compare import CompareError, compare_caches
from unclip_tuner.search.holdout import split_holdout
from unclip_tuner.search.space import build_space
from unclip_tuner.synthetic import synthetic_page

SIZE = 192
IMAGE = (144, 192)
CURRENT = {"thresh": 0.3, "box_thresh": 0.4, "max_candidates": 500, "use_polygon": True,
           "box_unclip_ratio": 1.5, "polygon_unclip_ratio": 2.0}
#: A coarse space: with a dozen trials both searches get close to their model's optimum,
#: so the comparison measures the maps rather than the luck of the search.
COARSE = ["thresh=0.1:0.4:0.05", "polygon_unclip_ratio=1.2:2.0:0.2"]
COARSE_FIX = ["box_thresh=0.4"]


def pages(n: int, seed: int = 0):
    """``n`` synthetic pages: map records and their ground truth in image pixels."""
    rng = np.random.default_rng(seed)
    records, gt = [], {}
    for i in range(n):
        prob, polys, m = synthetic_page(rng, size=SIZE, n_words=16, image_size=IMAGE,
                                        text_scale=1.0, n_specks=4, gt_unclip=1.8)
        name = f"img_{i:02d}.jpg"
        records.append(MapRecord(name, prob, m, *IMAGE))
        gt[name] = ImageWords([np.round(p @ m[:2, :2].T + m[:2, 2]) for p in polys])
    return records, Dataset(gt)


def degrade(records, sigma: float = 1.5, floor: float = 0.5, seed: int = 123):
    """Blur each map, then scale it by a smooth random field in ``[floor, 1]``."""
    rng = np.random.default_rng(seed)
    out = []
    for r in records:
        h, w = r.prob.shape
        coarse = rng.uniform(0, 1, (3, 3)).astype(np.float32)
        field = np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)
        prob = cv2.GaussianBlur(r.prob, (0, 0), sigma) * (np.float32(floor)
                                                          + np.float32(1 - floor) * field)
        out.append(MapRecord(r.name, prob.astype(np.float32), r.inverse_matrix, r.width,
                             r.height))
    return out


def write_cache(path: Path, records, gt, model: str, meta=None) -> Path:
    meta = {"params": dict(CURRENT), "target": "karmakaryx"} if meta is None else meta
    with MapCache.create(path, {"model": model}, meta=meta, gt=gt, fsync=False) as w:
        for r in records:
            w.add(r)
    return Path(path)


def open_cache(path: Path) -> MapCache:
    return MapCache.open(path, mmap=True)


@pytest.fixture
def pair(tmp_path):
    """Caches ``A`` (clean maps) and ``B`` (degraded maps) of the same 24 images."""
    records, gt = pages(24)
    a = write_cache(tmp_path / "A", records, gt, "A")
    b = write_cache(tmp_path / "B", degrade(records), gt, "B")
    return a, b


# --------------------------------------------------------------------------------------------

def test_degraded_model_is_found_worse(pair):
    a, b = pair
    space = build_space("polygon", None, COARSE, COARSE_FIX)
    res = compare_caches([open_cache(a), open_cache(b)], ["A", "B"], trials=12, holdout=0.5,
                         seed=0, space=space, jobs=2, n_boot=2000)
    names = open_cache(a).names()
    search, held = split_holdout(names, 0.5, 0)
    assert res.holdout_images == held and res.search_images == search and len(held) == 12

    p = res.pair("A", "B")
    assert p.diff.low > 0, p.diff
    assert p.verdict.startswith("A better")
    assert p.wins + p.losses + p.ties == 12 and p.wins > p.losses
    ha, hb = res.model("A").hmeans(), res.model("B").hmeans()
    assert p.diff.estimate == pytest.approx(float(np.mean(ha - hb)), abs=1e-12)
    assert p.wins == int(np.sum(ha > hb)) and p.ties == int(np.sum(ha == hb))
    # the other order is the mirror image (same resampled images)
    q = res.pair("B", "A")
    assert (q.diff.estimate, q.diff.low, q.diff.high) == pytest.approx(
        (-p.diff.estimate, -p.diff.high, -p.diff.low), abs=1e-12)
    assert (q.wins, q.losses, q.ties) == (p.losses, p.wins, p.ties)

    for m in res.models:
        assert m.n_complete == 12 and m.ran_here == 12 and m.first_trial == 0
        assert m.first_params == PostProcessParams.from_dict(CURRENT)
        assert m.best_interval.low <= m.best_interval.estimate <= m.best_interval.high
        assert m.best_params.box_thresh == 0.4 and m.best_params.use_polygon
        # the scores are those of the reference decoder and metric on the held-out images
        ref = ReferenceEngine(open_cache(a if m.label == "A" else b))
        want = ref.evaluate(m.best_params, images=held)
        np.testing.assert_allclose(m.hmeans(), [s.hmean for s in want.per_image], rtol=0,
                                   atol=1e-6)


def test_identical_caches_differ_by_exactly_zero(tmp_path):
    records, gt = pages(20, seed=3)
    a = write_cache(tmp_path / "A", records, gt, "same")
    b = tmp_path / "B"
    shutil.copytree(a, b)
    res = compare_caches([open_cache(a), open_cache(b)], trials=8, holdout=0.3, seed=1,
                         jobs=2, n_boot=500)
    assert res.labels == ["A", "B"]
    p = res.pairs[0]
    n = len(res.holdout_images)
    assert n == 6
    assert (p.diff.estimate, p.diff.low, p.diff.high) == (0.0, 0.0, 0.0)
    assert (p.diff_first.low, p.diff_first.high) == (0.0, 0.0)
    assert (p.wins, p.losses, p.ties) == (0, 0, n)
    assert p.verdict == "identical on every held-out image"
    ma, mb = res.models
    assert ma.best_params == mb.best_params and ma.study_name == mb.study_name


def test_existing_tune_post_study_is_reused(pair, capsys):
    a, b = pair
    assert main(["tune-post", "--cache", str(a), "--trials", "8", "--holdout", "0.3",
                 "--seed", "2", "--jobs", "2", "--no-plots", "--no-progress",
                 "--bootstrap", "300", "--out", str(a.parent / "tuneA")]) == 0
    capsys.readouterr()
    summary = json.loads((a.parent / "tuneA" / "summary.json").read_text())
    res = compare_caches([open_cache(a), open_cache(b)], ["A", "B"], trials=8, holdout=0.3,
                         seed=2, jobs=2, n_boot=300)
    ma, mb = res.models
    assert ma.study_name == summary["study"] and ma.ran_here == 0 and ma.n_complete == 8
    assert ma.best_params.to_dict() == summary["best"]["params"]
    assert ma.best_trial == summary["best"]["trial"]
    # same held-out images, same per-image scores, same bootstrap: the same interval
    assert ma.best_interval.as_dict() == summary["holdout"]["best"]
    assert ma.first_interval.as_dict() == summary["holdout"]["first"]
    assert mb.ran_here == 8
    # asking for more trials extends the same study
    res2 = compare_caches([open_cache(a), open_cache(b)], ["A", "B"], trials=10, holdout=0.3,
                          seed=2, jobs=2, n_boot=300)
    assert [m.ran_here for m in res2.models] == [2, 2]
    assert [m.study_name for m in res2.models] == [ma.study_name, mb.study_name]


# --------------------------------------------------------------------------------------------
# Caches that cannot be compared

def _mismatch_dirs(tmp_path, kind: str):
    records, gt = pages(6, seed=5)
    a = write_cache(tmp_path / "A", records, gt, "A")
    recs_b, gt_b = list(records), Dataset(gt)
    if kind == "names":
        r = recs_b.pop()
        del gt_b[r.name]
        recs_b.append(MapRecord("other.jpg", r.prob, r.inverse_matrix, r.width, r.height))
        gt_b["other.jpg"] = gt[r.name]
    elif kind == "sizes":
        r = recs_b[2]
        recs_b[2] = MapRecord(r.name, r.prob, r.inverse_matrix, r.width + 10, r.height)
    elif kind == "gt":
        w = gt[records[1].name]
        polys = [p.copy() for p in w.polygons]
        polys[0][0, 0] += 1.0
        gt_b[records[1].name] = ImageWords(polys)
    b = write_cache(tmp_path / "B", recs_b, gt_b, "B")
    return a, b


@pytest.mark.parametrize("kind, expected", [
    ("names", "A and B do not hold the same images: 1 only in A (e.g. 'img_05.jpg'), "
              "1 only in B (e.g. 'other.jpg')"),
    ("sizes", "A and B do not hold the same images: 'img_02.jpg' is 144x192 in A and "
              "154x192 in B"),
    ("gt", "A and B have different ground truth: 'img_01.jpg': word 1's polygon differs"),
])
def test_mismatched_caches_are_refused_with_one_line(tmp_path, capsys, kind, expected):
    a, b = _mismatch_dirs(tmp_path, kind)
    with pytest.raises(CompareError) as exc:
        compare_caches([open_cache(a), open_cache(b)], ["A", "B"], trials=2)
    assert str(exc.value).startswith(expected)
    # nothing was tuned: the check comes first
    assert not list(a.glob("*.journal")) and not list(b.glob("*.journal"))
    rc = main(["compare", "--cache", str(a), "--cache", str(b), "--names", "A,B",
               "--trials", "2", "--no-progress", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err == [f"unclip-tuner compare: error: {exc.value}"]
    assert not (tmp_path / "out").exists()


def test_gt_word_count_and_dont_care_mismatch_are_named():
    records, gt = pages(3, seed=6)
    name = records[0].name
    gt_b = Dataset(gt)
    gt_b[name] = ImageWords(gt[name].polygons[:-1])
    stores = [InMemoryMapStore(records, gt), InMemoryMapStore(records, gt_b)]
    from unclip_tuner.search.compare import check_same_images

    n = len(gt[name].polygons)
    with pytest.raises(CompareError, match=f"'{name}': {n} vs {n - 1} words"):
        check_same_images(stores, ["A", "B"])
    flags = np.zeros(n, bool)
    flags[1] = True
    gt_b[name] = ImageWords(gt[name].polygons, dont_care=flags)
    with pytest.raises(CompareError, match="don't-care flags differ"):
        check_same_images(stores, ["A", "B"])
    gt_b[name] = gt[name]
    check_same_images(stores, ["A", "B"])  # the same: no error


@pytest.mark.parametrize("extra, message", [
    (["--holdout", "0"], "--holdout must be in (0, 1)"),
    (["--names", "a,b,c"], "--names gives 3 name(s) for 2 cache(s)"),
    (["--names", "a,a"], "--names: 'a' names two models"),
    (["--trials", "0"], "--trials must be >= 1"),
])
def test_bad_options_are_one_line(pair, capsys, extra, message):
    a, b = pair
    rc = main(["compare", "--cache", str(a), "--cache", str(b), "--no-progress", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err


def test_one_cache_or_the_same_cache_twice_is_refused(pair, capsys):
    a, _ = pair
    assert main(["compare", "--cache", str(a)]) == 2
    assert "at least two caches" in capsys.readouterr().err
    assert main(["compare", "--cache", str(a), "--cache", str(a), "--names", "x,y"]) == 2
    assert "is given twice" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# The command's outputs

def test_cli_writes_table_report_and_csv(pair, tmp_path, capsys, monkeypatch):
    a, b = pair
    c = tmp_path / "C"
    shutil.copytree(a, c)
    monkeypatch.chdir(tmp_path)
    rc = main(["compare", "--cache", str(a), "--cache", str(b), "--cache", str(c),
               "--names", "clean,blurred,copy", "--trials", "8", "--holdout", "0.3",
               "--jobs", "2", "--bootstrap", "300", "--no-progress"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    outs = list(tmp_path.glob("compare-*"))
    assert len(outs) == 1 and outs[0].is_dir()
    out = outs[0]
    assert f"to {out.name}" in cap.err.splitlines()[-1]
    # terminal: the model table and the pair table
    for label in ("clean", "blurred", "copy"):
        assert any(line.startswith(label) for line in cap.out.splitlines())
    for pair_name in ("clean - blurred", "clean - copy", "blurred - copy"):
        assert pair_name in cap.out

    data = json.loads((out / "compare.json").read_text())
    held = data["holdout_images"]
    assert len(held) == 7 and [m["label"] for m in data["models"]] == ["clean", "blurred", "copy"]
    assert [(p["a"], p["b"]) for p in data["pairs"]] == [
        ("clean", "blurred"), ("clean", "copy"), ("blurred", "copy")]
    same = data["pairs"][1]
    assert same["ties"] == 7 and same["a_minus_b"]["low"] == same["a_minus_b"]["high"] == 0.0

    with open(out / "per_image.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    assert header[0] == "image"
    assert header[1:5] == ["clean_H", "clean_R", "clean_P", "clean_H_current"]
    assert len(header) == 1 + 3 * 4
    assert [r[0] for r in rows[1:]] == held
    for k, m in enumerate(data["models"]):
        col = 1 + 4 * k
        hs = [float(r[col]) for r in rows[1:]]
        est = m["holdout"]["best"]["mean_image_hmean"]["estimate"]
        assert np.mean(hs) == pytest.approx(est, abs=1e-12)

    md = (out / "compare.md").read_text()
    assert md.startswith("# compare: clean vs blurred vs copy")
    for section in ("## Held-out scores", "## Pairwise differences", "## Best parameters",
                    "## The same pairs at each model's current parameters"):
        assert section in md
    assert "identical on every held-out image" in md
    assert "per_image.csv" in md
