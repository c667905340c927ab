"""CLEval detection as the PyPI ``cleval`` 0.1.1 package computes it (QUAD boxes).

This profile reproduces the detection score of the published package (clovaai/CLEval,
"much faster version" of 2023), which differs from the competition's modified copy
(:mod:`unclip_tuner.metrics.cleval_reference`):

Boxes and geometry
    Every word is a quadrilateral (exactly 4 points; anything else is refused). Areas,
    intersections and point containment use the points truncated with ``int()`` and the
    Polygon3/GPC semantics of :mod:`unclip_tuner.metrics.geometry` (absolute shoelace area,
    even-odd intersections, half-open ``isInside``). Aspect ratios and character centres
    use the points as given.
Aspect ratio
    ``ar = (mean(top, bottom) + 1e-5) / (mean(right, left) + 1e-5)`` from the four side
    lengths (top = p0p1, right = p1p2, bottom = p2p3, left = p3p0).
Characters
    A GT word has ``len(transcription)`` characters (a transcription wrapped in double
    quotes is unwrapped first, ``\\"`` and ``\\\\`` unescaped, as the ICDAR reader of the
    package does). A ``###`` word is don't-care and counts
    ``min(round(0.5 + max(ar, 1/ar)), 10)`` characters. Character centres are spaced
    evenly on the segment from the middle of the left side to the middle of the right
    side (for ``ar < 0.5`` the quad is read rotated: p3 is the top-left corner), the
    ``i``-th at ``p + u/2 + u*i`` with ``u`` the segment over the character count.
Don't-care
    Each don't-care GT loses the area of every cared GT overlapping it (subtracted in file
    order). A detection is don't-care when its area precision with a don't-care GT is
    ``>= 0.3``, or when its area precisions with the don't-care GTs that have a character
    centre inside it sum to ``>= 0.3`` (summed in float64, in the iteration order of the
    package's Python set of don't-care indices: NumPy 1.x promotes ``0 + float32``).
Matching
    ``ap = float32(area(GT ∩ det) / area(det))`` (0 when the detection has no area); a pair
    is a candidate when ``ap >= 0.3`` and the detection holds one of the GT's character
    centres. One-to-one: the only candidate of each other, counted over ALL words
    including don't-care ones. One-to-many (split): a cared GT with two or more cared
    candidate detections. Many-to-one (merge): a cared detection holding centres of two or
    more cared GTs whose area precisions sum (float64) to ``>= 0.3``.
Counts
    ``tp`` = distinct character centres inside a matched detection of their GT;
    ``num_char_det`` = centre inclusions over matched pairs (a centre in two matched
    detections counts twice, ``num_char_overlapped`` once) + false-positive characters
    ``min(round(0.5 + 1/(1e-5 + ar)), 10)`` per unmatched cared detection; granularity
    penalties ``n - 1`` per split (recall) and per merge (precision). No limit on the
    number of detections.
Scores
    ``recall = max(0, tp - gran_recall) / num_char_gt``, ``precision = max(0, tp -
    gran_precision) / num_char_det``; the data set figure pools the counts of all images
    first (``OFFICIAL = "micro"``): ``recall_num = tp - gran_recall`` and ``precision_num
    = tp - gran_precision`` are summed by :func:`~unclip_tuner.metrics.base.aggregate`.
    (The package clamps the pooled numerators at 0; they are negative only when the
    penalties exceed every true positive of the data set.)

Ground truth read without transcriptions (a UFO JSON without text, for instance) counts
the don't-care formula's ``min(round(0.5 + max(ar, 1/ar)), 10)`` characters per word;
the package itself requires transcriptions.

:func:`evaluate_image_reference` follows these rules literally with
:mod:`unclip_tuner.metrics.geometry_reference`; :func:`evaluate_image` computes the same
numbers with a Numba kernel over the pairs whose bounding boxes overlap.
"""

from __future__ import annotations

import re
from typing import List, Sequence, Tuple

import numpy as np
from numba import njit

from ..io.types import ImageWords
from . import geometry as G
from . import geometry_reference as R
from .base import ImageScore

__all__ = ["OFFICIAL", "AREA_PRECISION_CONSTRAINT", "VERTICAL_ASPECT_RATIO_THRESH",
           "MAX_PSEUDO_CHARS", "evaluate_image", "evaluate_image_reference",
           "quad_aspect_ratio", "gt_transcription", "character_centres"]

