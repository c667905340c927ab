"""The pinned rasteriser and box scores against OpenCV 4.8.1's own output.

``tests/data/postprocess/raster_481.npz`` and ``scores_481.npz`` were produced by
``cv2.fillPoly`` / ``cv2.mean`` of opencv-python 4.8.1.78 and by the baseline's
``box_score_fast`` (see the README there). Masks must match pixel for pixel and scores
bit for bit (tolerance 0).
"""

from pathlib import Path

import cv2
import numpy as np
import pytest

from unclip_tuner.postprocess.raster import (
    box_score_fast,
    box_score_fast_reference,
    box_score_slow,
    box_score_slow_reference,
    fill_poly_mask,
    fill_poly_mask_fast,
    masked_mean,
)

DATA = Path(__file__).resolve().parent / "data" / "postprocess"


def _maps():
    d = np.load(DATA / "synthetic_maps.npz")
    return [q.astype(np.float32) / np.float32(255) for q in list(d["small"]) + list(d["large"])]


def _nb_mask(pts, h, w):
    pts = np.asarray(pts, dtype=np.int64)
    return fill_poly_mask_fast(np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1]), h, w)


def test_masks_identical_to_opencv_481():
    d = dict(np.load(DATA / "raster_481.npz"))
    npts, sizes, points = d["npts"], d["sizes"], d["points"]
    bits = np.unpackbits(d["masks"])
    starts = np.concatenate([[0], np.cumsum(npts)])
    off = 0
    n_cases = len(npts)
    assert n_cases >= 3000
    for i in range(n_cases):
        pts = points[starts[i] : starts[i + 1]]
        h, w = (int(v) for v in sizes[i])
        expected = bits[off : off + h * w].reshape(h, w)
        off += h * w
        assert np.array_equal(fill_poly_mask(pts, h, w), expected), f"case {i}: {pts.tolist()} in {h}x{w}"
        assert np.array_equal(_nb_mask(pts, h, w), expected), f"case {i} (numba)"


def test_python_and_numba_rasterisers_agree_on_random_polygons():
    rng = np.random.default_rng(3)
    for _ in range(400):
        k = int(rng.integers(1, 15))
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        pts = rng.integers(-20, 60, size=(k, 2))
        assert np.array_equal(fill_poly_mask(pts, h, w), _nb_mask(pts, h, w)), pts.tolist()


def test_scores_identical_to_baseline_481():
    maps = _maps()
    d = dict(np.load(DATA / "scores_481.npz"))
    points = d["points"]
    starts = np.concatenate([[0], np.cumsum(d["npts"])])
    kinds = d["kinds"]
    assert set(np.unique(kinds)) == {0, 1, 2}
    for i, (kind, mi, expected) in enumerate(zip(kinds, d["map_idx"], d["scores"])):
        prob = maps[mi]
        pts = points[starts[i] : starts[i + 1]]  # float32 (exact for the integer kinds)
        if kind == 2:
            contour = pts.astype(np.int64)
            assert box_score_slow_reference(prob, contour) == expected, f"slow score {i}"
            assert box_score_slow(prob, contour) == expected, f"slow score {i} (numba)"
        else:
            # kind 0: integer approximated contour; kind 1: float32 rectangle corners
            assert box_score_fast_reference(prob, pts) == expected, f"score {i}"
            assert box_score_fast(prob, pts.astype(np.float64)) == expected, f"score {i} (numba)"


def test_masked_mean_matches_installed_cv2_mean():
    # cv2.mean of a masked float32 image: a row-major float64 sum times 1/count. Our
    # implementation equals 4.8.1 exactly (test above); against whatever OpenCV build is
    # installed we allow 1e-12 relative (a build could accumulate in another order).
    rng = np.random.default_rng(11)
    for _ in range(200):
        h, w = int(rng.integers(1, 50)), int(rng.integers(1, 120))
        big = rng.random((h + 4, w + 6)).astype(np.float32)
        crop = big[2 : 2 + h, 3 : 3 + w]
        mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        ref = cv2.mean(crop, mask)[0]
        assert masked_mean(crop, mask) == pytest.approx(ref, rel=1e-12, abs=0)
    assert masked_mean(np.ones((3, 3), np.float32), np.zeros((3, 3), np.uint8)) == 0.0


def test_fill_poly_mask_edge_cases():
    assert fill_poly_mask(np.zeros((0, 2), int), 4, 5).sum() == 0
    single = fill_poly_mask([[2, 1]], 4, 5)
    assert single.sum() == 1 and single[1, 2] == 1
    outside = fill_poly_mask([[-10, -10], [-5, -10], [-5, -5]], 4, 5)
    assert outside.sum() == 0
    covering = fill_poly_mask([[-10, -10], [20, -10], [20, 20], [-10, 20]], 4, 5)
    assert covering.all()
    with pytest.raises(ValueError, match="shape"):
        fill_poly_mask([1, 2, 3], 4, 5)
    with pytest.raises(ValueError, match="mask size"):
        fill_poly_mask([[0, 0], [1, 1], [0, 1]], 0, 5)


def test_fast_score_handles_rectangles_beyond_the_map():
    prob = np.random.default_rng(2).random((20, 30)).astype(np.float32)
    corners = np.array([[-7.5, -3.2], [40.1, -3.0], [40.0, 25.7], [-7.4, 25.5]], dtype=np.float32)
    ref = box_score_fast_reference(prob, corners)
    assert box_score_fast(prob, corners.astype(np.float64)) == ref
    assert ref == masked_mean(prob, np.ones_like(prob, dtype=np.uint8))
