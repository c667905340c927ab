"""The ICDAR 2015 IoU protocol, as the DB authors' evaluator applies it.

The rules (``DetectionIoUEvaluator`` of MhLiao/DB, ``concern/icdar2015_eval/detection``,
reproduced here; a ``###`` word is a don't-care region):

1. A polygon (GT or detection) that shapely does not accept as valid and simple is
   dropped before anything else: it counts neither as a word nor as a detection.
   Polygons with fewer than three points are dropped the same way.
2. A detection is don't-care when ``area(GT ∩ det) / area(det) > 0.5`` for some
   don't-care GT (kept by rule 1).
3. ``IoU = area(GT ∩ det) / area(GT ∪ det)``. Matching is greedy in file order: each
   care GT takes the first unmatched care detection with ``IoU > 0.5``.
4. Per image: ``recall = matched / care GT``, ``precision = matched / care detections``;
   an image without care GT scores recall 1 and precision 1 (no care detection) or 0.
5. The data set figure pools the counts: ``sum(matched) / sum(care GT)`` and
   ``sum(matched) / sum(care detections)`` (``OFFICIAL = "micro"``).

Two implementations give the same counts:

* :func:`evaluate_image_reference`: every GT against every detection through shapely,
  exactly as written above;
* :func:`evaluate_image`: shapely only for the validity test and the areas; the
  intersection areas of pairs whose bounding boxes overlap come from a Numba
  Sutherland-Hodgman clip against the convex member of the pair (the pairs where neither
  polygon is convex go back to shapely), and the union is ``area(GT) + area(det) - inter``.
  Those areas differ from shapely's by float64 rounding only, so every ratio within
  ``1e-9`` of a threshold (a tie in exact arithmetic, common with axis-aligned or split
  boxes) is recomputed through shapely the way the reference computes it.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
import shapely
from numba import njit
from shapely.geometry import Polygon

from ..io.types import ImageWords, pack_polygons
from .base import ImageScore

__all__ = ["OFFICIAL", "IOU_THRESHOLD", "AREA_PRECISION_THRESHOLD", "evaluate_image",
           "evaluate_image_reference"]

OFFICIAL = "micro"
IOU_THRESHOLD = 0.5
AREA_PRECISION_THRESHOLD = 0.5
# Ratios this close to a threshold are recomputed through shapely exactly as the reference
# does, so that float64 rounding in the clipped areas never flips a decision.
_TIE_BAND = 1e-9


# ---------------------------------------------------------------------------------------
# Per-image figures (shared by both implementations)
# ---------------------------------------------------------------------------------------

def _image_score(matched: int, gt_care: int, det_care: int, gt_dont_care: int,
                 det_dont_care: int, gt_dropped: int, det_dropped: int) -> ImageScore:
    """Per-image recall, precision and H-Mean with the evaluator's empty-image rules."""
    if gt_care == 0:
        recall = 1.0
        precision = 0.0 if det_care > 0 else 1.0
    else:
        recall = float(matched) / gt_care
        precision = 0.0 if det_care == 0 else float(matched) / det_care
    hmean = 0.0 if precision + recall == 0 else 2.0 * precision * recall / (precision + recall)
    extra = {
        "matched": float(matched),
        "gt_care": float(gt_care),
        "det_care": float(det_care),
        "gt_dont_care": float(gt_dont_care),
        "det_dont_care": float(det_dont_care),
        "gt_invalid": float(gt_dropped),
        "det_invalid": float(det_dropped),
    }
    return ImageScore(recall, precision, hmean,
                      recall_num=float(matched), recall_den=float(gt_care),
                      precision_num=float(matched), precision_den=float(det_care),
                      extra=extra)


def _check_words(words: ImageWords, what: str) -> None:
    if not isinstance(words, ImageWords):
        raise ValueError(f"{what} must be an ImageWords, not {type(words).__name__}")


# ---------------------------------------------------------------------------------------
# Plain reference
# ---------------------------------------------------------------------------------------

