"""``inspect``: per-word outcomes agree with the metric; CSV and overlays are written."""

import argparse
import csv

import numpy as np
import pytest

from unclip_tuner.cache.base import MapRecord
from unclip_tuner.cache.store import MapCache
from unclip_tuner.io.types import Dataset, ImageWords
from unclip_tuner.metrics.cleval import CLEvalScorer
from unclip_tuner.metrics.cleval_reference import cleval_image, image_score
from unclip_tuner.postprocess.engine import FastEngine
from unclip_tuner.postprocess.params import PostProcessParams
from unclip_tuner.postprocess.reference import decode_reference
from unclip_tuner.report.overlay import DET_STATES, GT_STATES, draw_overlay, word_outcomes
from unclip_tuner.synthetic import synthetic_page

# the metric's counts and their names in WordOutcomes.counts
_SAME = {"tp": "tp", "det_chars": "det_chars", "num_char_fp": "fp_chars",
         "num_splitted": "num_splitted", "num_merged": "num_merged",
         "n_det_dont_care": "n_det_dont_care"}


def _page(rng, size=192, words=18, p_dc=0.15):
    w, h = int(rng.integers(400, 700)), int(rng.integers(600, 1000))
    prob, polys, m = synthetic_page(rng, size=size, n_words=words, image_size=(w, h),
                                    p_touch=0.3, text_scale=0.6)
    gt_polys = [(np.c_[p, np.ones(len(p))] @ m.T)[:, :2] for p in polys]
    dc = rng.random(len(gt_polys)) < p_dc
    return prob, m, w, h, ImageWords(gt_polys, dc)


