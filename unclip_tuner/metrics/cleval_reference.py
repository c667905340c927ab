"""The competition's CLEval (detection only, POLY boxes), plain reference implementation.

This module computes one image's recall, precision and H-Mean exactly as the competition
baseline does (its ``CLEvalMetric``, one update/compute/reset per image, under the pinned
numpy 1.26 / scipy 1.11 environment), written as straightforward Python and numpy for
clarity. :mod:`unclip_tuner.metrics.cleval` computes the same numbers with Numba kernels
and is tested against this module and against vectors produced by the baseline itself
(``tests/data/cleval``).

The rules, in the order they apply to one image
-----------------------------------------------
1. **Inputs.** Ground-truth points are rounded half to even to integers (the baseline's
   data loader does ``np.round`` then ``int32`` before the metric sees them; here that
   step is ``round_gt=True``). Detections are cut to the first ``max_polygons`` (500)
   FIRST; then every polygon with fewer than 4 points is dropped (GT too). Dropped words
   take no part in anything.
2. **Geometry** (:mod:`~unclip_tuner.metrics.geometry_reference`, Polygon3/GPC rules)
   runs on the points truncated toward zero (``int32``): absolute shoelace area, even-odd
   intersections, the half-open ``isInside`` test.
3. **Aspect ratio** of a polygon, from its raw points as float32: the convex hull in
   scipy's (Qhull's) counter-clockwise vertex order; for every hull edge, starting at the
   first hull vertex, the bounding rectangle along that edge; the first edge reaching the
   strict minimum area wins. "width" is that rectangle's side along the edge, "height"
   the other; ``ar = min(100, height / (width + eps32))``. A failing hull (collinear or
   repeated points) gives ``ar = 0``. The arithmetic follows numpy 1.26 promotion, which
   made it float64 (see :func:`min_area_rect_sides`).
4. **Character counts.** A GT word holds ``min(round(0.5 + max(ar, 1/(ar + eps32))), 100)``
   pseudo characters (Python rounding, half to even; a degenerate word counts 100). An
   unmatched detection costs ``min(round(0.5 + 1/(eps32 + ar)), 100)`` false-positive
   characters (asymmetric: wide boxes cost more than tall ones).
5. **Pseudo character centres** are spaced along the GT polygon's first half of points
   (the "top") and its reversed second half (the "bottom"), see :func:`character_centres`.
6. **Pairs.** ``ap = area(GT & det) / area(det)`` stored as float32 (0 for a zero-area
   detection); a don't-care GT first loses the area of every other (cared) GT overlapping
   it. ``n_in[g, d]`` counts the centres of GT ``g`` inside detection ``d``. A pair is a
   *candidate* when ``ap >= 0.3`` (compared in float32) and ``n_in > 0``.
7. **Don't-care detections**: a detection is ignored when it is a candidate-area pair
   (``ap >= 0.3``, no centre needed) with some don't-care GT, or when the ``ap`` of the
   don't-care GTs whose centres it holds sum (float64) to ``>= 0.3``.
8. **Matching** among cared GTs and kept detections: one-to-one (the pair is the only
   candidate in its GT's row and its detection's column, counted over ALL GTs and ALL
   detections, don't-care ones included), one-to-many (a GT with >= 2 candidate
   detections), many-to-one (a detection holding centres of >= 2 GTs whose ``ap`` sum to
   >= 0.3). Any of the three marks the pair as matched.
9. **Counts.** ``tp`` = distinct centres inside a matched detection of their GT;
   ``det_chars`` = centre inclusions over matched pairs (a centre in two detections counts
   twice); granularity penalties ``n - 1`` per split GT (recall) and per merging detection
   (precision); ``fp_chars`` from rule 4 for every kept detection without a match.
10. **Scores**, as float32 like the baseline's torch states: ``R = max(0, tp - pen_r) /
    gt_chars``, ``P = max(0, tp - pen_p) / (det_chars + fp_chars)`` (0 when a denominator
    is 0), ``H = 2RP / (R + P)`` (0 when ``R + P == 0``).

Where the baseline iterates a Python ``set`` while summing floats, the same set is built
here so that the float64 summation order is the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..io.types import ImageWords
from .base import ImageScore
from .geometry_reference import (difference_intersection_area, intersection_area,
                                 point_inside, polygon_area)

__all__ = [
    "AP_CONSTRAINT", "EPS32", "MAX_CHARS", "MAX_POLYGONS", "MIN_POINTS",
    "aspect_ratio", "character_centres", "cleval_image", "fp_char_count", "gt_char_count",
    "image_score", "min_area_rect_sides", "prepare_gt_points", "prepare_det_points",
    "qhull_order",
]

#: Area-precision threshold of a candidate pair and of a many-to-one sum.
AP_CONSTRAINT = 0.3
#: ``np.finfo(np.float32).eps`` as a Python float (2**-23).
EPS32 = float(np.finfo(np.float32).eps)
#: Cap on pseudo character counts (GT words and false positives).
MAX_CHARS = 100
#: Detections beyond this many per image are ignored (cut before the validity check).
MAX_POLYGONS = 500
#: A polygon needs at least this many points (8 numbers) to take part.
MIN_POINTS = 4

_AP32 = np.float32(AP_CONSTRAINT)


# ---------------------------------------------------------------------------------------
# Per-polygon quantities
# ---------------------------------------------------------------------------------------

def prepare_gt_points(poly: np.ndarray, round_gt: bool = True) -> np.ndarray:
    """Ground-truth points as the metric sees them: rounded half to even, integer-valued.

    Parameters
    ----------
    poly : ndarray, shape (n, 2)
        Raw points as read.
    round_gt : bool
        Apply the baseline loader's ``np.round`` (half to even). When False the points are
        truncated toward zero like detections (the metric's own int32 conversion).

    Returns
    -------
    ndarray, shape (n, 2), float64
        Integer-valued coordinates.
    """
    p = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    return np.round(p) if round_gt else np.trunc(p)


def prepare_det_points(poly: np.ndarray) -> np.ndarray:
    """Detection points truncated toward zero, as the metric's ``int32`` conversion does."""
    return np.trunc(np.asarray(poly, dtype=np.float64).reshape(-1, 2))


def qhull_order(poly: np.ndarray) -> Optional[np.ndarray]:
    """scipy's convex hull vertex indices of the float32 points, or None.

    The indices are counter-clockwise and start where Qhull's facet list starts. None
    stands for a hull that Qhull refuses to build (fewer than three distinct points, or
    all points on one line): the baseline catches that failure and uses ``ar = 0``.
    """
    from scipy.spatial import ConvexHull, QhullError

    p32 = np.asarray(poly, dtype=np.float64).reshape(-1, 2).astype(np.float32)
    try:
        return ConvexHull(p32).vertices
    except (QhullError, ValueError):
        return None


def _edge_rectangle(hull_x: List[float], hull_y: List[float], i: int) -> Tuple[float, float]:
    """Sides ``(along, across)`` of the bounding rectangle of the hull along edge ``i``.

    ``hull_x``/``hull_y`` hold the float32 hull points as Python floats, closed (the first
    point repeated at the end). Under numpy 1.26 every operation after the float32
    coordinate differences was promoted to float64; it is written here in Python floats,
    one rounding per operation, in the baseline's order.
    """
    x0, y0 = hull_x[i], hull_y[i]
    x1, y1 = hull_x[i + 1], hull_y[i + 1]
    # float32 differences, then squared and summed in float64
    dx = float(np.float32(x1) - np.float32(x0))
    dy = float(np.float32(y1) - np.float32(y0))
    length = math.sqrt(dx * dx + dy * dy)
    ux, uy = dx / length, dy / length          # unit vector along the edge
    ox, oy = -uy, ux                           # the orthogonal one
    along = [ux * x + uy * y for x, y in zip(hull_x, hull_y)]
    across = [ox * x + oy * y for x, y in zip(hull_x, hull_y)]
    return max(along) - min(along), max(across) - min(across)


def min_area_rect_sides(poly: np.ndarray) -> Tuple[float, float]:
    """``(width, height)`` of the baseline's minimum-area bounding rectangle.

    Parameters
    ----------
    poly : ndarray, shape (n, 2)
        Raw points (converted to float32 first, as the baseline does).

    Returns
    -------
    tuple of float
        ``width`` is the rectangle side along the winning hull edge, ``height`` the other.
        ``(0.0, 0.0)`` when the hull fails.

    Notes
    -----
    The edges are visited in scipy's counter-clockwise hull order starting at
    ``ConvexHull(points).vertices[0]``; the first edge whose rectangle area is strictly
    smaller than every earlier one wins, so among edges of equal area the first one
    visited decides which side is the "width". Under numpy 2 the same code would stay in
    float32 (NEP 50); the float64 arithmetic here is the pinned numpy 1.26 behaviour.
    """
    p32 = np.asarray(poly, dtype=np.float64).reshape(-1, 2).astype(np.float32)
    order = qhull_order(p32)
    if order is None:
        return 0.0, 0.0
    hull_x = [float(v) for v in p32[order, 0]]
    hull_y = [float(v) for v in p32[order, 1]]
    hull_x.append(hull_x[0])
    hull_y.append(hull_y[0])
    best_area = math.inf
    best = (0.0, 0.0)
    for i in range(len(order)):
        along, across = _edge_rectangle(hull_x, hull_y, i)
        area = along * across
        if i == 0 or area < best_area:
            best_area, best = area, (along, across)
    return best


def aspect_ratio(poly: np.ndarray) -> float:
    """``min(100, height / (width + eps32))`` of :func:`min_area_rect_sides` (0 if degenerate)."""
    width, height = min_area_rect_sides(poly)
    return min(100.0, height / (width + EPS32))


def gt_char_count(ar: float) -> int:
    """Pseudo character count of a GT word.

    ``min(round(0.5 + max(ar, 1/(ar + eps32))), 100)``, Python rounding (half to even).
    """
    return min(round(0.5 + max(ar, 1.0 / (ar + EPS32))), MAX_CHARS)


def fp_char_count(ar: float) -> int:
    """False-positive characters of an unmatched detection.

    ``min(round(0.5 + 1/(eps32 + ar)), 100)``, Python rounding (half to even).
    """
    return min(round(0.5 + 1.0 / (EPS32 + ar)), MAX_CHARS)


def character_centres(points: np.ndarray, n_chars: int) -> np.ndarray:
    """Pseudo character centres of a GT polygon (the baseline's POLY rule).

    The first ``n // 2`` points form the top line and the remaining points, reversed, the
    bottom line. Each of the ``n // 2 - 1`` top sections (and the matching bottom ones) is
    cut into ``n_chars`` steps whose intermediate points are truncated toward zero. Then
    character ``c`` takes the mean of the top and bottom points at step indices
    ``int(c * s)`` and ``int((c + 1) * s)`` with ``s = (number of steps) / n_chars``.
    The bottom list ends with point ``n // 2`` (the last point of the reversed bottom).

    Parameters
    ----------
    points : ndarray, shape (n, 2)
        Integer-valued GT points (``n >= 4``).
    n_chars : int
        Pseudo character count (:func:`gt_char_count`).

    Returns
    -------
    ndarray, shape (n_chars, 2), float64
    """
    pts = [(int(x), int(y)) for x, y in np.asarray(points)]
    half = len(pts) // 2
    top = pts[:half]
    bottom = pts[half:][::-1]

    def line(side: List[Tuple[int, int]]) -> Tuple[List[int], List[int]]:
        xs: List[int] = []
        ys: List[int] = []
        for k in range(half - 1):
            (sx, sy), (ex, ey) = side[k], side[k + 1]
            step_x = (ex - sx) / n_chars
            step_y = (ey - sy) / n_chars
            xs.append(sx)
            ys.append(sy)
            for j in range(1, n_chars):
                xs.append(int(sx + step_x * j))
                ys.append(int(sy + step_y * j))
        xs.append(side[-1][0])
        ys.append(side[-1][1])
        return xs, ys

    top_x, top_y = line(top)
    bot_x, bot_y = line(bottom)
    section = (len(top_x) - 1) / n_chars
    out = np.empty((n_chars, 2), dtype=np.float64)
    for c in range(n_chars):
        a, b = int(c * section), int((c + 1) * section)
        out[c, 0] = (top_x[a] + top_x[b] + bot_x[a] + bot_x[b]) / 4
        out[c, 1] = (top_y[a] + top_y[b] + bot_y[a] + bot_y[b]) / 4
    return out


# ---------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------

def image_score(tp: int, recall_penalty: float, precision_penalty: float, gt_chars: int,
                det_chars: int, fp_chars: int, extra: Optional[Dict[str, float]] = None
                ) -> ImageScore:
    """Per-image recall, precision and H-Mean with the baseline's float32 arithmetic.

    Parameters
    ----------
    tp : int
        Distinct matched character centres.
    recall_penalty, precision_penalty : float
        Granularity penalties (number of splits / merges weighted by 1).
    gt_chars : int
        Characters of the cared GT words.
    det_chars, fp_chars : int
        Centre inclusions over matched pairs, and false-positive characters.
    extra : dict, optional
        Further statistics to carry in :attr:`ImageScore.extra`.

    Returns
    -------
    ImageScore
        ``recall``, ``precision`` and ``hmean`` are the float32 values as Python floats.
    """
    f32 = np.float32
    den_p = det_chars + fp_chars

    def ratio(num: float, den: int) -> np.float32:
        if den == 0:
            return f32(0.0)
        diff = f32(tp) - f32(num)                 # int32 - float32 state -> float32
        return diff / f32(den) if diff > 0 else f32(0.0)

    recall = ratio(recall_penalty, gt_chars)
    precision = ratio(precision_penalty, den_p)
    total = recall + precision
    hmean = f32(0.0) if total == 0 else (f32(2.0) * recall * precision) / total
    stats = {"tp": float(tp), "recall_penalty": float(recall_penalty),
             "precision_penalty": float(precision_penalty), "gt_chars": float(gt_chars),
             "det_chars": float(det_chars), "num_char_fp": float(fp_chars)}
    if extra:
        stats.update(extra)
    return ImageScore(
        recall=float(recall), precision=float(precision), hmean=float(hmean),
        recall_num=float(max(0.0, tp - recall_penalty)), recall_den=float(gt_chars),
        precision_num=float(max(0.0, tp - precision_penalty)), precision_den=float(den_p),
        extra=stats)


# ---------------------------------------------------------------------------------------
# One image
# ---------------------------------------------------------------------------------------

def _bbox(p: np.ndarray) -> Tuple[float, float, float, float]:
    return float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())


