"""The Numba unclip (distance + Clipper offset) against shapely and pyclipper.

Every comparison is exact: the distance must be bitwise equal to shapely's, and the
offset polygon must be pyclipper's first path with the same vertices in the same order,
from the same first vertex. Inputs are generated here (cv2 blobs and their boxes, stars,
convex hulls, float boxes, tiny, thin, collinear, staircase and self-intersecting
polygons) or read from the committed reference-environment vectors.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import real_maps_dir

from unclip_tuner.postprocess import offset as fast
from unclip_tuner.postprocess.offset_reference import (
    reference_distance,
    reference_offset_paths,
    unclip_reference,
)

DATA = Path(__file__).resolve().parent / "data" / "offset"
REALMAPS = real_maps_dir()


# ------------------------------------------------------------------------ generators


def blob_polygons(rng, n_masks, size=(160, 320)):
    """approxPolyDP (0.002 * arcLength) contours of random text-like blobs, and the
    float32 minAreaRect corners of the same contours."""
    polys, boxes = [], []
    H, W = size
    for _ in range(n_masks):
        m = np.zeros((H, W), np.uint8)
        for _ in range(rng.integers(1, 6)):
            kind = rng.integers(0, 3)
            cx, cy = rng.uniform(10, W - 10), rng.uniform(10, H - 10)
            if kind == 0:
                size_wh = (rng.uniform(3, 120), rng.uniform(2, 30))
                ang = rng.choice([0.0, 0.0, rng.uniform(-30, 30)])
                box = cv2.boxPoints(((cx, cy), size_wh, ang)).astype(np.int32)
                cv2.fillPoly(m, [box], 255)
            elif kind == 1:
                axes = (int(rng.uniform(2, 40)), int(rng.uniform(2, 15)))
                angle = float(rng.uniform(0, 180))
                cv2.ellipse(m, (int(cx), int(cy)), axes, angle, 0, 360, 255, -1)
            else:  # a row of glyph-like boxes
                x, hh = cx, rng.uniform(4, 25)
                for _c in range(rng.integers(2, 12)):
                    cw = rng.uniform(2, hh)
                    y0 = cy + rng.uniform(-2, 2)
                    y1 = int(y0 + hh * rng.uniform(0.6, 1))
                    cv2.rectangle(m, (int(x), int(y0)), (int(x + cw), y1), 255, -1)
                    x += cw + rng.uniform(-1, 3)
        if rng.random() < 0.5:  # ragged borders
            noise = (rng.random((H, W)) < 0.02).astype(np.uint8) * 255
            m = cv2.bitwise_or(m, cv2.dilate(noise & m, np.ones((2, 2), np.uint8)))
            m = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours:
            approx = cv2.approxPolyDP(c, 0.002 * cv2.arcLength(c, True), True).reshape(-1, 2)
            if approx.shape[0] >= 4:
                polys.append(approx)
            boxes.append(cv2.boxPoints(cv2.minAreaRect(c)).astype(np.float32))
    return polys, boxes


def star_polygons(rng, n):
    out = []
    for _ in range(n):
        k = rng.integers(3, 40)
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        r = rng.uniform(2, 60) * rng.uniform(0.3, 1.0, k)
        c = rng.uniform(50, 500, 2)
        sx, sy = rng.uniform(0.2, 3), rng.uniform(0.2, 3)
        pts = np.stack([c[0] + sx * r * np.cos(ang), c[1] + sy * r * np.sin(ang)], 1)
        out.append(np.round(pts) if rng.random() < 0.5 else pts)
    return out


def convex_polygons(rng, n):
    out = []
    for _ in range(n):
        pts = rng.uniform(0, rng.uniform(3, 200), (rng.integers(3, 30), 2))
        pts += rng.uniform(0, 600, 2)
        hull = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)
        if len(hull) >= 3:
            out.append(np.round(hull))
    return out


def float_boxes(rng, n):
    out = []
    for _ in range(n):
        w = rng.choice([rng.uniform(0.3, 3), rng.uniform(3, 200), rng.uniform(200, 900)])
        h = rng.choice([rng.uniform(0.3, 3), rng.uniform(3, 40)])
        centre = (rng.uniform(-5, 800), rng.uniform(-5, 800))
        out.append(cv2.boxPoints((centre, (w, h), rng.uniform(-90, 90))).astype(np.float32))
    return out


def odd_polygons(rng, n):
    """Tiny, long thin, collinear vertices with duplicates, staircases, self-intersecting
    clouds, fully collinear and negative float polygons."""
    out = []
    for _ in range(n):
        kind = rng.integers(0, 7)
        if kind == 0:
            p = rng.uniform(0, 3, (rng.integers(3, 8), 2)) + rng.uniform(-5, 50, 2)
            out.append(np.round(p))
        elif kind == 1:
            size_wh = (rng.uniform(50, 900), rng.uniform(0.5, 6))
            out.append(np.round(cv2.boxPoints(((rng.uniform(0, 900), rng.uniform(0, 900)), size_wh,
                                               rng.uniform(0, 180)))))
        elif kind == 2:
            x0, y0 = rng.integers(0, 500, 2)
            w, h = rng.integers(1, 200), rng.integers(1, 40)
            corners = [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)]
            pts = []
            for a, b in zip(corners, corners[1:] + corners[:1]):
                for t in np.sort(rng.uniform(0, 1, rng.integers(1, 4))):
                    pts.append(np.round(np.array(a) + t * (np.array(b) - np.array(a))))
                if rng.random() < 0.3:
                    pts.append(pts[-1])
            out.append(np.array(pts, float))
        elif kind == 3:
            x0, y0 = rng.integers(0, 500, 2)
            step = rng.integers(1, 4)
            pts, x, y = [(x0, y0)], x0, y0
            for _i in range(rng.integers(2, 15)):
                x += rng.integers(1, 6)
                pts.append((x, y))
                y += step * rng.choice([-1, 1])
                pts.append((x, y))
            pts += [(x, y0 + 30), (x0, y0 + 30)]
            out.append(np.array(pts, float))
        elif kind == 4:
            pts = np.round(rng.uniform(0, rng.uniform(5, 300), (rng.integers(5, 60), 2)))
            out.append(np.round(pts / 5) * 5 if rng.random() < 0.3 else pts)
        elif kind == 5:
            k = rng.integers(3, 6)
            p, d = rng.uniform(0, 100, 2), rng.uniform(-1, 1, 2)
            out.append(np.round(p + np.outer(rng.uniform(0, 50, k), d)))
        else:
            out.append(rng.uniform(-60, 10, (rng.integers(3, 10), 2)))
    return out


def all_families(seed):
    rng = np.random.default_rng(seed)
    blobs, boxes = blob_polygons(rng, 40)
    return {
        "blob": blobs,
        "blob_box": boxes,
        "star": star_polygons(rng, 300),
        "convex": convex_polygons(rng, 200),
        "box": float_boxes(rng, 300),
        "odd": odd_polygons(rng, 600),
    }


def split_xy(points):
    p = np.asarray(points, dtype=np.float64)
    return np.ascontiguousarray(p[:, 0]), np.ascontiguousarray(p[:, 1])


def pyclipper_paths(points, distance):
    """pyclipper on the truncated points (what the seed's AddPath does)."""
    truncated = np.trunc(np.asarray(points, dtype=np.float64)).astype(np.int64)
    return reference_offset_paths(truncated, distance)


# ------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("seed", [1, 2])
def test_distance_bitwise_equals_shapely(seed):
    """GEOS ring area / length formulas, bitwise (shapely of this environment; its GEOS
    uses the same formulas as the pinned GEOS 3.11, checked by the committed vectors)."""
    rng = np.random.default_rng(seed)
    cases = [p for fam in all_families(seed).values() for p in fam]
    for _ in range(1500):  # random floats over many scales, some rings already closed
        p = rng.uniform(-1, 1, (rng.integers(3, 40), 2)) * 10.0 ** rng.uniform(-2, 4)
        p += rng.uniform(-1e3, 1e3, 2)
        cases.append(np.vstack([p, p[:1]]) if rng.random() < 0.2 else p)
    n_skip = 0
    for p in cases:
        ratio = rng.uniform(1.2, 2.6)
        ref = reference_distance(p, ratio)
        got = fast.unclip_distance(*split_xy(p), ratio)
        if ref is None:
            n_skip += 1
            assert np.isnan(got)
        else:
            assert got == ref, (p.tolist(), ratio, got, ref)
    assert n_skip > 0  # zero-area polygons (collinear points) were exercised


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_offset_equals_pyclipper_on_generated_polygons(seed):
    rng = np.random.default_rng(seed)
    counts = {fast.OFFSET_OK: 0, fast.OFFSET_EMPTY: 0, fast.OFFSET_FALLBACK: 0}
    for name, polys in all_families(seed).items():
        for p in polys:
            ratio = rng.uniform(1.2, 2.6)
            xs, ys = split_xy(p)
            out, status, distance = fast.unclip_polygon(xs, ys, ratio)
            counts[status] += 1
            ref_distance = reference_distance(p, ratio)
            if ref_distance is None:
                assert status == fast.OFFSET_EMPTY and np.isnan(distance)
                continue
            assert distance == ref_distance
            paths = pyclipper_paths(p, distance)
            if status == fast.OFFSET_OK:
                assert len(paths) > 0, (name, p.tolist(), ratio)
                expected = np.asarray(paths[0]).reshape(-1, 2)
                np.testing.assert_array_equal(out, expected, err_msg=name)
            elif status == fast.OFFSET_EMPTY:
                assert paths == [], (name, p.tolist(), ratio)
    total = sum(counts.values())
    assert total > 1500
    assert counts[fast.OFFSET_OK] > 0.9 * total
    # the kernel covers Clipper's whole union (joins included): fallbacks are exceptional
    assert counts[fast.OFFSET_FALLBACK] <= 0.005 * total, counts


def test_unclip_fast_equals_reference_and_reports_fallbacks():
    rng = np.random.default_rng(21)
    fams = all_families(21)
    cases = [p for fam in fams.values() for p in fam][:1500]
    for p in cases:
        ratio = rng.uniform(1.2, 2.6)
        got, used_fallback = fast.unclip_fast(p, ratio)
        ref = unclip_reference(p, ratio)
        _, status, _ = fast.unclip_polygon(*split_xy(p), ratio)
        assert used_fallback == (status == fast.OFFSET_FALLBACK)
        if ref is None:
            assert got is None
        else:
            np.testing.assert_array_equal(got, ref)


def test_fallback_path_runs_pyclipper():
    """Coordinates beyond Clipper's 64-bit range (0x3FFFFFFF) are left to pyclipper."""
    big = 2 ** 31
    p = np.array([[big, big], [big + 40, big], [big + 40, big + 10], [big, big + 10]], np.int64)
    out, status = fast.offset_polygon(p[:, 0].copy(), p[:, 1].copy(), 3.0)
    assert status == fast.OFFSET_FALLBACK and out.shape == (0, 2)
    got, used_fallback = fast.unclip_fast(p, 2.0)
    assert used_fallback
    np.testing.assert_array_equal(got, unclip_reference(p, 2.0))


def test_empty_results():
    # fewer than three distinct points after truncation: pyclipper returns no path
    tiny = np.array([[0.2, 0.1], [0.9, 0.3], [0.5, 0.8], [0.1, 0.6]], np.float32)
    assert reference_distance(tiny, 1.5) is not None
    assert pyclipper_paths(tiny, reference_distance(tiny, 1.5)) == []
    assert fast.unclip_fast(tiny, 1.5) == (None, False)
    # collinear points: zero area, the seed skips the polygon
    line = np.array([[0, 0], [5, 5], [10, 10], [3, 3]], np.int32)
    assert unclip_reference(line, 2.0) is None
    assert fast.unclip_fast(line, 2.0) == (None, False)
    out, status = fast.offset_polygon(np.array([1, 2], np.int64), np.array([1, 2], np.int64), 2.0)
    assert status == fast.OFFSET_EMPTY and out.shape == (0, 2)


def test_bad_input_messages():
    with pytest.raises(ValueError, match="shape"):
        fast.unclip_fast(np.zeros((2, 2)), 2.0)
    with pytest.raises(ValueError, match="shape"):
        fast.unclip_fast(np.zeros((4, 3)), 2.0)
    with pytest.raises(ValueError, match="ratio"):
        fast.unclip_fast(np.array([[0, 0], [4, 0], [4, 4]]), 0.0)
    with pytest.raises(ValueError, match="finite"):
        fast.unclip_fast(np.array([[0, 0], [np.nan, 0], [4, 4]]), 2.0)


def test_std_sort_emulation_is_a_descending_sort():
    """The libstdc++ introsort emulation (used where Clipper calls std::sort) must return a
    permutation ordered by decreasing key, also past the 16-element insertion-sort limit
    and on inputs with many equal keys. Which of the equal keys comes first is checked
    indirectly by the pyclipper comparisons (blobs have more than 16 local minima)."""
    rng = np.random.default_rng(5)
    for n in [0, 1, 2, 5, 16, 17, 33, 100, 1000]:
        for pattern in range(4):
            keys = [rng.integers(0, 5, n), rng.integers(0, 10 ** 6, n),
                    np.arange(n), np.arange(n)[::-1]][pattern]
            T = np.zeros((n + 1, fast._NCOL), np.int64)
            T[:n, 0] = keys
            T[:n, 1] = np.arange(n)
            fast._gnu_sort(T, 0, 1, 0, n)
            order = T[:n, 1]
            assert sorted(order.tolist()) == list(range(n))
            assert np.all(np.diff(keys[order]) <= 0)


def test_committed_reference_vectors():
    """Baseline ``unclip`` outputs from the pinned environment (shapely 2.0.2, pyclipper
    1.3.0.post5): distance bitwise, polygon vertex for vertex."""
    v = np.load(DATA / "unclip_vectors.npz")
    pts, offs, ratio, dist = v["points"], v["offsets"], v["ratio"], v["distance"]
    out_pts, out_offs, status = v["out_points"], v["out_offsets"], v["status"]
    assert len(ratio) > 4000
    n_ok = 0
    for i in range(len(ratio)):
        xs, ys = split_xy(pts[offs[i]:offs[i + 1]])
        out, st, d = fast.unclip_polygon(xs, ys, ratio[i])
        if np.isnan(dist[i]):
            assert np.isnan(d) and status[i] == 1
        else:
            assert d == dist[i], i
        if status[i] == 0:
            assert st == fast.OFFSET_OK, i
            np.testing.assert_array_equal(out, out_pts[out_offs[i]:out_offs[i + 1]], err_msg=str(i))
            n_ok += 1
        else:
            assert st == fast.OFFSET_EMPTY, i
    assert n_ok > 4000


def test_real_probability_map_contours():
    """Contours of ``prob > 0.3`` of real PP-OCRv4 maps (the most realistic inputs)."""
    files = sorted(REALMAPS.glob("*.npz"))
    if not files:
        pytest.skip(f"real probability maps are not available at {REALMAPS}")
    counts = {fast.OFFSET_OK: 0, fast.OFFSET_EMPTY: 0, fast.OFFSET_FALLBACK: 0}
    for f in files[::20]:
        prob = np.load(f)["prob"]
        bitmap = ((prob > np.float32(0.3)) * 255).astype(np.uint8)
        contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours:
            approx = cv2.approxPolyDP(c, 0.002 * cv2.arcLength(c, True), True).reshape(-1, 2)
            box = cv2.boxPoints(cv2.minAreaRect(c)).astype(np.float32)
            for p, ratio in ((approx, 2.0), (box, 1.5)):
                if p.shape[0] < 4:
                    continue
                out, status, distance = fast.unclip_polygon(*split_xy(p), ratio)
                counts[status] += 1
                if status == fast.OFFSET_FALLBACK:
                    continue
                ref = unclip_reference(p, ratio)
                if status == fast.OFFSET_EMPTY:
                    assert ref is None
                else:
                    np.testing.assert_array_equal(out, ref)
    assert counts[fast.OFFSET_OK] > 500
    assert counts[fast.OFFSET_FALLBACK] <= 0.005 * sum(counts.values()), counts
