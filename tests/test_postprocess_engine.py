"""The fast engine against the reference engine: same detections, same scores.

Exactness contract (the fast path's): every detection region-exact against the reference
(the same vertex cycle up to rotation and direction; in practice identical), the same
detections in the same order, and dataset R/P/H equal within 1e-6 for every parameter set.
"""

from __future__ import annotations

import numpy as np
import pytest

from unclip_tuner.cache import InMemoryMapStore, MapRecord
from unclip_tuner.io.types import Dataset, ImageWords, pack_polygons
from unclip_tuner.postprocess.engine import FastEngine, ReferenceEngine
from unclip_tuner.postprocess.fast import approx_poly_dp, map_points, short_side
from unclip_tuner.postprocess.params import PostProcessParams
from unclip_tuner.postprocess.reference import (approx_poly_dp as approx_reference,
                                                decode_reference, find_contours,
                                                get_mini_boxes, map_to_image)
from unclip_tuner.synthetic import synthetic_page

H_TOL = 1e-6


def same_cycle(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``b`` is ``a``'s vertex cycle, possibly rotated or reversed."""
    a = np.asarray(a, dtype=np.int64).reshape(-1, 2)
    b = np.asarray(b, dtype=np.int64).reshape(-1, 2)
    if a.shape != b.shape:
        return False
    for cand in (b, b[::-1]):
        for k in range(len(cand)):
            if np.array_equal(np.roll(cand, k, axis=0), a):
                return True
    return False


def _store(n_pages: int, seed: int, size: int = 512, n_words: int = 40) -> InMemoryMapStore:
    rng = np.random.default_rng(seed)
    recs, gt = [], Dataset()
    for i in range(n_pages):
        prob, polys, m = synthetic_page(rng, size=size, n_words=n_words)
        name = f"page{i:02d}.jpg"
        recs.append(MapRecord(name, prob, m, 700, 900))
        img = [np.round((np.c_[p, np.ones(len(p))] @ m.T)[:, :2]) for p in polys]
        gt[name] = ImageWords(img)
    return InMemoryMapStore(recs, gt)


PARAM_SETS = [
    PostProcessParams(thresh=0.3, box_thresh=0.5, use_polygon=True),
    PostProcessParams(thresh=0.3, box_thresh=0.5, use_polygon=True, polygon_unclip_ratio=1.55),
    PostProcessParams(thresh=0.3, box_thresh=0.65, use_polygon=True, polygon_unclip_ratio=2.4),
    PostProcessParams(thresh=0.22, box_thresh=0.4, use_polygon=True, max_candidates=20),
    PostProcessParams(thresh=0.35, box_thresh=0.3, use_polygon=True, use_dilation=True),
    PostProcessParams(thresh=0.3, box_thresh=0.5, use_polygon=True, score_mode="slow"),
    PostProcessParams(thresh=0.3, box_thresh=0.5, use_polygon=False),
    PostProcessParams(thresh=0.25, box_thresh=0.6, use_polygon=False, box_unclip_ratio=2.0),
]


@pytest.fixture(scope="module")
def store():
    return _store(6, seed=3)


def _check_decodes(fast: FastEngine, store, params) -> int:
    n = 0
    for name in store.names():
        rec = store.get(name)
        ref = [p for p, _ in decode_reference(rec.prob, rec.inverse_matrix, params)]
        got = fast.decode(params, name).polygons
        assert len(ref) == len(got), f"{name}: {len(ref)} reference detections, {len(got)} fast"
        for k, (a, b) in enumerate(zip(ref, got)):
            assert same_cycle(a, b), f"{name} detection {k} differs under {params}"
        n += len(ref)
    return n


@pytest.mark.parametrize("params", PARAM_SETS, ids=lambda p: f"t{p.thresh}-b{p.box_thresh}-{'poly' if p.use_polygon else 'box'}")
def test_fast_decode_identical_to_reference(store, params):
    fast = FastEngine(store, jobs=2)
    assert _check_decodes(fast, store, params) > 0


def test_fast_scores_identical_to_reference(store):
    fast = FastEngine(store, jobs=2)
    ref = ReferenceEngine(store, jobs=1)
    for params in PARAM_SETS:
        a = ref.evaluate(params)
        b = fast.evaluate(params)
        assert abs(a.hmean - b.hmean) <= H_TOL and abs(a.recall - b.recall) <= H_TOL
        assert abs(a.precision - b.precision) <= H_TOL
        for sa, sb in zip(a.per_image, b.per_image):
            assert abs(sa.hmean - sb.hmean) <= H_TOL
    fast.close()


def test_memoisation_rescores_only_changed_images(store):
    fast = FastEngine(store, jobs=1)
    p = PostProcessParams(thresh=0.3, box_thresh=0.5, use_polygon=True)
    fast.evaluate(p)
    built, scored = fast.stats["candidates_built"], fast.stats["scored"]
    assert built == len(store.names()) and scored == len(store.names())
    # the same parameters again: nothing recomputed
    fast.evaluate(p)
    assert fast.stats["candidates_built"] == built and fast.stats["scored"] == scored
    # a box_thresh that keeps the same set everywhere re-scores nothing
    cand_scores = np.concatenate([st.candidates[next(iter(st.candidates))].scores
                                  for st in fast._state.values()])
    gap = np.sort(cand_scores)
    above = gap[gap >= 0.5]
    if len(above) and above[0] > 0.5 + 1e-9:
        fast.evaluate(p.replace(box_thresh=float((0.5 + above[0]) / 2)))
        assert fast.stats["scored"] == scored
    # a new ratio reuses the candidates
    fast.evaluate(p.replace(polygon_unclip_ratio=1.7))
    assert fast.stats["candidates_built"] == built


def test_subset_and_errors(store):
    fast = FastEngine(store)
    names = store.names()[:2]
    s = fast.evaluate(PARAM_SETS[0], images=names)
    assert s.images == names
    with pytest.raises(ValueError, match="not in the map store"):
        fast.evaluate(PARAM_SETS[0], images=["nope.jpg"])
    bad = InMemoryMapStore([MapRecord("x.jpg", np.full((32, 32), np.nan, np.float32), np.eye(3), 32, 32)],
                           Dataset({"x.jpg": ImageWords()}))
    with pytest.raises(ValueError, match="NaN"):
        FastEngine(bad).evaluate(PARAM_SETS[0])
    with pytest.raises(ValueError, match="NaN"):
        ReferenceEngine(bad).evaluate(PARAM_SETS[0])
    nogt = InMemoryMapStore([MapRecord("x.jpg", np.zeros((32, 32), np.float32), np.eye(3), 32, 32)])
    eng = FastEngine(nogt)
    assert len(eng.decode(PARAM_SETS[0], "x.jpg")) == 0  # an empty map: no detections
    with pytest.raises(ValueError, match="no ground truth"):
        eng.evaluate(PARAM_SETS[0])


def test_approx_poly_dp_kernel_matches_reference():
    rng = np.random.default_rng(7)
    n = 0
    for _ in range(60):
        prob, _, _ = synthetic_page(rng, size=256, n_words=12)
        for c in find_contours(prob > 0.3):
            eps = 0.002 * float(np.sum(np.hypot(*np.diff(np.r_[c, c[:1]], axis=0).T)))
            for e in (eps, 3 * eps, 0.5):
                a = approx_reference(c, e)
                b = approx_poly_dp(c[:, 0].astype(np.int64), c[:, 1].astype(np.int64), e)
                assert np.array_equal(a, b)
                n += 1
    assert n > 500


def test_short_side_matches_min_area_rect():
    rng = np.random.default_rng(11)
    for _ in range(2000):
        k = rng.integers(3, 30)
        pts = rng.integers(0, 40, size=(k, 2)).astype(np.int64)
        if len(np.unique(pts, axis=0)) < 3:
            continue
        _, sside = get_mini_boxes(pts)
        assert short_side(pts) == np.float32(sside)


def test_map_points_matches_reference_mapping():
    rng = np.random.default_rng(5)
    for _ in range(200):
        w, h = rng.integers(100, 4000, size=2)
        s = 1024 / max(w, h)
        nw, nh = int(w * s), int(h * s)
        m = np.diag([w / nw, h / nh, 1.0]) @ np.array([[1, 0, -((1024 - nw) // 2)], [0, 1, -((1024 - nh) // 2)], [0, 0, 1.0]])
        pts = rng.integers(-50, 1100, size=(30, 2)).astype(np.int64)
        assert np.array_equal(map_points(pts, m), map_to_image(pts, m))


def test_real_maps_fast_equals_reference(real_maps):
    """PP-OCRv4 maps of real receipts: identical detections and scores, fallbacks counted."""
    from unclip_tuner.io import read_ufo

    files = sorted(real_maps.glob("*.npz"))[::10][:20]
    gt_all = read_ufo(real_maps / "gt.json") if (real_maps / "gt.json").exists() else None
    recs, gt = [], Dataset()
    for f in files:
        d = np.load(f)
        name = str(d["filename"]) if "filename" in d else f.stem
        recs.append(MapRecord(name, d["prob"], d["inverse_matrix"], int(d["width"]), int(d["height"])))
        gt[name] = gt_all[name] if gt_all is not None and name in gt_all else ImageWords()
    st = InMemoryMapStore(recs, gt)
    fast = FastEngine(st, jobs=2)
    ref = ReferenceEngine(st)
    n = 0
    for params in (PostProcessParams(thresh=0.3, box_thresh=0.4, use_polygon=True),
                   PostProcessParams(thresh=0.22, box_thresh=0.55, use_polygon=True, polygon_unclip_ratio=1.8),
                   PostProcessParams(thresh=0.3, box_thresh=0.4, use_polygon=False)):
        n += _check_decodes(fast, st, params)
        assert abs(ref.evaluate(params).hmean - fast.evaluate(params).hmean) <= H_TOL
    assert n > 500
    print(f"real maps: {n} detections, {fast.stats['fallback']} fallbacks of {fast.stats['unclipped']} unclips")


@pytest.mark.parametrize("use_polygon", [True, False], ids=["poly", "box"])
def test_unclip_memo_fills_lazily_as_box_thresh_moves(store, use_polygon):
    """Only kept candidates are unclipped; walking box_thresh down, up and down again on
    one engine (so later steps mix memoised and newly unclipped candidates) decodes and
    scores exactly as the reference at every step."""
    fast = FastEngine(store, jobs=2)
    ref = ReferenceEngine(store)
    base = PostProcessParams(thresh=0.3, use_polygon=use_polygon)
    n_candidates = 0
    for k, bt in enumerate((0.75, 0.6, 0.7, 0.45, 0.55, 0.3)):
        p = base.replace(box_thresh=bt)
        _check_decodes(fast, store, p)
        a, b = ref.evaluate(p), fast.evaluate(p)
        assert abs(a.hmean - b.hmean) <= H_TOL
        if k == 0:
            n_candidates = sum(len(next(iter(st.candidates.values())).scores)
                               for st in fast._state.values())
            kept = sum(len(next(iter(st.candidates.values())).kept(bt, base.max_candidates))
                       for st in fast._state.values())
            # the first, strict box_thresh unclips its kept candidates and nothing more
            assert fast.stats["unclipped"] == kept < n_candidates
    # each candidate was unclipped at most once over the whole walk
    assert fast.stats["unclipped"] <= n_candidates
    # the candidate memo holds the points in the compact dtype that stores them exactly
    compact = np.int32 if use_polygon else np.float32
    assert all(c.points.dtype == compact for st in fast._state.values()
               for c in st.candidates.values())
    fast.close()


def test_other_metrics_score_through_the_fast_engine_as_the_reference(store):
    """Metrics without CLEval's pair tables take the engine's plain scoring branch; it
    gives the reference's figures along a box_thresh walk and a ratio change (IoU: this
    store's GT words are polygons, which cleval-upstream refuses)."""
    metric = "iou"
    fast = FastEngine(store, metric=metric, jobs=2)
    ref = ReferenceEngine(store, metric=metric)
    base = PostProcessParams(thresh=0.3, use_polygon=True)
    for p in (base.replace(box_thresh=0.7), base.replace(box_thresh=0.5),
              base.replace(box_thresh=0.6), base.replace(box_thresh=0.6, polygon_unclip_ratio=1.6)):
        a, b = ref.evaluate(p), fast.evaluate(p)
        assert (a.hmean, a.recall, a.precision) == (b.hmean, b.recall, b.precision)
    assert fast._pair_scorer is None
    fast.close()


def test_thread_errors_reach_the_caller(store):
    fast = FastEngine(store, jobs=2)
    seen = []

    def boom(name):
        seen.append(name)
        raise RuntimeError(f"failed on {name}")

    with pytest.raises(RuntimeError, match="failed on"):
        fast._map(boom, store.names())
    # the threads stop after the first error instead of running every item
    assert 1 <= len(seen) <= 2
    assert fast._map(lambda n: n.upper(), store.names()) == [n.upper() for n in store.names()]
    fast.close()


def test_interrupt_while_waiting_stops_the_threads(store, monkeypatch):
    """An interrupt (Ctrl-C) raised in the caller while it waits in _map stops the threads
    at their next item instead of letting them work through the rest of the list."""
    import time
    from concurrent.futures import Future

    fast = FastEngine(store, jobs=2)
    done = []

    def slow(item):
        time.sleep(0.05)
        done.append(item)

    def interrupted_wait(self, timeout=None):
        time.sleep(0.3)
        raise KeyboardInterrupt

    items = [str(i) for i in range(200)]  # 5 s of work on two threads
    monkeypatch.setattr(Future, "result", interrupted_wait)
    with pytest.raises(KeyboardInterrupt):
        fast._map(slow, items)
    monkeypatch.undo()
    fast.close()  # waits for the threads' current items
    assert len(done) < 50


def test_arc_lengths_kernel_matches_opencv():
    """Bit-equal to cv2.arcLength(closed=True) (the same code in OpenCV 4.8.1 and 5.0) on
    real contours of synthetic maps and on random integer rings, including long jumps."""
    import cv2

    from unclip_tuner.postprocess.fast import arc_lengths
    from unclip_tuner.postprocess.reference import find_contours_packed

    rng = np.random.default_rng(17)
    rings = []
    for _ in range(10):
        prob, _, _ = synthetic_page(rng, size=256, n_words=12)
        cxy, coffs = find_contours_packed((prob > np.float32(0.3)).view(np.uint8))
        rings += [cxy[coffs[i]:coffs[i + 1]] for i in range(len(coffs) - 1)]
    for _ in range(500):
        rings.append(rng.integers(-3000, 3000, size=(int(rng.integers(1, 40)), 2)))
    cxy, coffs = pack_polygons(rings, dtype=np.int64)
    got = arc_lengths(cxy, coffs)
    want = np.array([cv2.arcLength(r.astype(np.int32).reshape(-1, 1, 2), True) for r in rings])
    assert np.array_equal(got, want)  # tolerance: none, bit-equal float64


def test_threshold_kernel_matches_float32_comparison():
    from unclip_tuner.postprocess.fast import threshold_u8
    from unclip_tuner.postprocess.reference import binarize

    rng = np.random.default_rng(3)
    prob = rng.random((97, 131), dtype=np.float32)
    prob[0, :5] = [0.3, np.nextafter(np.float32(0.3), 1), np.float32(0.30000001), 0.0, 1.0]
    for t in (0.3, 0.1, 0.55, 0.30000001):
        want = binarize(prob, t).astype(np.uint8) * 255
        assert np.array_equal(threshold_u8(prob, np.float32(t)), want)


def test_packed_contours_match_contour_list():
    from unclip_tuner.postprocess.reference import find_contours_packed

    rng = np.random.default_rng(9)
    prob, _, _ = synthetic_page(rng, size=256, n_words=20)
    bitmap = prob > np.float32(0.3)
    listed = find_contours(bitmap)
    cxy, coffs = find_contours_packed(bitmap.view(np.uint8) * np.uint8(255))
    assert len(listed) == len(coffs) - 1 > 0
    for i, c in enumerate(listed):
        assert np.array_equal(cxy[coffs[i]:coffs[i + 1]], c)


def _window_maps():
    """Maps whose pixels above the window floor cover part of the map: a synthetic page
    pasted at an offset on an empty canvas, the same page pushed against each border, a
    map with one pixel just above the floor, one exactly at it, and an empty one."""
    from unclip_tuner.postprocess.fast import WINDOW_FLOOR

    rng = np.random.default_rng(41)
    page, _, _ = synthetic_page(rng, size=160, n_words=14)
    maps = []
    for y, x in ((40, 70), (0, 0), (0, 140), (140, 0), (140, 140)):
        canvas = np.zeros((300, 300), np.float32)
        canvas[y:y + 160, x:x + 160] = page
        maps.append(canvas)
    one = np.full((64, 80), WINDOW_FLOOR, np.float32)
    one[17, 33] = np.nextafter(WINDOW_FLOOR, np.float32(1))
    maps += [one, np.full((64, 80), WINDOW_FLOOR, np.float32), np.zeros((50, 50), np.float32)]
    return maps


def test_text_window_is_the_box_of_pixels_above_the_floor():
    from unclip_tuner.postprocess.fast import WINDOW_FLOOR, text_window, threshold_box, threshold_u8

    for prob in _window_maps():
        got, finite = text_window(prob, WINDOW_FLOOR)
        assert finite
        rows = np.flatnonzero((prob > WINDOW_FLOOR).any(axis=1))
        cols = np.flatnonzero((prob > WINDOW_FLOOR).any(axis=0))
        want = [0, 0, 0, 0] if len(rows) == 0 else [rows[0], rows[-1] + 1, cols[0], cols[-1] + 1]
        assert got.tolist() == want
        y0, y1, x0, x1 = 3, prob.shape[0] - 5, 7, prob.shape[1] - 2
        t = np.float32(0.3)
        assert np.array_equal(threshold_box(prob, t, y0, y1, x0, x1), threshold_u8(prob, t)[y0:y1, x0:x1])
    # the same pass finds NaN and infinities anywhere
    for bad in (np.nan, np.inf, -np.inf):
        prob = np.zeros((40, 70), np.float32)
        prob[31, 66] = bad
        assert text_window(prob, WINDOW_FLOOR)[1] is False


@pytest.mark.parametrize("use_polygon", [True, False], ids=["poly", "box"])
def test_candidates_inside_the_text_window_equal_the_whole_map(use_polygon):
    """Thresholding and tracing only the window gives the same candidates (same contours in
    the same order, points, scores) as the whole map, at the floor, above it, in slow score
    mode; below the floor and with dilation the whole map is used."""
    from unclip_tuner.postprocess.fast import WINDOW_FLOOR, build_candidates, text_window

    floor = float(WINDOW_FLOOR)
    settings = [dict(thresh=floor), dict(thresh=0.3), dict(thresh=0.12, score_mode="slow"),
                dict(thresh=0.04), dict(thresh=0.3, use_dilation=True)]
    n_found = 0
    for prob in _window_maps():
        window = text_window(prob, WINDOW_FLOOR)[0]
        for kw in settings:
            p = PostProcessParams(use_polygon=use_polygon, **kw)
            a, b = build_candidates(prob, p), build_candidates(prob, p, window)
            assert a.n_contours == b.n_contours
            for field in ("points", "offsets", "contour_index", "scores"):
                x, y = getattr(a, field), getattr(b, field)
                assert x.dtype == y.dtype and np.array_equal(x, y)  # tolerance: none
            n_found += len(a.scores)
    assert n_found > 100