def _boxes_touch(a, b) -> bool:
    """Closed bounding boxes overlap (a necessary condition for any shared area or centre)."""
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _kept(words: ImageWords, limit: Optional[int]) -> List[int]:
    """Indices of the polygons that take part: the first ``limit``, then >= 4 points."""
    n = len(words) if limit is None else min(len(words), limit)
    return [i for i in range(n) if words.polygons[i].shape[0] >= MIN_POINTS]


@dataclass
class ImageMatch:
    """What CLEval decided for one image; kept words are numbered ``0..n-1``.

    Attributes
    ----------
    gt_index, det_index : list of int
        Position in the input of each kept GT word / detection (detections beyond
        ``max_polygons`` and polygons of fewer than 4 points take no part).
    gt_dont_care, det_dont_care : set of int
        Kept GT words that are don't-care, and kept detections assigned to them.
    matched : ndarray of bool, shape (n_gt, n_det)
        The matched pairs (one-to-one, split and merge).
    centres_in : ndarray of int, shape (n_gt, n_det)
        Number of the GT word's character centres inside the detection.
    found : list of ndarray of bool
        Per GT word, the centres found by a matched detection.
    gt_chars : list of int
        Pseudo character count of each kept GT word.
    det_raw : list of ndarray
        Kept detections' points as given (their aspect ratio uses the raw values).
    """

    gt_index: List[int]
    det_index: List[int]
    gt_dont_care: set
    det_dont_care: set
    matched: np.ndarray
    centres_in: np.ndarray
    found: List[np.ndarray]
    gt_chars: List[int]
    det_raw: List[np.ndarray]

    @property
    def gt_valid(self) -> set:
        return set(range(len(self.gt_index))) - self.gt_dont_care

    @property
    def det_valid(self) -> set:
        return set(range(len(self.det_index))) - self.det_dont_care


