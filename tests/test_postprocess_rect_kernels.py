"""The Numba rectangle kernels against the plain OpenCV 4.8.1 geometry of the reference.

``rect_kernels`` must give bit for bit what ``reference`` gives (hull vertices in the same
order, every float32 of ``minAreaRect`` including the angle, the ``boxPoints`` corners, the
baseline's ordered box and its short side), on the committed OpenCV 4.8.1 vectors and on
tens of thousands of synthetic inputs made here: small point sets full of collinear and
repeated points, squares and rectangles, contours of drawn shapes and their
Douglas-Peucker approximations, Clipper round offsets, large coordinates. No tolerance.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest

from unclip_tuner.postprocess.reference import (
    approx_poly_dp,
    box_points,
    convex_hull,
    find_contours,
    get_mini_boxes,
    min_area_rect,
    unclip_reference,
)
from unclip_tuner.postprocess.rect_kernels import (
    box_points_nb,
    convex_hull_nb,
    get_mini_boxes_nb,
    min_area_rect_nb,
)

DATA = Path(__file__).resolve().parent / "data" / "postprocess"


def _xy(points):
    p = np.asarray(points).reshape(-1, 2).astype(np.int64)
    return p[:, 0].copy(), p[:, 1].copy()


def _check(points, hull_both=False):
    """Assert every kernel equals its reference on one integer point set.

    Returns False when the reference rejects the input (a degenerate hull), after
    checking that the kernel rejects it too.
    """
    pts = np.asarray(points).reshape(-1, 2).astype(np.int64)
    px, py = _xy(pts)
    what = pts.tolist()
    assert np.array_equal(convex_hull_nb(px, py), convex_hull(pts)), f"hull of {what}"
    if hull_both:
        assert np.array_equal(convex_hull_nb(px, py, True), convex_hull(pts, clockwise=True)), f"cw hull of {what}"
    try:
        (cx, cy), (w, h), ang = min_area_rect(pts)
    except ValueError:
        with pytest.raises(ValueError):
            min_area_rect_nb(px, py)
        with pytest.raises(ValueError):
            get_mini_boxes_nb(px, py)
        return False
    mine = min_area_rect_nb(px, py)
    assert np.array_equal(np.float32(mine), np.float32([cx, cy, w, h, ang])), f"minAreaRect of {what}"
    assert all(isinstance(v, float) for v in mine)
    box, side = get_mini_boxes(pts)
    nb_box, nb_side = get_mini_boxes_nb(px, py)
    assert nb_box.dtype == np.float32 and nb_box.shape == (4, 2)
    assert np.array_equal(nb_box, box), f"mini box of {what}: {nb_box.tolist()} != {box.tolist()}"
    assert np.array_equal(np.float32(nb_side), np.float32(side)) and nb_side == side, f"short side of {what}"
    return True


# ------------------------------------------------------------------------------------
# input generators
# ------------------------------------------------------------------------------------
def _small_sets(rng, count):
    """Random small point sets on tiny grids: many repeated and collinear points."""
    for _ in range(count):
        n = int(rng.integers(1, 14))
        span = int(rng.choice([1, 2, 3, 4, 6, 10, 30]))
        yield rng.integers(-span // 2, span, (n, 2))


def _special_sets(rng, count):
    """Collinear sets, one repeated point, 1-3 points, squares, (rotated) rectangles."""
    kinds = ("collinear", "repeated", "few", "square", "axis_rect", "rot_rect", "rect_edges")
    for k in range(count):
        kind = kinds[k % len(kinds)]
        o = rng.integers(-50, 200, 2)
        if kind == "collinear":
            d = rng.integers(-4, 5, 2)
            if not d.any():
                d[int(rng.integers(2))] = 1
            t = rng.integers(-6, 7, int(rng.integers(2, 12)))
            yield o + t[:, None] * d
        elif kind == "repeated":
            yield np.repeat(o[None, :], int(rng.integers(1, 6)), axis=0)
        elif kind == "few":
            yield o + rng.integers(-8, 9, (int(rng.integers(1, 4)), 2))
        elif kind in ("square", "axis_rect", "rot_rect", "rect_edges"):
            a, b = (int(v) for v in rng.integers(-7, 8, 2))
            if a == 0 and b == 0:
                a = 3
            if kind == "axis_rect":
                u, v = np.array([a, 0]), np.array([0, b if b else 2])
            elif kind == "square":
                u, v = np.array([a, b]), np.array([-b, a])
            else:
                s = int(rng.integers(1, 5))
                u, v = np.array([a, b]), s * np.array([-b, a])
            corners = np.array([o, o + u, o + u + v, o + v])
            if kind == "rect_edges":
                # corners plus points along the sides, some repeated
                extra = [o + f * u for f in (0.5, 0.25)] + [o + v + f * u for f in (0.5,)]
                corners = np.vstack([corners, np.round(np.array(extra)).astype(np.int64), corners[:1]])
            if rng.random() < 0.5:
                yield corners[rng.permutation(len(corners))]
            else:
                yield np.roll(corners, int(rng.integers(4)), 0)


def _shape_bitmap(rng):
    """A bitmap with a few filled rotated rectangles and ellipses."""
    size = int(rng.choice([32, 64, 160]))
    img = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        c = tuple(float(v) for v in rng.uniform(4, size - 4, 2))
        wh = tuple(float(v) for v in rng.uniform(1, size / 2, 2))
        ang = float(rng.uniform(-90, 90))
        if rng.random() < 0.6:
            box = np.round(cv2.boxPoints((c, wh, ang))).astype(np.int32)
            cv2.fillPoly(img, [box], 1)
        else:
            cv2.ellipse(img, (c, wh, ang), 1, -1)
    if rng.random() < 0.3:  # speckle: a few one- and two-pixel components
        for y, x in rng.integers(0, size - 1, (int(rng.integers(1, 4)), 2)):
            img[y, x : x + int(rng.integers(1, 3))] = 1
    return img.astype(bool)


def _contour_sets(rng, count):
    """Contours of drawn shapes and their Douglas-Peucker approximations (both modes)."""
    made = 0
    while made < count:
        for c in find_contours(_shape_bitmap(rng)):
            yield c
            eps = 0.002 * cv2.arcLength(c.reshape(-1, 1, 2), True) * float(rng.choice([1.0, 1.0, 5.0, 50.0]))
            yield approx_poly_dp(c, eps)
            made += 2


def _offset_sets(rng, count):
    """Clipper round offsets: of random quads (float32 corners, box mode) and polygons."""
    for k in range(count):
        if k % 2 == 0:
            c = rng.uniform(5, 300, 2)
            wh = rng.uniform(0.5, 40, 2)
            quad = cv2.boxPoints((tuple(c), tuple(wh), float(rng.uniform(-90, 90)))).astype(np.float32)
            out = unclip_reference(quad, float(rng.uniform(0.5, 3.0)))
        else:
            n = int(rng.integers(4, 12))
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            r = rng.uniform(3, 40, n)
            poly = np.stack([100 + r * np.cos(ang) * rng.uniform(0.3, 3), 100 + r * np.sin(ang)], 1)
            out = unclip_reference(poly.astype(np.int64), float(rng.uniform(0.5, 3.0)))
        if out is not None:
            yield out


# ------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------
def test_committed_opencv_481_vectors():
    d = dict(np.load(DATA / "geometry_481.npz"))
    r_in = d["rect_in"]
    s_r = np.concatenate([[0], np.cumsum(d["rect_n"])])
    for i, (rect, box) in enumerate(zip(d["rect"], d["box"])):
        px, py = _xy(r_in[s_r[i] : s_r[i + 1]])
        mine = np.float32(min_area_rect_nb(px, py))
        assert np.array_equal(mine, rect), f"minAreaRect case {i}"
        assert np.array_equal(box_points_nb(*mine), box), f"boxPoints case {i}"
        if i % 4 == 0:  # the hull and mini boxes against the reference on a quarter of them
            _check(r_in[s_r[i] : s_r[i + 1]])
    assert len(d["rect"]) > 2000


def test_small_and_degenerate_point_sets():
    rng = np.random.default_rng(20240601)
    rejected = checked = 0
    for pts in _small_sets(rng, 14000):
        checked += 1
        rejected += not _check(pts, hull_both=checked % 4 == 0)
    for pts in _special_sets(rng, 3500):
        checked += 1
        rejected += not _check(pts, hull_both=True)
    assert checked == 17500 and rejected < checked // 2


def test_contours_approximations_and_offsets():
    rng = np.random.default_rng(7)
    n_cont = n_off = 0
    for c in _contour_sets(rng, 5000):
        _check(c)
        n_cont += 1
    for p in _offset_sets(rng, 3000):
        _check(p)
        n_off += 1
    assert n_cont >= 5000 and n_off > 2900


def test_large_coordinates():
    rng = np.random.default_rng(11)
    count = 0
    for k, pts in enumerate(_contour_sets(rng, 1500)):
        scale = int(rng.choice([1, 3, 17, 70]))
        shift = rng.integers(-100, 5000 - 64 * scale, 2) if scale < 70 else rng.integers(-100, 400, 2)
        count += 1
        _check(pts.astype(np.int64) * scale + shift, hull_both=k % 8 == 0)
    for pts in _offset_sets(rng, 1000):
        count += 1
        _check(pts * 13 + rng.integers(0, 900, 2))
    for pts in _small_sets(rng, 2000):
        count += 1
        _check(pts * int(rng.integers(50, 400)) + rng.integers(0, 3000, 2))
    # beyond the single-key sort's range (|coordinate| >= 2**24): the two-pass sort
    big = rng.integers(-(1 << 26), 1 << 26, (40, 2))
    px, py = _xy(big)
    assert np.array_equal(convex_hull_nb(px, py), convex_hull(big))
    assert count >= 4500


def test_box_points_on_arbitrary_rectangles():
    rng = np.random.default_rng(3)
    for _ in range(5000):
        c = rng.uniform(-100, 5000, 2)
        wh = rng.uniform(0, 300, 2) * (rng.random(2) > 0.05)
        ang = float(rng.choice([rng.uniform(-360, 360), rng.integers(-4, 5) * 45.0, 90.0, -0.0]))
        rect = ((float(c[0]), float(c[1])), (float(wh[0]), float(wh[1])), ang)
        assert np.array_equal(box_points_nb(c[0], c[1], wh[0], wh[1], ang), box_points(rect)), rect


def test_empty_and_single_point_inputs():
    e = np.zeros(0, np.int64)
    assert convex_hull_nb(e, e).shape == (0, 2)
    assert min_area_rect_nb(e, e) == (0.0, 0.0, 0.0, 0.0, 0.0)
    (cx, cy), (w, h), ang = min_area_rect(np.zeros((0, 2), np.int64))
    assert (cx, cy, w, h, ang) == min_area_rect_nb(e, e)
    for pts in ([[5, 7]], [[5, 7], [5, 7]], [[0, 0], [3, 4]]):
        assert _check(pts)


def test_real_map_contours(real_maps):
    """Contours of real PP-OCRv4 maps, their unclipped boxes and unclipped polygons."""
    files = sorted(real_maps.glob("*.npz"))[::25][:4]
    checked = 0
    for f in files:
        prob = np.load(f)["prob"]
        for c in find_contours(prob > np.float32(0.3))[:150]:
            _check(c)
            checked += 1
            box, side = get_mini_boxes(c)
            if side >= 3:
                expanded = unclip_reference(box, 1.5)
                if expanded is not None:
                    _check(expanded)
            eps = 0.002 * cv2.arcLength(c.reshape(-1, 1, 2), True)
            poly = approx_poly_dp(c, eps)
            if poly.shape[0] >= 4:
                out = unclip_reference(poly, 2.0)
                if out is not None:
                    _check(out)
    assert checked > 100