def _accepted(poly: np.ndarray) -> bool:
    """Rule 1: shapely accepts the polygon as valid and simple."""
    if poly.shape[0] < 3:
        return False
    shape = Polygon(poly)
    return bool(shape.is_valid and shape.is_simple)


def evaluate_image_reference(gt: ImageWords, det: ImageWords) -> ImageScore:
    """Score one image with the IoU protocol, every pair through shapely.

    Parameters
    ----------
    gt, det : ImageWords
        Ground truth (``dont_care`` marks ``###`` words) and detections, in file order.

    Returns
    -------
    ImageScore
        ``recall_num = precision_num = matched``, ``recall_den`` = care GT,
        ``precision_den`` = care detections; ``extra`` holds every count.
    """
    _check_words(gt, "gt")
    _check_words(det, "det")
    gt_flags = gt.dont_care_flags
    gt_polys: List[np.ndarray] = []
    gt_dc: List[int] = []
    for poly, flag in zip(gt.polygons, gt_flags):
        if not _accepted(poly):
            continue
        gt_polys.append(poly)
        if flag:
            gt_dc.append(len(gt_polys) - 1)

    det_polys: List[np.ndarray] = []
    det_dc: List[int] = []
    for poly in det.polygons:
        if not _accepted(poly):
            continue
        det_polys.append(poly)
        shape = Polygon(poly)
        for g in gt_dc:
            inter = Polygon(gt_polys[g]).intersection(shape).area
            area = shape.area
            ratio = 0.0 if area == 0 else inter / area
            if ratio > AREA_PRECISION_THRESHOLD:
                det_dc.append(len(det_polys) - 1)
                break

    matched = 0
    if gt_polys and det_polys:
        iou = np.empty((len(gt_polys), len(det_polys)))
        for i, pg in enumerate(gt_polys):
            for j, pd in enumerate(det_polys):
                a, b = Polygon(pd), Polygon(pg)
                iou[i, j] = a.intersection(b).area / a.union(b).area
        gt_taken = np.zeros(len(gt_polys), bool)
        det_taken = np.zeros(len(det_polys), bool)
        for i in range(len(gt_polys)):
            for j in range(len(det_polys)):
                if (not gt_taken[i] and not det_taken[j] and i not in gt_dc
                        and j not in det_dc and iou[i, j] > IOU_THRESHOLD):
                    gt_taken[i] = det_taken[j] = True
                    matched += 1

    return _image_score(matched, len(gt_polys) - len(gt_dc), len(det_polys) - len(det_dc),
                        len(gt_dc), len(det_dc), len(gt) - len(gt_polys),
                        len(det) - len(det_polys))


# ---------------------------------------------------------------------------------------
# Fast path
# ---------------------------------------------------------------------------------------

def _accepted_mask(polys: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """Rule 1 for a list of polygons, vectorised per vertex count.

    Returns
    -------
    ok : ndarray of bool
        Valid and simple according to shapely (False for fewer than 3 points).
    areas : ndarray of float64
        shapely areas (0 where ``ok`` is False).
    """
    n = len(polys)
    ok = np.zeros(n, dtype=bool)
    areas = np.zeros(n, dtype=np.float64)
    by_k = {}
    for i, p in enumerate(polys):
        if p.shape[0] >= 3:
            by_k.setdefault(p.shape[0], []).append(i)
    for idx in by_k.values():
        geoms = shapely.polygons(np.stack([polys[i] for i in idx]))
        good = shapely.is_valid(geoms) & shapely.is_simple(geoms)
        ok[idx] = good
        areas[idx] = np.where(good, shapely.area(geoms), 0.0)
    return ok, areas


@njit(cache=True)
def _signed_area(xy: np.ndarray) -> float:
    """Signed shoelace area of a closed ring (positive when counter-clockwise in x-right, y-up)."""
    n = xy.shape[0]
    s = 0.0
    for i in range(n):
        j = i + 1 if i + 1 < n else 0
        s += xy[i, 0] * xy[j, 1] - xy[j, 0] * xy[i, 1]
    return 0.5 * s


@njit(cache=True)
def _is_convex(xy: np.ndarray) -> bool:
    """True when every turn of the (simple) ring has the same sign; straight turns allowed."""
    n = xy.shape[0]
    sign = 0
    for i in range(n):
        a = xy[i]
        b = xy[(i + 1) % n]
        c = xy[(i + 2) % n]
        cr = (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0])
        if cr > 0.0:
            if sign < 0:
                return False
            sign = 1
        elif cr < 0.0:
            if sign > 0:
                return False
            sign = -1
    return True