def _box(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def test_counts_match_the_metric_on_random_pages():
    rng = np.random.default_rng(11)
    totals = dict.fromkeys(("det_kept", "num_splitted", "num_merged", "n_det_dont_care",
                            "gt_missed", "det_false_positive"), 0)
    for k in range(8):
        prob, m, _, _, gt = _page(rng)
        params = PostProcessParams(thresh=float(rng.uniform(0.15, 0.45)),
                                   box_thresh=float(rng.uniform(0.3, 0.7)),
                                   use_polygon=bool(k % 2),
                                   polygon_unclip_ratio=float(rng.uniform(1.0, 3.0)),
                                   box_unclip_ratio=float(rng.uniform(1.0, 3.0)))
        det = ImageWords([p for p, _ in decode_reference(prob, m, params)])
        limit = 500 if k < 6 else 4                      # also the metric's detection cut
        out = word_outcomes(gt, det, max_polygons=limit)
        ref = cleval_image(gt, det, max_polygons=limit)
        fast = CLEvalScorer(Dataset({"x": gt}), max_polygons=limit).score("x", det)
        for metric_key, key in _SAME.items():
            assert out.counts[key] == ref.extra[metric_key], (k, key)
            assert out.counts[key] == fast.extra[metric_key], (k, key)
        c = out.counts
        assert c["gt_matched"] + c["gt_missed"] == c["gt_cared"]
        assert c["gt_cared"] == int((~gt.dont_care_flags).sum())
        assert c["det_matched"] + c["det_false_positive"] + c["n_det_dont_care"] == c["det_kept"]
        assert c["det_kept"] == min(len(det), limit)
        assert len(out.gt) == len(gt) and len(out.det) == len(det)
        assert set(out.gt) <= set(GT_STATES) and set(out.det) <= set(DET_STATES)
        assert out.gt.count("missed") == c["gt_missed"]
        assert out.det.count("false_positive") == c["det_false_positive"]
        assert out.det.count("merged") == c["num_merged"]
        assert out.det.count("ignored") == len(det) - c["det_kept"]
        # the score rebuilt from the derived counts is the metric's
        rebuilt = image_score(c["tp"], ref.extra["recall_penalty"], ref.extra["precision_penalty"],
                              int(ref.recall_den), c["det_chars"], c["fp_chars"])
        assert (rebuilt.recall, rebuilt.precision, rebuilt.hmean) == (ref.recall, ref.precision, ref.hmean)
        for key in totals:
            totals[key] += c[key]
    # the pages exercise every rule: splits, merges, don't-care, misses, false positives
    assert totals["det_kept"] > 25 and min(totals.values()) > 0, totals


def test_a_page_with_every_outcome():
    gt = ImageWords([_box(10, 10, 60, 30), _box(70, 10, 120, 30), _box(10, 50, 60, 70),
                     _box(10, 90, 110, 110), _box(200, 200, 260, 220)],
                    dont_care=[False, False, False, False, True])
    det = ImageWords([_box(8, 8, 122, 32),          # covers words 0 and 1
                      _box(300, 300, 340, 320),     # nothing there
                      _box(10, 90, 58, 110),        # left part of word 3
                      _box(62, 90, 110, 110),       # right part of word 3
                      _box(205, 202, 255, 218),     # inside the don't-care word
                      np.array([[0, 0], [5, 5], [0, 5]], dtype=np.float64)])  # 3 points
    out = word_outcomes(gt, det)
    assert out.gt == ["merged", "merged", "missed", "split", "dont_care"]
    assert out.det == ["merged", "false_positive", "split", "split", "dont_care", "ignored"]
    ref = cleval_image(gt, det)
    assert ref.extra["num_merged"] == out.counts["num_merged"] == 1
    assert ref.extra["num_splitted"] == out.counts["num_splitted"] == 1
    assert ref.extra["n_det_dont_care"] == out.counts["n_det_dont_care"] == 1
    assert out.counts["gt_missed"] == 1 and out.counts["det_false_positive"] == 1


def test_draw_overlay_on_a_map_and_on_an_image():
    rng = np.random.default_rng(3)
    prob, m, w, h, gt = _page(rng, size=128, words=8)
    params = PostProcessParams(box_thresh=0.4, use_polygon=True)
    det = ImageWords([p for p, _ in decode_reference(prob, m, params)])
    assert len(det) > 0
    out = word_outcomes(gt, det)
    pic = draw_overlay(prob, gt, det, out, np.linalg.inv(m), "title", ["line"])
    assert pic.dtype == np.uint8 and pic.shape[1:] == (128, 3) and pic.shape[0] > 128
    img = np.full((h, w, 3), 255, np.uint8)
    pic2 = draw_overlay(img, gt, det, out)
    assert pic2.shape[1:] == (w, 3)
    body = pic2[-h:]
    # something green (GT) and something red-ish (detections) was drawn
    assert np.any((body[..., 1] > 150) & (body[..., 2] < 120))
    assert np.any((body[..., 2] > 150) & (body[..., 1] < 120))


@pytest.fixture
def cache(tmp_path):
    rng = np.random.default_rng(5)
    gt = Dataset()
    recs = []
    for i in range(4):
        prob, m, w, h, words = _page(rng, size=160, words=12, p_dc=0.1)
        name = f"img_{i}.jpg"
        recs.append(MapRecord(name, prob, m, w, h))
        gt[name] = words
    with MapCache.create(tmp_path / "cache", {"t": 1}, gt=gt, fsync=False,
                         meta={"params": {"thresh": 0.3, "box_thresh": 0.5}}) as wr:
        for r in recs:
            wr.add(r)
    return MapCache.open(tmp_path / "cache")


def _run(argv):
    from unclip_tuner.commands import inspect

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    inspect.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_csv_and_overlays(cache, tmp_path, capsys):
    params = tmp_path / "best.yaml"
    params.write_text("# tuned\nthresh: 0.25\nbox_thresh: 0.45\nuse_polygon: true\n"
                      "polygon_unclip_ratio: 1.8\n", encoding="utf-8")
    out = tmp_path / "out"
    assert _run(["inspect", "--cache", str(cache.path), "--params", str(params), "--set",
                 "box_thresh=0.5", "--worst", "2", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "box_thresh=0.5" in text and "polygon_unclip_ratio=1.8" in text
    with open(out / "per_image.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["image"] for r in rows] == cache.names()
    p = PostProcessParams(thresh=0.25, box_thresh=0.5, use_polygon=True, polygon_unclip_ratio=1.8)
    with FastEngine(cache) as eng:
        scores = eng.evaluate(p).per_image
    for r, s in zip(rows, scores):
        assert float(r["hmean"]) == s.hmean
        assert int(r["gt_matched"]) + int(r["gt_missed"]) == int(r["gt_words"])
        assert int(r["gt_split"]) == s.extra["num_splitted"]
        assert int(r["det_merging"]) == s.extra["num_merged"]
        assert int(r["fp_chars"]) == s.extra["num_char_fp"]
    assert sorted(int(r["rank"]) for r in rows) == [1, 2, 3, 4]
    worst = min(rows, key=lambda r: (float(r["hmean"]), rows.index(r)))
    assert worst["rank"] == "1"
    pngs = sorted(out.glob("worst_*.png"))
    assert len(pngs) == 2 and pngs[0].name == f"worst_001_{worst['image'][:-4]}.png"


def test_cli_draws_on_images_and_uses_the_cache_params(cache, tmp_path):
    import cv2

    images = tmp_path / "images"
    images.mkdir()
    for name in cache.names()[:2]:                  # the others fall back to the map
        rec = cache.get(name)
        cv2.imwrite(str(images / (name[:-4] + ".png")),
                    np.full((rec.height, rec.width, 3), 200, np.uint8))
    out = tmp_path / "out"
    assert _run(["inspect", "--cache", str(cache.path), "--worst", "4", "--images", str(images),
                 "--out", str(out), "--no-progress"]) == 0
    shapes = {}
    for png in out.glob("worst_*.png"):
        name = png.stem.split("_", 2)[2] + ".jpg"
        shapes[name] = cv2.imread(str(png)).shape
    assert len(shapes) == 4
    for name in cache.names():
        rec = cache.get(name)
        width = rec.width if name in cache.names()[:2] else rec.prob.shape[1]
        assert shapes[name][1] == width


def test_cli_errors(cache, tmp_path):
    from unclip_tuner.cli import CLIError

    with pytest.raises(CLIError, match="KEY=VALUE"):
        _run(["inspect", "--cache", str(cache.path), "--set", "thresh", "--out", str(tmp_path)])
    with pytest.raises(CLIError, match="unknown post-processing parameter"):
        _run(["inspect", "--cache", str(cache.path), "--set", "foo=1", "--out", str(tmp_path)])
    with pytest.raises(CLIError, match="not found"):
        _run(["inspect", "--cache", str(cache.path), "--params", str(tmp_path / "no.yaml"),
              "--out", str(tmp_path)])