OFFICIAL = "micro"
AREA_PRECISION_CONSTRAINT = 0.3
VERTICAL_ASPECT_RATIO_THRESH = 0.5
MAX_PSEUDO_CHARS = 10
DONT_CARE = "###"
_EPS = 1e-5
_QUOTED = re.compile(r'^\s*"(.*)"\s*$')
# float32(0.3) is the smallest float32 >= 0.3: "float32 ap >= 0.3" is the same test in
# float32 and in float64.
_AP_MIN32 = np.float32(AREA_PRECISION_CONSTRAINT)


# ---------------------------------------------------------------------------------------
# Word preparation (shared)
# ---------------------------------------------------------------------------------------

def _quads(words: ImageWords, what: str) -> np.ndarray:
    """The words' points as an ``(n, 4, 2)`` float64 array; refuses anything but quads."""
    if not isinstance(words, ImageWords):
        raise ValueError(f"{what} must be an ImageWords, not {type(words).__name__}")
    if not words.polygons:
        return np.zeros((0, 4, 2), dtype=np.float64)
    for i, p in enumerate(words.polygons):
        if p.shape != (4, 2):
            raise ValueError(f"cleval-upstream scores quadrilaterals: {what} word {i} has "
                             f"{p.shape[0]} points, expected 4")
    quads = np.stack(words.polygons).astype(np.float64)
    bad = ~np.isfinite(quads).all(axis=(1, 2))
    if bad.any():
        raise ValueError(f"{what} word {int(np.flatnonzero(bad)[0])} has NaN or infinite "
                         "coordinates")
    return quads


def quad_aspect_ratio(quads: np.ndarray) -> np.ndarray:
    """``(mean(top, bottom) + 1e-5) / (mean(right, left) + 1e-5)`` per quad, float64.

    Parameters
    ----------
    quads : ndarray, shape (n, 4, 2)

    Returns
    -------
    ndarray of float64, shape (n,)
    """
    def side(a: int, b: int) -> np.ndarray:
        dx = np.abs(quads[:, a, 0] - quads[:, b, 0])
        dy = np.abs(quads[:, a, 1] - quads[:, b, 1])
        return np.sqrt(dx * dx + dy * dy)

    hor = (side(0, 1) + side(2, 3)) / 2
    ver = (side(1, 2) + side(3, 0)) / 2
    return (hor + _EPS) / (ver + _EPS)


def _pseudo_length(ar: float) -> int:
    """Characters of a don't-care word: ``min(round(0.5 + max(ar, 1/ar)), 10)``."""
    return min(round(0.5 + max(ar, 1.0 / ar)), MAX_PSEUDO_CHARS)


def _fp_chars(ar: float) -> int:
    """False-positive characters of an unmatched detection.

    ``min(round(0.5 + 1/(1e-5 + ar)), 10)`` (Python ``round``: half to even).
    """
    return min(round(0.5 + 1.0 / (_EPS + ar)), MAX_PSEUDO_CHARS)


def gt_transcription(text: str) -> str:
    """The transcription as the package reads it: ``"..."`` unwrapped and unescaped."""
    m = _QUOTED.match(text)
    if m is not None:
        return m.group(1).replace("\\\\", "\\").replace('\\"', '"')
    return text


