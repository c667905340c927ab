"""The reference DB post-processing path: the baseline's ``DBPostProcessor``, step by step.

This module is the plain, readable statement of what the tuned object does; the fast path
(:mod:`.fast`) must give identical polygons, in the same order, with identical scores. It
reproduces the baseline decoder (REFERENCE section 3) as it ran in its pinned environment
(numpy 1.26.2, opencv-python 4.8.1.78, shapely 2.0.2, pyclipper 1.3.0.post5), whatever
versions are installed:

1. ``bitmap = prob > float32(thresh)`` (optionally dilated by a 2x2 square, the PaddleOCR
   option, off in the baseline);
2. ``cv2.findContours(bitmap * 255, RETR_LIST, CHAIN_APPROX_SIMPLE)``: every border,
   hole borders included, in OpenCV's order; only the first ``max_candidates`` are looked
   at, before any filtering;
3. polygon mode: Douglas-Peucker with ``epsilon = 0.002 * arcLength``; fewer than 4
   points -> skip; box score; ``box_thresh > score`` -> skip; unclip with the polygon
   ratio; nothing -> skip; short side of the unclipped polygon's minimum-area rectangle
   ``< min_size + 2`` -> skip; the output is the unclipped polygon;
4. box mode: minimum-area rectangle of the contour, corners ordered as the baseline does;
   short side ``< min_size`` -> skip; box score on the float corners; ``box_thresh >
   score`` -> skip; unclip with the box ratio; minimum-area rectangle of the result; short
   side ``< min_size + 2`` -> skip; the output is that rectangle's corners;
5. the points are mapped through the inverse matrix in float64, rounded half to even
   (``np.round``) and cast to int16.

Library calls are used where their results do not depend on the installed version
(checked against opencv-python 4.8.1 and 5.0 on thousands of real and synthetic
contours): ``cv2.findContours``, ``cv2.arcLength``, shapely's area and length, pyclipper.
Where OpenCV changed its results after 4.8.1, the 4.8.1 algorithm is carried here in plain
Python and tested against 4.8.1 itself:

* ``cv2.approxPolyDP`` (5.0 measures the distance to the *segment* instead of the line,
  which changes about 1 in 3000 contours),
* ``cv2.minAreaRect`` / ``cv2.boxPoints`` (5.0 reports a different angle convention and
  rounds the corners differently),
* ``cv2.fillPoly`` (see :mod:`.raster`).

Deviations from the baseline, on inputs where the baseline crashes: an unclip that
returns no path is skipped (the baseline raises ``IndexError``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields as dc_fields
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from ..io.types import pack_polygons
from .params import PostProcessParams
from .offset_reference import unclip_reference
from .raster import box_score_fast_reference, box_score_slow_reference

__all__ = [
    "approx_poly_dp",
    "convex_hull",
    "min_area_rect",
    "box_points",
    "get_mini_boxes",
    "binarize",
    "dilate_2x2",
    "find_contours",
    "unclip_reference",
    "map_to_image",
    "decode_reference_network",
    "decode_reference",
    "DecodeStats",
]

F32 = np.float32

# ======================================================================================
# Pinned OpenCV 4.8.1 geometry
# ======================================================================================


def approx_poly_dp(curve, epsilon: float, closed: bool = True) -> np.ndarray:
    """``cv2.approxPolyDP(curve, epsilon, closed)`` of OpenCV 4.8.1 on integer points.

    Douglas-Peucker as OpenCV 4.8.1 runs it: for a closed curve, the split starts from
    the (approximately) farthest pair found by three rounds of "farthest point from the
    current start"; a slice is kept as one segment when the largest *perpendicular
    distance to the line* through its end points is at most ``epsilon`` (compared as
    ``max_dist**2 <= eps**2 * len**2``; the first maximum wins); slices are processed
    depth first (left half first). A final pass drops vertices lying almost on the line
    between their neighbours (``dist**2 <= 0.5 * eps**2 * len**2``, both ``dx`` and ``dy``
    non-zero, and the vertex between them).

    Parameters
    ----------
    curve : array_like of int, shape (n, 2) or (n, 1, 2)
    epsilon : float
        Maximum distance, >= 0.
    closed : bool

    Returns
    -------
    ndarray of int32, shape (m, 2)
    """
    src = np.asarray(curve).reshape(-1, 2)
    if not np.issubdtype(src.dtype, np.integer):
        raise ValueError("approx_poly_dp takes integer points (the contour of a bitmap)")
    if not (epsilon >= 0.0 and epsilon < 1e30):
        raise ValueError(f"epsilon must be in [0, 1e30), got {epsilon}")
    pts = [(int(x), int(y)) for x, y in src]
    count = len(pts)
    if count == 0:
        return np.zeros((0, 2), dtype=np.int32)

    eps = float(epsilon) * float(epsilon)
    dst: List[Tuple[int, int]] = []
    stack: List[Tuple[int, int]] = []
    is_closed = bool(closed)
    init_iters = 3
    pos = 0
    right_start = 0
    start_pt = (-1000000, -1000000)

    if not is_closed:
        right_start = count
        end_pt, start_pt = pts[0], pts[count - 1]
        if start_pt != end_pt:
            stack.append((0, count - 1))
        else:
            is_closed = True
            init_iters = 1

    if is_closed:
        # 1. approximately the two farthest points of the contour
        right_start = 0
        le_eps = False
        for _ in range(init_iters):
            pos = (pos + right_start) % count
            start_pt = pts[pos]
            pos = (pos + 1) % count
            max_dist = 0.0
            for j in range(1, count):
                pt = pts[pos]
                pos = (pos + 1) % count
                dx, dy = float(pt[0] - start_pt[0]), float(pt[1] - start_pt[1])
                dist = dx * dx + dy * dy
                if dist > max_dist:
                    max_dist = dist
                    right_start = j
            le_eps = max_dist <= eps
        # 2. initialise the stack with the two halves
        if not le_eps:
            first = pos % count
            second = (right_start + first) % count
            stack.append((second, first))  # right slice, processed last
            stack.append((first, second))
        else:
            dst.append(start_pt)

    # 3. depth-first splitting
    while stack:
        s_start, s_end = stack.pop()
        end_pt = pts[s_end]
        pos = s_start
        start_pt = pts[pos]
        pos = (pos + 1) % count
        if pos != s_end:
            dx = float(end_pt[0] - start_pt[0])
            dy = float(end_pt[1] - start_pt[1])
            if dx == 0 and dy == 0:
                raise ValueError("approx_poly_dp: a slice has coincident end points")
            max_dist = 0.0
            split = s_start
            while pos != s_end:
                pt = pts[pos]
                pos = (pos + 1) % count
                dist = abs((pt[1] - start_pt[1]) * dx - (pt[0] - start_pt[0]) * dy)
                if dist > max_dist:
                    max_dist = dist
                    split = (pos + count - 1) % count
            le_eps = max_dist * max_dist <= eps * (dx * dx + dy * dy)
        else:
            le_eps = True
        if le_eps:
            dst.append(start_pt)
        else:
            stack.append((split, s_end))
            stack.append((s_start, split))

    if not is_closed:
        dst.append(pts[count - 1])

    # 4. clean-up: drop vertices lying almost on the line through their neighbours
    is_closed = bool(closed)
    count = len(dst)
    new_count = count
    out = list(dst)
    pos = count - 1 if is_closed else 0
    start_pt = out[pos]
    pos = (pos + 1) % count
    wpos = pos
    pt = out[pos]
    pos = (pos + 1) % count
    i = 0 if is_closed else 1
    while i < count - (0 if is_closed else 1) and new_count > 2:
        end_pt = out[pos]
        pos = (pos + 1) % count
        dx = end_pt[0] - start_pt[0]
        dy = end_pt[1] - start_pt[1]
        dist = abs(float(pt[0] - start_pt[0]) * dy - float(pt[1] - start_pt[1]) * dx)
        inner = (pt[0] - start_pt[0]) * (end_pt[0] - pt[0]) + (pt[1] - start_pt[1]) * (end_pt[1] - pt[1])
        if dist * dist <= 0.5 * eps * float(dx * dx + dy * dy) and dx != 0 and dy != 0 and inner >= 0:
            new_count -= 1
            out[wpos] = start_pt = end_pt
            wpos = (wpos + 1) % count
            pt = out[pos]
            pos = (pos + 1) % count
            i += 2
            continue
        out[wpos] = start_pt = pt
        wpos = (wpos + 1) % count
        pt = end_pt
        i += 1
    if not is_closed:
        out[wpos] = pt
    return np.array(out[:new_count], dtype=np.int32).reshape(-1, 2)


def _sklansky(pts: List[Tuple[int, int]], order: List[int], start: int, end: int, nsign: int, sign2: int) -> List[int]:
    """One quarter of OpenCV's Sklansky convex hull scan (integer points).

    ``order`` is the point order sorted by (x, y, index); ``start``/``end`` index into it.
    Returns the stack of indices into ``order``, as ``Sklansky_`` leaves it.
    """
    incr = 1 if end > start else -1
    pprev, pcur, pnext = start, start + incr, start + 2 * incr
    p = lambda k: pts[order[k]]  # noqa: E731
    if start == end or p(start) == p(end):
        return [start]
    stack = [pprev, pcur, pnext]
    end += incr
    while pnext != end:
        # (OpenCV 4.8.1 has no special case for repeated points here; later versions do)
        cury, nexty = p(pcur)[1], p(pnext)[1]
        by = nexty - cury
        if (by > 0) - (by < 0) != nsign:
            ax, ay = p(pcur)[0] - p(pprev)[0], cury - p(pprev)[1]
            bx = p(pnext)[0] - p(pcur)[0]
            convexity = ay * bx - ax * by  # > 0: convex angle
            if (convexity > 0) - (convexity < 0) == sign2 and (ax != 0 or ay != 0):
                pprev, pcur = pcur, pnext
                pnext += incr
                stack.append(pnext)
            elif pprev == start:
                pcur = pnext
                stack[1] = pcur
                pnext += incr
                stack[2] = pnext
            else:
                stack[-2] = pnext
                pcur = pprev
                pprev = stack[-4]
                stack.pop()
        else:
            pnext += incr
            stack[-1] = pnext
    return stack[:-1]


def convex_hull(points, clockwise: bool = False) -> np.ndarray:
    """``cv2.convexHull(points, clockwise=clockwise)`` of OpenCV 4.8.1 on integer points.

    Sklansky's scan over the points sorted by (x, y, input index): the half hull through
    the point of largest y (from the first and from the last sorted point), then the half
    through the point of smallest y, concatenated in the requested orientation; then the
    output is rotated cyclically so that the input indices ascend or descend when they
    can. The vertex order matters: it decides which of several equal-area rectangles
    :func:`min_area_rect` reports.

    Returns
    -------
    ndarray of int64, shape (h, 2)
    """
    src = np.asarray(points).reshape(-1, 2)
    if not np.issubdtype(src.dtype, np.integer):
        raise ValueError("convex_hull takes integer points")
    pts = [(int(x), int(y)) for x, y in src]
    total = len(pts)
    if total == 0:
        return np.zeros((0, 2), dtype=np.int64)
    order = sorted(range(total), key=lambda i: (pts[i][0], pts[i][1], i))
    miny = maxy = 0
    for i in range(1, total):
        y = pts[order[i]][1]
        if pts[order[miny]][1] > y:
            miny = i
        if pts[order[maxy]][1] < y:
            maxy = i

    hull: List[int] = []
    if pts[order[0]] == pts[order[total - 1]]:
        hull.append(order[0])
    else:
        # half through the largest y: the left stack, then the right stack reversed
        tl = _sklansky(pts, order, 0, maxy, -1, 1)
        tr = _sklansky(pts, order, total - 1, maxy, -1, -1)
        if not clockwise:
            tl, tr = tr, tl
        hull += [order[k] for k in tl[:-1]]
        hull += [order[tr[k]] for k in range(len(tr) - 1, 0, -1)]
        stop = tr[1] if len(tr) > 2 else (tl[-2] if len(tl) > 2 else -1)
        # lower half
        bl = _sklansky(pts, order, 0, miny, 1, -1)
        br = _sklansky(pts, order, total - 1, miny, 1, 1)
        if clockwise:
            bl, br = br, bl
        if stop >= 0:
            if len(bl) > 2:
                check = bl[1]
            elif len(bl) + len(br) > 2:
                check = br[2 - len(bl)]
            else:
                check = -1
            if check == stop or (check >= 0 and pts[order[check]] == pts[order[stop]]):
                # all points on one line: the lower hull mirrors the upper one
                bl, br = bl[:2], br[:2]
        hull += [order[k] for k in bl[:-1]]
        hull += [order[br[k]] for k in range(len(br) - 1, 0, -1)]

        # make the input indices ascend or descend by a cyclic shift, when possible
        nout = len(hull)
        if nout >= 3:
            min_i = max_i = 0
            lt = 0
            for i in range(1, nout):
                idx = hull[i]
                lt += hull[i - 1] < idx
                if lt > 1 and lt <= i - 2:
                    break
                if idx < hull[min_i]:
                    min_i = i
                if idx > hull[max_i]:
                    max_i = i
            mmdist = abs(max_i - min_i)
            if (mmdist == 1 or mmdist == nout - 1) and (lt <= 1 or lt >= nout - 2):
                ascending = (max_i + 1) % nout == min_i
                i0 = min_i if ascending else max_i
                if i0 > 0:
                    rotated = []
                    j = i0
                    ok = True
                    for i in range(nout):
                        cur = hull[j]
                        nj = j + 1 if j + 1 < nout else 0
                        rotated.append(cur)
                        if i < nout - 1 and ascending != (cur < hull[nj]):
                            ok = False
                            break
                        j = nj
                    if ok:
                        hull = rotated
    return np.array([pts[i] for i in hull], dtype=np.int64).reshape(-1, 2)


def _rotating_calipers_min_area(h: List[Tuple[np.float32, np.float32]]):
    """OpenCV 4.8.1 ``rotatingCalipers(..., CALIPERS_MINAREARECT)`` in float32 arithmetic.

    Returns the corner, the two side vectors (all float32) as OpenCV's ``out[0..2]``.
    """
    n = len(h)
    vect = []
    inv_len = []
    left = bottom = right = top = 0
    left_x = right_x = h[0][0]
    top_y = bottom_y = h[0][1]
    pt0 = h[0]
    for i in range(n):
        if pt0[0] < left_x:
            left_x, left = pt0[0], i
        if pt0[0] > right_x:
            right_x, right = pt0[0], i
        if pt0[1] > top_y:
            top_y, top = pt0[1], i
        if pt0[1] < bottom_y:
            bottom_y, bottom = pt0[1], i
        pt = h[i + 1 if i + 1 < n else 0]
        dx = float(F32(pt[0] - pt0[0]))  # float subtraction, widened to double
        dy = float(F32(pt[1] - pt0[1]))
        vect.append((F32(dx), F32(dy)))
        sq = dx * dx + dy * dy
        inv_len.append(F32(1.0 / math.sqrt(sq)) if sq > 0 else F32(np.inf))  # 1./sqrt(0.) is +inf in C
        pt0 = pt

    orientation = F32(0)
    ax, ay = float(vect[n - 1][0]), float(vect[n - 1][1])
    for i in range(n):
        bx, by = float(vect[i][0]), float(vect[i][1])
        convexity = ax * by - ay * bx
        if convexity != 0:
            orientation = F32(1) if convexity > 0 else F32(-1)
            break
        ax, ay = bx, by
    if orientation == 0:
        raise ValueError("min_area_rect: degenerate convex hull")
    base_a, base_b = orientation, F32(0)
    seq = [bottom, right, top, left]
    minarea = F32(np.finfo(np.float32).max)
    best = None
    for _ in range(n):
        # the caliper side whose next hull edge turns least: the edge vectors brought to a
        # common frame (rotated by 0, -90, 180, +90 degrees), and the rightmost one wins
        v0, v1, v2, v3 = vect[seq[0]], vect[seq[1]], vect[seq[2]], vect[seq[3]]
        rot = [v0, (v1[1], -v1[0]), (-v2[0], -v2[1]), (-v3[1], v3[0])]
        main = 0
        for k in range(1, 4):
            # firstVecIsRight(rot[k], rot[main]): rotate rot[k] by -90 degrees, dot < 0
            if rot[k][1] * rot[main][0] + (-rot[k][0]) * rot[main][1] < 0:
                main = k
        pidx = seq[main]
        lead_x = vect[pidx][0] * inv_len[pidx]
        lead_y = vect[pidx][1] * inv_len[pidx]
        if main == 0:
            base_a, base_b = lead_x, lead_y
        elif main == 1:
            base_a, base_b = lead_y, -lead_x
        elif main == 2:
            base_a, base_b = -lead_x, -lead_y
        else:
            base_a, base_b = -lead_y, lead_x
        seq[main] = (seq[main] + 1) % n
        dx = h[seq[1]][0] - h[seq[3]][0]
        dy = h[seq[1]][1] - h[seq[3]][1]
        width = dx * base_a + dy * base_b
        dx = h[seq[2]][0] - h[seq[0]][0]
        dy = h[seq[2]][1] - h[seq[0]][1]
        height = -dx * base_b + dy * base_a
        area = width * height
        if area <= minarea:
            minarea = area
            best = (seq[3], base_a, width, base_b, height, seq[0])

    left_i, a1, width, b1, height, bottom_i = best
    a2, b2 = -b1, a1
    c1 = a1 * h[left_i][0] + h[left_i][1] * b1
    c2 = a2 * h[bottom_i][0] + h[bottom_i][1] * b2
    idet = F32(1) / (a1 * b2 - a2 * b1)
    px = (c1 * b2 - c2 * b1) * idet
    py = (a1 * c2 - a2 * c1) * idet
    return (px, py), (a1 * width, b1 * width), (a2 * height, b2 * height)


def min_area_rect(points) -> Tuple[Tuple[float, float], Tuple[float, float], float]:
    """``cv2.minAreaRect(points)`` of OpenCV 4.8.1 on integer points.

    Counter-clockwise convex hull (:func:`convex_hull`), converted to float32, then
    rotating calipers in float32 arithmetic (at each step the caliper whose next hull edge
    makes the smallest turn advances, decided by the sign of a float32 dot product; the
    last rectangle of minimal area wins); ``width`` is the length
    of the first side vector, ``angle`` its direction in degrees (``atan2`` in double,
    stored as float32), as OpenCV 4.8.1 reports them.

    Returns
    -------
    ((cx, cy), (width, height), angle)
        Python floats holding float32 values, like ``cv2.minAreaRect``.
    """
    hull = convex_hull(points)
    n = len(hull)
    hp = [(F32(x), F32(y)) for x, y in hull]
    cx = cy = w = hgt = ang = F32(0)
    if n > 2:
        corner, v1, v2 = _rotating_calipers_min_area(hp)
        cx = corner[0] + (v1[0] + v2[0]) * F32(0.5)
        cy = corner[1] + (v1[1] + v2[1]) * F32(0.5)
        w = F32(math.sqrt(float(v1[0]) * float(v1[0]) + float(v1[1]) * float(v1[1])))
        hgt = F32(math.sqrt(float(v2[0]) * float(v2[0]) + float(v2[1]) * float(v2[1])))
        ang = F32(math.atan2(float(v1[1]), float(v1[0])))
    elif n == 2:
        cx = (hp[0][0] + hp[1][0]) * F32(0.5)
        cy = (hp[0][1] + hp[1][1]) * F32(0.5)
        dx = float(hp[1][0] - hp[0][0])
        dy = float(hp[1][1] - hp[0][1])
        w = F32(math.sqrt(dx * dx + dy * dy))
        ang = F32(math.atan2(dy, dx))
    elif n == 1:
        cx, cy = hp[0]
    # (float)(angle * 180 / CV_PI): the product by 180 is a float32 product
    ang = F32(float(ang * F32(180)) / math.pi)
    return (float(cx), float(cy)), (float(w), float(hgt)), float(ang)


def box_points(rect) -> np.ndarray:
    """``cv2.boxPoints(rect)`` of OpenCV 4.8.1: the 4 corners in float32 arithmetic.

    ``RotatedRect::points``: with ``b = cos(angle) / 2`` and ``a = sin(angle) / 2`` (the
    trigonometry in double, then float32), ``p0 = c - a*h - b*w`` along x and
    ``c + b*h - a*w`` along y, ``p1 = c + a*h - b*w`` / ``c - b*h - a*w``, ``p2 = 2c - p0``,
    ``p3 = 2c - p1``.
    """
    (cx, cy), (w, h), angle = rect
    cx, cy, w, h = F32(cx), F32(cy), F32(w), F32(h)
    rad = float(F32(angle)) * math.pi / 180.0
    b = F32(math.cos(rad)) * F32(0.5)
    a = F32(math.sin(rad)) * F32(0.5)
    p0x = cx - a * h - b * w
    p0y = cy + b * h - a * w
    p1x = cx + a * h - b * w
    p1y = cy - b * h - a * w
    two = F32(2)
    return np.array(
        [[p0x, p0y], [p1x, p1y], [two * cx - p0x, two * cy - p0y], [two * cx - p1x, two * cy - p1y]],
        dtype=np.float32,
    )


def get_mini_boxes(points) -> Tuple[np.ndarray, float]:
    """The baseline's ``get_mini_boxes``: ordered rectangle corners and the short side.

    The corners of the minimum-area rectangle (:func:`box_points`) are sorted by x with a
    stable sort. Of the two leftmost, the first becomes the top-left when the second has a
    strictly larger y, otherwise the second does; the two rightmost likewise give the
    top-right. The result is ``[TL, TR, BR, BL]``.

    Returns
    -------
    box : ndarray of float32, shape (4, 2)
    short_side : float
        ``min(width, height)`` of the rectangle.
    """
    rect = min_area_rect(points)
    corners = box_points(rect)
    pts = sorted(list(corners), key=lambda p: p[0])
    if pts[1][1] > pts[0][1]:
        i1, i4 = 0, 1
    else:
        i1, i4 = 1, 0
    if pts[3][1] > pts[2][1]:
        i2, i3 = 2, 3
    else:
        i2, i3 = 3, 2
    box = np.array([pts[i1], pts[i2], pts[i3], pts[i4]], dtype=np.float32)
    return box, min(rect[1])


# ======================================================================================
# Bitmap, contours, unclip, mapping
# ======================================================================================


def _check_prob(prob) -> np.ndarray:
    """Validate a probability map; return it as a C-contiguous float32 array."""
    arr = np.asarray(prob)
    if arr.ndim != 2:
        raise ValueError(f"prob must be a 2-D (H, W) map, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"prob must be a floating-point map, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.size and not np.isfinite(arr).all():
        raise ValueError("prob contains NaN or infinite values")
    return arr


def _check_matrix(matrix) -> np.ndarray:
    m = np.asarray(matrix)
    if m.shape != (3, 3):
        raise ValueError(f"inverse_matrix must be a (3, 3) matrix, got shape {m.shape}")
    if not (np.issubdtype(m.dtype, np.floating) or np.issubdtype(m.dtype, np.integer)):
        raise ValueError(f"inverse_matrix must be numeric, got dtype {m.dtype}")
    m = m.astype(np.float64)
    if not np.isfinite(m).all():
        raise ValueError("inverse_matrix contains NaN or infinite values")
    return m


def binarize(prob: np.ndarray, thresh: float) -> np.ndarray:
    """``prob > thresh`` compared in float32 (the baseline's threshold is a float32 tensor)."""
    return prob > np.float32(thresh)


def dilate_2x2(bitmap: np.ndarray) -> np.ndarray:
    """``cv2.dilate(bitmap, ones((2, 2)))``: a pixel is set when it or its left, upper or
    upper-left neighbour is set (the kernel's anchor is its lower-right cell; outside the
    map counts as unset). PaddleOCR's ``use_dilation`` option."""
    out = bitmap.copy()
    out[1:, :] |= bitmap[:-1, :]
    out[:, 1:] |= bitmap[:, :-1]
    out[1:, 1:] |= bitmap[:-1, :-1]
    return out


def find_contours(bitmap: np.ndarray) -> List[np.ndarray]:
    """``cv2.findContours(bitmap * 255, RETR_LIST, CHAIN_APPROX_SIMPLE)`` as ``(n, 2)`` int32.

    Outer borders and hole borders alike, in OpenCV's order (identical in OpenCV 4.8.1
    and 5.0).
    """
    img = np.ascontiguousarray(bitmap, dtype=np.uint8) * np.uint8(255)
    return [c.reshape(-1, 2) for c in _opencv_contours(img)]


def find_contours_packed(image: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`find_contours` of a uint8 image (non-zero = set), packed for the kernels.

    Returns
    -------
    points : int64 (N, 2)
        Every contour's points, in OpenCV's contour order.
    offsets : int64 (n + 1,)
        Contour ``i`` is ``points[offsets[i]:offsets[i + 1]]``.
    """
    return pack_polygons(_opencv_contours(image), dtype=np.int64)


def _opencv_contours(image: np.ndarray):
    contours, _ = cv2.findContours(image, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    return contours


def map_to_image(points, matrix: np.ndarray) -> np.ndarray:
    """Map network-space points to image space as the baseline does; int16 output.

    ``matrix @ [x; y; 1]`` with ``np.dot`` in float64 (the points, int64 or float32, are
    promoted to float64 by the stacking with a float64 row of ones), divided by the third
    row, rounded half to even (``np.round``), cast to int16 (wrapping like numpy's cast).
    """
    pts = np.asarray(points).reshape(-1, 2)
    m = np.asarray(matrix, dtype=np.float64)
    stacked = np.vstack([pts.T.astype(np.float64), np.ones(pts.shape[0])])
    coords = np.dot(m, stacked)
    coords /= coords[2, :]
    return np.round(coords.T[:, :2]).astype(np.int16)


# ======================================================================================
# Decoding
# ======================================================================================


@dataclass
class DecodeStats:
    """Counters of one or more decodes: how many candidates each filter removed."""

    contours: int = 0  #: contours found
    considered: int = 0  #: contours looked at (after the max_candidates cut)
    too_few_points: int = 0  #: polygon mode: fewer than 4 points after approximation
    too_small: int = 0  #: box mode: rectangle short side < min_size
    low_score: int = 0  #: box_thresh > score
    unclip_failed: int = 0  #: zero area/length, or empty offset
    too_small_unclipped: int = 0  #: unclipped rectangle short side < min_size + 2
    kept: int = 0  #: detections output

    def as_dict(self) -> Dict[str, int]:
        return {f.name: getattr(self, f.name) for f in dc_fields(self)}


def _score(prob: np.ndarray, points, contour: np.ndarray, params: PostProcessParams) -> float:
    if params.score_mode == "slow":
        return box_score_slow_reference(prob, contour)
    return box_score_fast_reference(prob, points)


def decode_reference_network(
    prob,
    params: PostProcessParams,
    stats: Optional[DecodeStats] = None,
    with_index: bool = False,
) -> List[tuple]:
    """Decode a probability map into network-space polygons, as the baseline does.

    Parameters
    ----------
    prob : ndarray, shape (H, W)
        Probability map (cast to float32); NaN or infinite values are an error.
    params : PostProcessParams
    stats : DecodeStats, optional
        Incremented in place.
    with_index : bool
        Also return the index of each detection's contour in :func:`find_contours`' list.

    Returns
    -------
    list of (points, score) or (points, score, contour_index)
        In contour order. Polygon mode: the unclipped polygon, int64 ``(k, 2)``; box mode:
        the rectangle corners ``[TL, TR, BR, BL]``, float32 ``(4, 2)``. ``score`` is the box
        score (a Python float).
    """
    if not isinstance(params, PostProcessParams):
        raise ValueError(f"params must be a PostProcessParams, got {type(params).__name__}")
    pred = _check_prob(prob)
    st = stats if stats is not None else DecodeStats()
    if pred.size == 0:
        return []
    bitmap = binarize(pred, params.thresh)
    if params.use_dilation:
        bitmap = dilate_2x2(bitmap)
    contours = find_contours(bitmap)
    st.contours += len(contours)
    out: List[tuple] = []
    min_size = params.min_size
    for index, contour in enumerate(contours[: params.max_candidates]):
        st.considered += 1
        if params.use_polygon:
            epsilon = 0.002 * cv2.arcLength(contour.reshape(-1, 1, 2), True)
            points = approx_poly_dp(contour, epsilon, True)
            if points.shape[0] < 4:
                st.too_few_points += 1
                continue
            score = _score(pred, points, contour, params)
            if params.box_thresh > score:
                st.low_score += 1
                continue
            box = unclip_reference(points, params.polygon_unclip_ratio)
            if box is None:
                st.unclip_failed += 1
                continue
            _, sside = get_mini_boxes(box)
            if sside < min_size + 2:
                st.too_small_unclipped += 1
                continue
        else:
            points, sside = get_mini_boxes(contour)
            if sside < min_size:
                st.too_small += 1
                continue
            score = _score(pred, points, contour, params)
            if params.box_thresh > score:
                st.low_score += 1
                continue
            expanded = unclip_reference(points, params.box_unclip_ratio)
            if expanded is None:
                st.unclip_failed += 1
                continue
            box, sside = get_mini_boxes(expanded)
            if sside < min_size + 2:
                st.too_small_unclipped += 1
                continue
        st.kept += 1
        out.append((box, float(score), index) if with_index else (box, float(score)))
    return out


def decode_reference(
    prob,
    inverse_matrix,
    params: PostProcessParams,
    stats: Optional[DecodeStats] = None,
) -> List[Tuple[np.ndarray, float]]:
    """Decode a probability map into image-space detections, as the baseline does.

    Parameters
    ----------
    prob : ndarray, shape (H, W)
        Network-space probability map (padding included).
    inverse_matrix : ndarray, shape (3, 3)
        Network-to-image matrix (the baseline's, float64).
    params : PostProcessParams
    stats : DecodeStats, optional

    Returns
    -------
    list of (points, score)
        ``points`` int16 ``(k, 2)`` in image pixels (not clipped to the image), in the
        baseline's order; ``score`` a Python float.
    """
    m = _check_matrix(inverse_matrix)
    dets = decode_reference_network(prob, params, stats)
    return [(map_to_image(p, m), s) for p, s in dets]