@njit(cache=True)
def _clip_area(subject: np.ndarray, clip: np.ndarray) -> float:
    """Area of ``subject ∩ clip`` for a simple ``subject`` and a convex ``clip``.

    Sutherland-Hodgman: the subject ring is cut by each edge's half-plane of the convex
    ring in turn. The result may carry zero-width bridges when the subject is concave;
    its signed shoelace area is still the area of the intersection.
    """
    orient = 1.0 if _signed_area(clip) > 0.0 else -1.0
    cur = subject.copy()
    m = clip.shape[0]
    for e in range(m):
        n = cur.shape[0]
        if n == 0:
            return 0.0
        ax, ay = clip[e, 0], clip[e, 1]
        bx, by = clip[(e + 1) % m, 0], clip[(e + 1) % m, 1]
        ex, ey = bx - ax, by - ay
        out = np.empty((2 * n + 2, 2))
        k = 0
        for i in range(n):
            sx, sy = cur[i - 1, 0], cur[i - 1, 1]
            px, py = cur[i, 0], cur[i, 1]
            s_side = orient * (ex * (sy - ay) - ey * (sx - ax))
            p_side = orient * (ex * (py - ay) - ey * (px - ax))
            if p_side >= 0.0:
                if s_side < 0.0:
                    t = s_side / (s_side - p_side)
                    out[k, 0] = sx + t * (px - sx)
                    out[k, 1] = sy + t * (py - sy)
                    k += 1
                out[k, 0] = px
                out[k, 1] = py
                k += 1
            elif s_side >= 0.0:
                if s_side > 0.0:
                    t = s_side / (s_side - p_side)
                    out[k, 0] = sx + t * (px - sx)
                    out[k, 1] = sy + t * (py - sy)
                    k += 1
        cur = out[:k]
    if cur.shape[0] < 3:
        return 0.0
    return abs(_signed_area(cur))


@njit(cache=True)
def _intersections(gxy: np.ndarray, gstart: np.ndarray, dxy: np.ndarray,
                   dstart: np.ndarray) -> np.ndarray:
    """Intersection areas of every GT/detection pair whose bounding boxes overlap.

    Returns an ``(n_gt, n_det)`` float64 matrix: 0 where the boxes do not overlap with a
    positive width and height, the clipped area where one of the two polygons is convex,
    and NaN where neither is (those pairs are left to shapely).
    """
    ng = gstart.shape[0] - 1
    nd = dstart.shape[0] - 1
    gb = np.empty((ng, 4))
    dbx = np.empty((nd, 4))
    gconv = np.empty(ng, np.bool_)
    dconv = np.empty(nd, np.bool_)
    for i in range(ng):
        p = gxy[gstart[i]:gstart[i + 1]]
        gb[i, 0] = p[:, 0].min()
        gb[i, 1] = p[:, 1].min()
        gb[i, 2] = p[:, 0].max()
        gb[i, 3] = p[:, 1].max()
        gconv[i] = _is_convex(p)
    for j in range(nd):
        p = dxy[dstart[j]:dstart[j + 1]]
        dbx[j, 0] = p[:, 0].min()
        dbx[j, 1] = p[:, 1].min()
        dbx[j, 2] = p[:, 0].max()
        dbx[j, 3] = p[:, 1].max()
        dconv[j] = _is_convex(p)
    out = np.zeros((ng, nd))
    for i in range(ng):
        for j in range(nd):
            if (min(gb[i, 2], dbx[j, 2]) <= max(gb[i, 0], dbx[j, 0])
                    or min(gb[i, 3], dbx[j, 3]) <= max(gb[i, 1], dbx[j, 1])):
                continue
            g = gxy[gstart[i]:gstart[i + 1]]
            d = dxy[dstart[j]:dstart[j + 1]]
            if gconv[i] and (not dconv[j] or g.shape[0] <= d.shape[0]):
                out[i, j] = _clip_area(d, g)
            elif dconv[j]:
                out[i, j] = _clip_area(g, d)
            else:
                out[i, j] = np.nan
    return out