def match_image(gt: ImageWords, det: ImageWords, max_polygons: int = MAX_POLYGONS,
                round_gt: bool = True) -> ImageMatch:
    """Run CLEval's matching on one image (rules 1-9 of the module docstring).

    The parameters are those of :func:`cleval_image`, which turns the result into scores;
    :mod:`unclip_tuner.report.overlay` turns it into per-word outcomes.
    """
    if max_polygons < 0:
        raise ValueError("max_polygons must be >= 0")
    g_idx = _kept(gt, None)
    d_idx = _kept(det, max_polygons)
    dc_flags = gt.dont_care_flags
    g_raw = [gt.polygons[i] for i in g_idx]
    g_pts = [prepare_gt_points(p, round_gt) for p in g_raw]
    g_dc = [bool(dc_flags[i]) for i in g_idx]
    d_raw = [det.polygons[i] for i in d_idx]
    d_pts = [prepare_det_points(p) for p in d_raw]
    n_g, n_d = len(g_pts), len(d_pts)

    # GT words: character counts (aspect ratio of the metric's integer points) and centres
    g_chars = [gt_char_count(aspect_ratio(p)) for p in g_pts]
    centres = [character_centres(p, c) for p, c in zip(g_pts, g_chars)]
    g_box = [_bbox(p) for p in g_pts]
    d_box = [_bbox(p) for p in d_pts]
    d_area = [polygon_area(p) for p in d_pts]

    # Don't-care regions lose the area of the cared GT words that overlap them.
    dc_set = {g for g in range(n_g) if g_dc[g]}
    holes = {g: [g_pts[h] for h in range(n_g)
                 if h not in dc_set and _boxes_touch(g_box[g], g_box[h])
                 and intersection_area(g_pts[h], g_pts[g]) > 0]
             for g in dc_set}

    # Centre inclusions: inside[g][d] is a bool array over the centres of g.
    inside: List[List[Optional[np.ndarray]]] = [[None] * n_d for _ in range(n_g)]
    n_in = np.zeros((n_g, n_d), dtype=np.int64)
    for g in range(n_g):
        for d in range(n_d):
            if not _boxes_touch(g_box[g], d_box[d]):
                continue
            x0, y0, x1, y1 = d_box[d]
            flags = np.array([x0 <= x <= x1 and y0 <= y <= y1 and point_inside(d_pts[d], x, y)
                              for x, y in centres[g]], dtype=bool)
            inside[g][d] = flags
            n_in[g, d] = int(flags.sum())

    # Area precision, needed where a pair shares a centre or the GT is don't-care.
    ap = np.zeros((n_g, n_d), dtype=np.float32)
    for g in range(n_g):
        for d in range(n_d):
            if d_area[d] <= 0.0 or not _boxes_touch(g_box[g], d_box[d]):
                continue
            if g in dc_set:
                shared = difference_intersection_area(d_pts[d], g_pts[g], holes[g])
            elif n_in[g, d] > 0:
                shared = intersection_area(g_pts[g], d_pts[d])
            else:
                continue
            ap[g, d] = shared / d_area[d]
    ap_ok = ap >= _AP32
    candidate = ap_ok & (n_in > 0)

    # Detections that belong to don't-care regions (float64 sum in the set's order).
    det_dc = set()
    for d in range(n_d):
        total = 0.0
        for g in dc_set:
            if ap_ok[g, d]:
                det_dc.add(d)
                break
            if n_in[g, d] > 0:
                total += float(ap[g, d])
        if total >= AP_CONSTRAINT:
            det_dc.add(d)
    gt_valid = set(range(n_g)) - dc_set
    det_valid = set(range(n_d)) - det_dc

    # Matching
    matched = np.zeros((n_g, n_d), dtype=bool)
    row_candidates = candidate.sum(axis=1)      # over all detections
    col_candidates = candidate.sum(axis=0)      # over all GT words
    for g in gt_valid:
        for d in det_valid:
            if candidate[g, d] and row_candidates[g] == 1 and col_candidates[d] == 1:
                matched[g, d] = True                                   # one-to-one
    for g in gt_valid:
        dets = [d for d in det_valid if candidate[g, d]]
        if len(dets) >= 2:
            matched[g, dets] = True                                    # one-to-many (split)
    for d in det_valid:
        gts = [g for g in gt_valid if n_in[g, d] > 0]
        if len(gts) >= 2 and sum(float(ap[g, d]) for g in gts) >= AP_CONSTRAINT:
            matched[gts, d] = True                                     # many-to-one (merge)

    found = [np.zeros(len(c), dtype=bool) for c in centres]
    for g in range(n_g):
        for d in range(n_d):
            if matched[g, d]:
                found[g] |= inside[g][d]
    return ImageMatch(g_idx, d_idx, dc_set, det_dc, matched, n_in, found, g_chars, d_raw)