def _gt_words(gt: ImageWords, ar: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Don't-care flags and character counts of the GT words."""
    n = len(gt)
    dc = gt.dont_care_flags.copy()
    lengths = np.zeros(n, dtype=np.int64)
    for i in range(n):
        text = None if gt.texts is None else gt_transcription(gt.texts[i])
        if text == DONT_CARE:
            dc[i] = True
        if dc[i] or text is None:
            lengths[i] = _pseudo_length(float(ar[i]))
        else:
            lengths[i] = len(text)
    return dc, lengths


def character_centres(quad: np.ndarray, n_chars: int, ar: float) -> np.ndarray:
    """Pseudo character centres of one GT quad, ``(n_chars, 2)`` float64.

    Parameters
    ----------
    quad : ndarray, shape (4, 2)
        The points as given (not truncated).
    n_chars : int
    ar : float
        :func:`quad_aspect_ratio` of the quad.
    """
    if n_chars == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if ar >= VERTICAL_ASPECT_RATIO_THRESH:
        lt, rt, rb, lb = quad[0], quad[1], quad[2], quad[3]
    else:
        lt, rt, rb, lb = quad[3], quad[0], quad[1], quad[2]
    p1x, p1y = (lt[0] + lb[0]) / 2, (lt[1] + lb[1]) / 2
    p2x, p2y = (rt[0] + rb[0]) / 2, (rt[1] + rb[1]) / 2
    ux = (p2x - p1x) / n_chars
    uy = (p2y - p1y) / n_chars
    i = np.arange(n_chars, dtype=np.float64)
    return np.stack([p1x + ux / 2 + ux * i, p1y + uy / 2 + uy * i], axis=1)


def _all_centres(quads: np.ndarray, n_chars: np.ndarray, ar: np.ndarray) -> np.ndarray:
    """:func:`character_centres` of every quad at once, concatenated (same float operations)."""
    owner = np.repeat(np.arange(len(quads)), n_chars)
    if owner.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    upright = ar >= VERTICAL_ASPECT_RATIO_THRESH
    corners = np.where(upright[:, None, None], quads, quads[:, [3, 0, 1, 2]])
    lt, rt, rb, lb = corners[:, 0], corners[:, 1], corners[:, 2], corners[:, 3]
    p1 = (lt + lb) / 2
    p2 = (rt + rb) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (p2 - p1) / n_chars[:, None]
    starts = np.cumsum(n_chars) - n_chars
    i = (np.arange(owner.size) - starts[owner]).astype(np.float64)[:, None]
    return p1[owner] + u[owner] / 2 + u[owner] * i


def _set_order(indices: Sequence[int]) -> List[int]:
    """Iteration order of the package's Python set built by adding ``indices`` in turn.

    The package sums float area precisions while iterating such sets; reproducing the
    order reproduces the rounding of those sums.
    """
    s = set()
    for i in indices:
        s.add(int(i))
    return list(s)


def _valid_order(n: int, dc_order: Sequence[int]) -> List[int]:
    """Iteration order of ``set(range(n)) - dont_care_set`` (cared words)."""
    return list(set(range(n)) - set(dc_order))


def _image_score(tp: int, gran_r: float, gran_p: float, n_gt: int, n_det: int, fp: int,
                 merged: int, splitted: int, overlapped: int) -> ImageScore:
    """Per-image figures and the counts pooled by :func:`~.base.aggregate`."""
    recall = 0.0 if n_gt == 0 else max(0.0, tp - gran_r) / n_gt
    precision = 0.0 if n_det == 0 else max(0.0, tp - gran_p) / n_det
    hmean = 0.0 if recall + precision == 0 else (2 * recall * precision) / (recall + precision)
    extra = {
        "num_char_gt": float(n_gt), "num_char_det": float(n_det), "tp": float(tp),
        "fp": float(fp), "gran_score_recall": float(gran_r),
        "gran_score_precision": float(gran_p), "num_merged": float(merged),
        "num_splitted": float(splitted), "num_char_overlapped": float(overlapped),
    }
    return ImageScore(recall, precision, hmean,
                      recall_num=float(tp - gran_r), recall_den=float(n_gt),
                      precision_num=float(tp - gran_p), precision_den=float(n_det),
                      extra=extra)


# ---------------------------------------------------------------------------------------
# Plain reference
# ---------------------------------------------------------------------------------------

def evaluate_image_reference(gt: ImageWords, det: ImageWords) -> ImageScore:
    """Score one image with the package's detection rules, literally, pair by pair.

    Parameters
    ----------
    gt : ImageWords
        Quadrilateral ground truth with transcriptions (``###`` or ``dont_care`` marks
        don't-care words).
    det : ImageWords
        Quadrilateral detections (transcriptions ignored).

    Returns
    -------
    ImageScore
        ``extra`` holds the package's counts (``num_char_gt``, ``num_char_det``, ``tp``,
        ``fp``, ``gran_score_recall``, ``gran_score_precision``, ``num_merged``,
        ``num_splitted``, ``num_char_overlapped``).
    """
    gq = _quads(gt, "gt")
    dq = _quads(det, "det")
    ng, nd = len(gq), len(dq)
    g_ar = quad_aspect_ratio(gq)
    d_ar = quad_aspect_ratio(dq)
    g_dc, g_len = _gt_words(gt, g_ar)
    g_int = [np.trunc(q) for q in gq]
    d_int = [np.trunc(q) for q in dq]
    centres = [character_centres(gq[i], int(g_len[i]), float(g_ar[i])) for i in range(ng)]

    dc_order = _set_order(np.flatnonzero(g_dc))
    valid_gt = _valid_order(ng, dc_order)

    # don't-care regions lose the cared words overlapping them, in file order
    holes = {}
    for g in dc_order:
        holes[g] = []
        for i in range(ng):
            if g_dc[i]:
                continue
            if R.difference_intersection_area(g_int[i], g_int[g], holes[g]) > 0:
                holes[g].append(g_int[i])

    def boxes_overlap(a: np.ndarray, b: np.ndarray) -> bool:
        # quads whose bounding boxes share no area (apart or touching) share no area
        return bool(min(a[:, 0].max(), b[:, 0].max()) > max(a[:, 0].min(), b[:, 0].min())
                    and min(a[:, 1].max(), b[:, 1].max()) > max(a[:, 1].min(), b[:, 1].min()))

    ap = np.zeros((ng, nd), dtype=np.float32)
    for g in range(ng):
        for d in range(nd):
            if not boxes_overlap(g_int[g], d_int[d]):
                continue
            if g_dc[g]:
                inter = R.difference_intersection_area(d_int[d], g_int[g], holes[g])
            else:
                inter = R.intersection_area(g_int[g], d_int[d])
            det_area = R.polygon_area(d_int[d])
            if det_area > 0.0:
                ap[g, d] = inter / det_area
    binary = ap >= AREA_PRECISION_CONSTRAINT

    inside = [np.zeros((nd, len(centres[g])), dtype=bool) for g in range(ng)]
    for d in range(nd):
        # a point outside the half-open bounding box [min, max) is never inside
        (x0, y0), (x1, y1) = d_int[d].min(axis=0), d_int[d].max(axis=0)
        for g in range(ng):
            for k, (x, y) in enumerate(centres[g]):
                if x0 <= x < x1 and y0 <= y < y1:
                    inside[g][d, k] = R.point_inside(d_int[d], x, y)
    count = np.array([[int(inside[g][d].sum()) for d in range(nd)] for g in range(ng)],
                     dtype=np.int64).reshape(ng, nd)

    # don't-care detections
    dc_det = set()
    if dc_order:
        for d in range(nd):
            ap_sum = 0.0
            for g in dc_order:
                if binary[g, d]:
                    dc_det.add(d)
                    break
                if count[g, d] > 0:
                    ap_sum += float(ap[g, d])
            if ap_sum >= AREA_PRECISION_CONSTRAINT:
                dc_det.add(d)
    valid_det = _valid_order(nd, _set_order(sorted(dc_det)))
    valid_det_set = set(valid_det)

    def candidate(g: int, d: int) -> bool:
        return bool(binary[g, d]) and count[g, d] > 0

    # one-to-one: the candidates are counted over all words, don't-care ones included
    per_gt = [sum(candidate(g, j) for j in range(nd)) for g in range(ng)]
    per_det = [sum(candidate(i, d) for i in range(ng)) for d in range(nd)]
    match = np.zeros((ng, nd), dtype=bool)
    for g in valid_gt:
        for d in valid_det:
            if candidate(g, d) and per_gt[g] == 1 and per_det[d] == 1:
                match[g, d] = True
    for g in valid_gt:                       # one-to-many
        dets = [d for d in valid_det if candidate(g, d)]
        if len(dets) >= 2:
            match[g, dets] = True
    for d in valid_det:                      # many-to-one
        gts = [g for g in valid_gt if count[g, d] > 0]
        total = 0.0
        for g in gts:
            total += float(ap[g, d])
        if len(gts) >= 2 and total >= AREA_PRECISION_CONSTRAINT:
            match[gts, d] = True

    tp = overlapped = merged = splitted = fp = 0
    gran_p = gran_r = 0.0
    n_det_chars = 0
    checked = [np.zeros(len(c), dtype=bool) for c in centres]
    for d in range(nd):
        gts = np.flatnonzero(match[:, d])
        if d not in valid_det_set:
            continue
        if len(gts) == 0:
            fp += _fp_chars(float(d_ar[d]))
            continue
        merged += len(gts) > 1
        gran_p += len(gts) - 1
        for g in gts:
            for k in np.flatnonzero(inside[g][d]):
                n_det_chars += 1
                if checked[g][k]:
                    overlapped += 1
                else:
                    checked[g][k] = True
                    tp += 1
    for g in valid_gt:
        dets = np.flatnonzero(match[g])
        if len(dets) > 0:
            splitted += len(dets) > 1
            gran_r += len(dets) - 1
    n_gt_chars = int(sum(g_len[g] for g in valid_gt))
    return _image_score(tp, gran_r, gran_p, n_gt_chars, n_det_chars + fp, fp, merged,
                        splitted, overlapped)


# ---------------------------------------------------------------------------------------
# Fast path
# ---------------------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _pair_kernel(gx, gy, dx, dy, g_dc, hxs, hys, hoffs, hole_lo, hole_hi, cx, cy, coffs):
    """Area precisions and character-centre inclusions of every GT/detection pair.

    Reproduces ``ap = float32((GT & det).area() / det.area())`` (Polygon3: even-odd
    intersection, absolute shoelace area, don't-care GTs with the cared words subtracted)
    and ``det.isInside(cx, cy)`` (half-open crossing number), through
    :mod:`unclip_tuner.metrics.geometry`. Pairs whose bounding boxes do not overlap with a
    positive width and height have no intersection; a centre outside the detection's
    half-open bounding box is never inside.

    Returns
    -------
    ap : (n_gt, n_det) float32
    count : (n_gt, n_det) int64, centres of the GT inside the detection
    inside : (n_det, n_centres) bool
    """
    ng = gx.shape[0]
    nd = dx.shape[0]
    nk = cx.shape[0]
    ap = np.zeros((ng, nd), np.float32)
    count = np.zeros((ng, nd), np.int64)
    inside = np.zeros((nd, nk), np.bool_)
    gbox = np.empty((ng, 4))
    for g in range(ng):
        gbox[g, 0], gbox[g, 1], gbox[g, 2], gbox[g, 3] = G.bbox(gx[g], gy[g])
    for d in range(nd):
        xs = dx[d]
        ys = dy[d]
        x0, y0, x1, y1 = G.bbox(xs, ys)
        det_area = G.area_abs(xs, ys)
        for g in range(ng):
            if (det_area > 0.0 and min(x1, gbox[g, 2]) > max(x0, gbox[g, 0])
                    and min(y1, gbox[g, 3]) > max(y0, gbox[g, 1])):
                if g_dc[g]:
                    lo = hole_lo[g]
                    hi = hole_hi[g]
                    offs = hoffs[lo:hi + 1] - hoffs[lo]
                    inter = G.difference_intersection_area(
                        xs, ys, gx[g], gy[g], hxs[hoffs[lo]:hoffs[hi]],
                        hys[hoffs[lo]:hoffs[hi]], offs)
                else:
                    inter = G.intersection_area(gx[g], gy[g], xs, ys)
                ap[g, d] = np.float32(inter / det_area)
            for k in range(coffs[g], coffs[g + 1]):
                px = cx[k]
                py = cy[k]
                if x0 <= px and px < x1 and y0 <= py and py < y1:
                    if G.point_inside(xs, ys, px, py):
                        inside[d, k] = True
                        count[g, d] += 1
    return ap, count, inside


def _holes(g_int: np.ndarray, g_dc: np.ndarray, dc_order: Sequence[int]):
    """The cared words each don't-care GT loses, packed for the kernel.

    A cared word is subtracted when it still overlaps (positive area) what is left of the
    don't-care region, words taken in file order.

    Returns ``hxs, hys, hoffs, hole_lo, hole_hi``: the rings of GT ``g``'s holes are
    ``hoffs[hole_lo[g]:hole_hi[g] + 1]`` into ``hxs``/``hys``.
    """
    ng = len(g_int)
    rings: List[np.ndarray] = []
    hole_lo = np.zeros(ng, dtype=np.int64)
    hole_hi = np.zeros(ng, dtype=np.int64)
    boxes = np.concatenate([g_int.min(axis=1), g_int.max(axis=1)], axis=1) if ng else None
    for g in dc_order:
        hole_lo[g] = len(rings)
        mine: List[np.ndarray] = []
        for i in range(ng):
            if g_dc[i]:
                continue
            if not (min(boxes[i, 2], boxes[g, 2]) > max(boxes[i, 0], boxes[g, 0])
                    and min(boxes[i, 3], boxes[g, 3]) > max(boxes[i, 1], boxes[g, 1])):
                continue
            if G.difference_intersection_area_np(g_int[i], g_int[g], mine) > 0:
                mine.append(g_int[i])
        rings.extend(mine)
        hole_hi[g] = len(rings)
    hoffs = np.zeros(len(rings) + 1, dtype=np.int64)
    if rings:
        hoffs[1:] = np.cumsum([len(r) for r in rings])
        flat = np.concatenate(rings)
        hxs = np.ascontiguousarray(flat[:, 0])
        hys = np.ascontiguousarray(flat[:, 1])
    else:
        hxs = np.zeros(0)
        hys = np.zeros(0)
    return hxs, hys, hoffs, hole_lo, hole_hi


def _ordered_sum(values: np.ndarray) -> float:
    """Left-to-right float64 sum (the package's loop), independent of Python's ``sum``."""
    total = 0.0
    for v in values.tolist():
        total += v
    return total


def evaluate_image(gt: ImageWords, det: ImageWords) -> ImageScore:
    """Score one image with the package's detection rules (fast path).

    Same inputs, outputs and numbers as :func:`evaluate_image_reference`.
    """
    gq = _quads(gt, "gt")
    dq = _quads(det, "det")
    ng, nd = len(gq), len(dq)
    g_ar = quad_aspect_ratio(gq)
    d_ar = quad_aspect_ratio(dq)
    g_dc, g_len = _gt_words(gt, g_ar)
    g_int = np.trunc(gq)
    d_int = np.trunc(dq)

    coffs = np.zeros(ng + 1, dtype=np.int64)
    coffs[1:] = np.cumsum(g_len)
    cc = _all_centres(gq, g_len, g_ar)
    owner = np.repeat(np.arange(ng), g_len)

    dc_order = _set_order(np.flatnonzero(g_dc))
    valid_gt_order = _valid_order(ng, dc_order)
    hxs, hys, hoffs, hole_lo, hole_hi = _holes(g_int, g_dc, dc_order)

    ap, count, inside = _pair_kernel(
        np.ascontiguousarray(g_int[:, :, 0]), np.ascontiguousarray(g_int[:, :, 1]),
        np.ascontiguousarray(d_int[:, :, 0]), np.ascontiguousarray(d_int[:, :, 1]),
        g_dc, hxs, hys, hoffs, hole_lo, hole_hi,
        np.ascontiguousarray(cc[:, 0]), np.ascontiguousarray(cc[:, 1]), coffs)
    binary = ap >= _AP_MIN32
    has = count > 0
    cand = binary & has

    # don't-care detections
    d_dc = np.zeros(nd, dtype=bool)
    if dc_order:
        dco = np.array(dc_order, dtype=np.int64)
        d_dc = binary[dco].any(axis=0)
        for d in np.flatnonzero(~d_dc & has[dco].any(axis=0)):
            rows = dco[has[dco, d]]
            d_dc[d] = _ordered_sum(ap[rows, d].astype(np.float64)) >= AREA_PRECISION_CONSTRAINT
    g_valid = ~g_dc
    d_valid = ~d_dc

    # one-to-one: counted over all words, don't-care ones included
    match = (cand & (cand.sum(axis=1) == 1)[:, None] & (cand.sum(axis=0) == 1)[None, :]
             & g_valid[:, None] & d_valid[None, :])
    # one-to-many
    split = cand & d_valid[None, :] & g_valid[:, None]
    match |= split & (split.sum(axis=1) >= 2)[:, None]
    # many-to-one
    merge = has & g_valid[:, None] & d_valid[None, :]
    gv = np.array(valid_gt_order, dtype=np.int64)
    for d in np.flatnonzero(merge.sum(axis=0) >= 2):
        rows = gv[merge[gv, d]]
        if _ordered_sum(ap[rows, d].astype(np.float64)) >= AREA_PRECISION_CONSTRAINT:
            match[rows, d] = True

    # counts
    pair_in = inside.T & match[owner]          # (n_centres, n_det)
    n_incl = int(pair_in.sum())
    tp = int(pair_in.any(axis=1).sum())
    per_det = match.sum(axis=0)
    per_gt = match.sum(axis=1)
    unmatched = d_valid & (per_det == 0)
    fp = int(sum(_fp_chars(float(a)) for a in d_ar[unmatched]))
    gran_p = float(np.maximum(per_det - 1, 0).sum())
    gran_r = float(np.maximum(per_gt - 1, 0).sum())
    n_gt_chars = int(g_len[g_valid].sum())
    return _image_score(tp, gran_r, gran_p, n_gt_chars, n_incl + fp, fp,
                        int((per_det > 1).sum()), int((per_gt > 1).sum()), n_incl - tp)