@njit(cache=True)
def _greedy_match(iou: np.ndarray, gcare: np.ndarray, dcare: np.ndarray,
                  threshold: float) -> int:
    """Greedy one-to-one matching in file order: each care GT takes the first unmatched
    care detection with ``iou > threshold`` (the evaluator's double loop)."""
    ng, nd = iou.shape
    taken = np.zeros(nd, np.bool_)
    matched = 0
    for i in range(ng):
        if not gcare[i]:
            continue
        for j in range(nd):
            if not taken[j] and dcare[j] and iou[i, j] > threshold:
                taken[j] = True
                matched += 1
                break
    return matched


def evaluate_image(gt: ImageWords, det: ImageWords) -> ImageScore:
    """Score one image with the IoU protocol (fast path, same counts as the reference).

    Parameters
    ----------
    gt, det : ImageWords
        Ground truth (``dont_care`` marks ``###`` words) and detections, in file order.

    Returns
    -------
    ImageScore
        See :func:`evaluate_image_reference`.
    """
    _check_words(gt, "gt")
    _check_words(det, "det")
    g_ok, g_area_all = _accepted_mask(gt.polygons)
    d_ok, d_area_all = _accepted_mask(det.polygons)
    gt_polys = [p for p, ok in zip(gt.polygons, g_ok) if ok]
    det_polys = [p for p, ok in zip(det.polygons, d_ok) if ok]
    g_dc = gt.dont_care_flags[g_ok]
    g_area = g_area_all[g_ok]
    d_area = d_area_all[d_ok]
    ng, nd = len(gt_polys), len(det_polys)

    gxy, gstart = pack_polygons(gt_polys)
    dxy, dstart = pack_polygons(det_polys)
    inter = _intersections(gxy, gstart, dxy, dstart)
    todo = np.argwhere(np.isnan(inter))
    if len(todo):
        # pairs of two non-convex polygons: GEOS overlay, as in the reference
        ga = np.array([Polygon(gt_polys[i]) for i in todo[:, 0]], dtype=object)
        da = np.array([Polygon(det_polys[j]) for j in todo[:, 1]], dtype=object)
        inter[todo[:, 0], todo[:, 1]] = shapely.area(shapely.intersection(ga, da))

    # Rule 2: a detection mostly inside a don't-care GT is itself don't-care.
    d_dc = np.zeros(nd, dtype=bool)
    if g_dc.any() and nd:
        dc_rows = np.flatnonzero(g_dc)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(d_area > 0, inter[dc_rows] / d_area, 0.0)
        for r, j in np.argwhere(np.abs(ratio - AREA_PRECISION_THRESHOLD) <= _TIE_BAND):
            det_shape = Polygon(det_polys[j])
            inter_exact = Polygon(gt_polys[dc_rows[r]]).intersection(det_shape).area
            ratio[r, j] = 0.0 if det_shape.area == 0 else inter_exact / det_shape.area
        d_dc = (ratio > AREA_PRECISION_THRESHOLD).any(axis=0)

    matched = 0
    if ng and nd:
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter / (g_area[:, None] + d_area[None, :] - inter)
        for i, j in np.argwhere(np.abs(iou - IOU_THRESHOLD) <= _TIE_BAND):
            a, b = Polygon(det_polys[j]), Polygon(gt_polys[i])
            iou[i, j] = a.intersection(b).area / a.union(b).area
        matched = int(_greedy_match(iou, ~g_dc, ~d_dc, IOU_THRESHOLD))
    n_gdc = int(g_dc.sum())
    n_ddc = int(d_dc.sum())
    return _image_score(matched, ng - n_gdc, nd - n_ddc, n_gdc, n_ddc,
                        len(gt) - ng, len(det) - nd)