def cleval_image(gt: ImageWords, det: ImageWords, max_polygons: int = MAX_POLYGONS,
                 round_gt: bool = True) -> ImageScore:
    """CLEval of one image, as the competition baseline computes it.

    Parameters
    ----------
    gt : ImageWords
        Ground truth; ``gt.dont_care`` marks don't-care words.
    det : ImageWords
        Detections in output order (only the first ``max_polygons`` count).
    max_polygons : int
        The baseline's cut on detections per image.
    round_gt : bool
        Round GT points half to even first, as the baseline's data loader does.

    Returns
    -------
    ImageScore
        See :func:`image_score`; ``extra`` also holds ``num_splitted``, ``num_merged`` and
        ``num_char_overlapped``.
    """
    m = match_image(gt, det, max_polygons, round_gt)
    matched = m.matched
    gt_valid, det_valid = m.gt_valid, m.det_valid
    # Counts over matched pairs
    det_chars = int(m.centres_in[matched].sum())
    tp = int(sum(int(f.sum()) for f in m.found))
    dets_per_gt = matched.sum(axis=1)
    gts_per_det = matched.sum(axis=0)
    recall_penalty = float(sum(max(int(dets_per_gt[g]) - 1, 0) for g in gt_valid))
    precision_penalty = float(sum(max(int(gts_per_det[d]) - 1, 0) for d in det_valid))
    num_splitted = sum(1 for g in gt_valid if dets_per_gt[g] > 1)
    num_merged = sum(1 for d in det_valid if gts_per_det[d] > 1)
    gt_chars = sum(m.gt_chars[g] for g in gt_valid)
    fp_chars = sum(fp_char_count(aspect_ratio(m.det_raw[d]))
                   for d in sorted(det_valid) if gts_per_det[d] == 0)
    extra = {"num_splitted": float(num_splitted), "num_merged": float(num_merged),
             "num_char_overlapped": float(det_chars - tp), "n_gt": float(len(m.gt_index)),
             "n_det": float(len(m.det_index)), "n_det_dont_care": float(len(m.det_dont_care))}
    return image_score(tp, recall_penalty, precision_penalty, gt_chars, det_chars, fp_chars,
                       extra)
