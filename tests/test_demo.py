"""``unclip-tuner demo``: the receipt renderer (determinism, ground-truth sanity), the one-line
message when the detector is missing, and a small end-to-end run with the real PP-OCRv4
detector (skipped when onnxruntime or the model is not installed; CI installs both)."""

from __future__ import annotations

import importlib.util
import json

import cv2
import numpy as np
import pytest

from unclip_tuner.cli import main
from unclip_tuner.demo import (DEMO_RATIOS, DemoUnavailable, check_detector, receipt_name,
                               render_receipt, write_demo_dataset)
from unclip_tuner.io import read_dataset


def _convex_quad_area(q: np.ndarray) -> float:
    """Signed shoelace area; positive for clockwise order in image coordinates (y down)."""
    x, y = q[:, 0], q[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


# --------------------------------------------------------------------------------------------
# Renderer
# --------------------------------------------------------------------------------------------

def test_render_is_deterministic():
    a = render_receipt(7, 2)
    b = render_receipt(7, 2)
    assert a.image.dtype == np.uint8 and a.image.ndim == 3 and a.image.shape[2] == 3
    assert np.array_equal(a.image, b.image)
    assert a.texts == b.texts
    assert len(a.polygons) == len(b.polygons)
    for p, q in zip(a.polygons, b.polygons):
        assert np.array_equal(p, q)
    # another index or another seed is another receipt
    c = render_receipt(7, 3)
    d = render_receipt(8, 2)
    assert c.image.shape != a.image.shape or not np.array_equal(c.image, a.image)
    assert d.image.shape != a.image.shape or not np.array_equal(d.image, a.image)


@pytest.mark.parametrize("index", range(6))
def test_ground_truth_quads_are_inside_and_one_per_line(index):
    rec = render_receipt(11, index)
    h, w = rec.image.shape[:2]
    assert len(rec.polygons) == len(rec.texts) >= 25
    assert all(t.strip() for t in rec.texts)
    assert "TOTAL" in rec.texts and "SUBTOTAL" in rec.texts
    for q in rec.polygons:
        assert q.shape == (4, 2) and np.isfinite(q).all()
        assert q[:, 0].min() >= 0 and q[:, 0].max() <= w - 1
        assert q[:, 1].min() >= 0 and q[:, 1].max() <= h - 1
        # top-left, top-right, bottom-right, bottom-left: clockwise (positive area with y
        # down), the top edge at most a few degrees off horizontal
        assert _convex_quad_area(q) > 20
        top = q[1] - q[0]
        assert abs(np.degrees(np.arctan2(top[1], top[0]))) < 8
    # one quad per line: two lines never share much area
    lo = np.array([q.min(axis=0) for q in rec.polygons])
    hi = np.array([q.max(axis=0) for q in rec.polygons])
    for i in range(len(rec.polygons)):
        for j in range(i + 1, len(rec.polygons)):
            if (np.minimum(hi[i], hi[j]) <= np.maximum(lo[i], lo[j])).any():
                continue  # bounding boxes apart
            x0, y0 = np.floor(np.minimum(lo[i], lo[j])).astype(int)
            x1, y1 = np.ceil(np.maximum(hi[i], hi[j])).astype(int) + 1
            mi = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
            mj = np.zeros_like(mi)
            cv2.fillPoly(mi, [np.int32(np.round(rec.polygons[i] - (x0, y0)))], 1)
            cv2.fillPoly(mj, [np.int32(np.round(rec.polygons[j] - (x0, y0)))], 1)
            inter = int(np.logical_and(mi, mj).sum())
            assert inter <= 0.1 * min(mi.sum(), mj.sum()), (rec.texts[i], rec.texts[j])


def test_every_quad_holds_ink():
    """Inside each quad the darkest pixels are clearly darker than the paper around it."""
    rec = render_receipt(3, 0)
    gray = cv2.blur(cv2.cvtColor(rec.image, cv2.COLOR_RGB2GRAY).astype(np.float32), (3, 3))
    every = np.zeros(gray.shape, dtype=np.uint8)
    for q in rec.polygons:
        cv2.fillPoly(every, [np.int32(np.round(q))], 1)
    for q, text in zip(rec.polygons, rec.texts):
        m = np.zeros(gray.shape, dtype=np.uint8)
        cv2.fillPoly(m, [np.int32(np.round(q))], 1)
        ring = cv2.dilate(m, np.ones((9, 9), np.uint8)) - cv2.dilate(m, np.ones((3, 3), np.uint8))
        ring[every > 0] = 0
        contrast = np.median(gray[ring > 0]) - np.percentile(gray[m > 0], 5)
        assert contrast > 12, text


def test_written_dataset_matches_the_render(tmp_path):
    images, gt_path = write_demo_dataset(tmp_path, 2, seed=5)
    gt = read_dataset(gt_path)
    assert list(gt) == [receipt_name(0), receipt_name(1)]
    for i, name in enumerate(gt):
        rec = render_receipt(5, i)
        words = gt[name]
        assert words.texts == rec.texts
        assert len(words.polygons) == len(rec.polygons)
        for p, q in zip(words.polygons, rec.polygons):
            np.testing.assert_allclose(p, q, rtol=0, atol=1e-9)
        img = cv2.imread(str(images / name))
        assert img is not None and img.shape == rec.image.shape


def test_runner_clips_rounding_overshoot_only():
    """A sigmoid rounded to one ulp above 1.0 is clipped; a real overshoot is left alone."""
    from unclip_tuner.demo import _DemoRunner

    class Fake:
        fixed_shape = True

        def __init__(self, maps):
            self.maps = maps

        def start(self, batch):
            return None

        def finish(self, handle):
            return self.maps.copy()

    ulp = np.nextafter(np.float32(1.0), np.float32(2.0))
    maps = np.array([[[0.0, 0.5, ulp]]], dtype=np.float32)
    out = _DemoRunner(Fake(maps)).finish(None)
    assert out.dtype == np.float32 and out.max() == np.float32(1.0)
    assert np.array_equal(out[..., :2], maps[..., :2])
    logits = np.array([[[0.0, 3.0]]], dtype=np.float32)
    assert np.array_equal(_DemoRunner(Fake(logits)).finish(None), logits)


# --------------------------------------------------------------------------------------------
# Missing detector: one clear line
# --------------------------------------------------------------------------------------------

def test_missing_onnxruntime_and_model_is_one_line(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec

    def fake(name, *args, **kwargs):
        if name in ("onnxruntime", "rapidocr_onnxruntime"):
            return None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    with pytest.raises(DemoUnavailable):
        check_detector()
    out_dir = tmp_path / "demo"
    assert main(["demo", "--images", "2", "--trials", "2", "--out", str(out_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "pip install onnxruntime" in err[0]
    assert "pip install --no-deps rapidocr-onnxruntime==1.4.4" in err[0]
    assert not out_dir.exists()  # nothing was done


def test_missing_model_only(monkeypatch, capsys):
    real = importlib.util.find_spec

    def fake(name, *args, **kwargs):
        if name == "rapidocr_onnxruntime":
            return None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    assert main(["demo", "--images", "2"]) == 2
    err = capsys.readouterr().err
    assert "rapidocr-onnxruntime==1.4.4" in err and "pip install onnxruntime" not in err


def test_bad_arguments(capsys):
    assert main(["demo", "--images", "0"]) == 2
    assert main(["demo", "--trials", "0"]) == 2
    assert main(["demo", "--holdout", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "--images must be >= 1" in err and "--trials must be >= 1" in err
    assert "--holdout must be in [0, 1)" in err


# --------------------------------------------------------------------------------------------
# End to end with the real detector
# --------------------------------------------------------------------------------------------

def _ratio_rows(text: str) -> dict:
    """``{ratio: row text}`` from the printed unclip ratio table."""
    block = text.split("Polygon unclip ratio at the best", 1)[1].splitlines()[2:]
    rows = {}
    for line in block:
        if not line.strip():
            break
        rows[float(line.split()[0])] = line
    return rows


def _need_detector():
    try:
        check_detector()
    except DemoUnavailable as exc:
        pytest.skip(str(exc))


def test_demo_end_to_end(tmp_path, capsys):
    _need_detector()
    out_dir = tmp_path / "demo"
    argv = ["demo", "--images", "3", "--trials", "6", "--out", str(out_dir), "--jobs", "1",
            "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    summary = json.loads((out_dir / "report" / "summary.json").read_text())
    assert summary["n_complete"] == 6
    best, first = summary["best"], summary["first"]
    # the first trial is the seed's configuration
    assert first["params"]["thresh"] == 0.3 and first["params"]["box_thresh"] == 0.4
    assert first["params"]["polygon_unclip_ratio"] == 2.0 and first["params"]["use_polygon"]
    assert best["hmean"] >= first["hmean"]
    # PP-OCRv4 finds the rendered lines
    assert best["hmean"] > 0.8 and first["hmean"] > 0.8
    # the printed result: parameters, paste line, the three ratios
    assert "first trial (seed)" in text and "Paste (karmakaryx)" in text
    assert "models.head.postprocess.polygon_unclip_ratio=" in text
    rows = _ratio_rows(text)
    assert set(DEMO_RATIOS) <= set(rows)
    assert "seed" in rows[2.0]
    assert "best" in rows[best["params"]["polygon_unclip_ratio"]]
    # the cache and the images stay in --out
    assert (out_dir / "gt.json").is_file() and (out_dir / "cache" / "manifest.json").is_file()
    assert len(list((out_dir / "images").glob("*.jpg"))) == 3

    # running again resumes: nothing is redone, the study already holds its trials
    assert main(argv) == 0
    again = capsys.readouterr()
    assert "already in" in again.err and "0 map(s) computed, 3 already cached" in again.err
    summary2 = json.loads((out_dir / "report" / "summary.json").read_text())
    assert summary2["n_complete"] == 6 and summary2["best"] == summary["best"]

    # another data set is refused in the same folder
    assert main(["demo", "--images", "4", "--trials", "2", "--out", str(out_dir)]) == 2
    assert "other settings" in capsys.readouterr().err


def test_demo_ratio_rows_match_the_engine(tmp_path, capsys):
    """The ratio table is the fast engine's score of the best parameters at each ratio, and
    the reference engine agrees with it."""
    _need_detector()
    from unclip_tuner.cache.store import MapCache
    from unclip_tuner.demo import ratio_comparison
    from unclip_tuner.postprocess.engine import ReferenceEngine
    from unclip_tuner.postprocess.params import PostProcessParams

    out_dir = tmp_path / "demo"
    assert main(["demo", "--images", "2", "--trials", "3", "--out", str(out_dir), "--jobs", "1",
                 "--no-progress", "--seed", "4"]) == 0
    capsys.readouterr()
    summary = json.loads((out_dir / "report" / "summary.json").read_text())
    best = PostProcessParams.from_dict(summary["best"]["params"])
    cache = MapCache.open(out_dir / "cache")
    rows = ratio_comparison(cache, best, DEMO_RATIOS)
    assert [r for r, _ in rows] == list(DEMO_RATIOS)
    with ReferenceEngine(cache) as ref:
        for ratio, score in rows:
            expect = ref.evaluate(best.replace(polygon_unclip_ratio=ratio))
            assert score.hmean == expect.hmean
            assert score.recall == expect.recall and score.precision == expect.precision
