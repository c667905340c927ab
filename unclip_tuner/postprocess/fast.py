"""Numba kernels of the fast decode path, one per stage of :mod:`.engine`.

Each kernel reproduces a step of the reference path (:mod:`.reference`), which itself
reproduces the baseline's ``DBPostProcessor`` in its pinned environment:

* :func:`approx_poly_dp` — OpenCV 4.8.1 ``approxPolyDP`` on integer contours
  (the reference's :func:`.reference.approx_poly_dp`, same integer/float arithmetic);
* :func:`box_score_fast` / :func:`box_score_slow` (from :mod:`.raster`) — the 4.8.1
  ``fillPoly`` rasteriser and ``cv2.mean``;
* :func:`unclip_distance` / :func:`offset_polygon` (from :mod:`.offset`) — shapely's
  distance and Clipper's round offset with its union clean-up;
* :func:`short_side` and :func:`.rect_kernels.get_mini_boxes_nb` — OpenCV 4.8.1
  ``minAreaRect`` / ``boxPoints`` and the baseline's corner ordering, bit-exact;
* :func:`map_points` — ``np.round(M @ [x; y; 1])`` then ``astype(int16)``.

Where the offset kernel cannot guarantee Clipper's exact result it says so, and the
Python driver below runs pyclipper for that candidate and counts it as a fallback, so every
output is the reference's.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
from numba import njit

from .offset import OFFSET_EMPTY, OFFSET_OK, offset_polygon, unclip_distance
from .params import PostProcessParams
from .raster import box_score_fast, box_score_slow
from .rect_kernels import get_mini_boxes_nb, min_area_rect_nb

# status codes of the unclip stage, per candidate
KEEP = 0
DROP = 1
FALLBACK_OFFSET = 2


# ------------------------------------------------------------------------------------
# approxPolyDP (OpenCV 4.8.1)
# ------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def approx_poly_dp(px, py, epsilon):
    """OpenCV 4.8.1 ``approxPolyDP(contour, epsilon, closed=True)`` on integer points.

    The Numba twin of :func:`unclip_tuner.postprocess.reference.approx_poly_dp` (closed
    curves only): the split starts from the approximately farthest pair found by three
    rounds of "farthest point from the current start"; a slice becomes one segment when
    the largest perpendicular distance to the line through its ends is at most
    ``epsilon`` (first maximum wins; compared squared); slices are processed depth first;
    then a pass drops vertices lying almost on the line between their neighbours.

    Parameters
    ----------
    px, py : ndarray of int64
        Contour points (``findContours`` output), at least one.
    epsilon : float
        Maximum distance (>= 0).

    Returns
    -------
    ndarray of int64, shape (m, 2)
    """
    count = px.shape[0]
    eps = epsilon * epsilon
    dst_x = np.empty(count + 1, np.int64)
    dst_y = np.empty(count + 1, np.int64)
    nd = 0
    stack_a = np.empty(2 * count + 4, np.int64)
    stack_b = np.empty(2 * count + 4, np.int64)
    ns = 0

    right_start = 0
    pos = 0
    sx = np.int64(0)
    sy = np.int64(0)
    le_eps = False
    for _ in range(3):
        pos = (pos + right_start) % count
        sx = px[pos]
        sy = py[pos]
        pos = (pos + 1) % count
        max_dist = 0.0
        for j in range(1, count):
            dx = float(px[pos] - sx)
            dy = float(py[pos] - sy)
            pos = (pos + 1) % count
            dist = dx * dx + dy * dy
            if dist > max_dist:
                max_dist = dist
                right_start = j
        le_eps = max_dist <= eps
    if not le_eps:
        first = pos % count
        second = (right_start + first) % count
        stack_a[ns] = second
        stack_b[ns] = first
        ns += 1
        stack_a[ns] = first
        stack_b[ns] = second
        ns += 1
    else:
        dst_x[nd] = sx
        dst_y[nd] = sy
        nd += 1

    while ns > 0:
        ns -= 1
        s_start = stack_a[ns]
        s_end = stack_b[ns]
        ex = px[s_end]
        ey = py[s_end]
        pos = s_start
        sx = px[pos]
        sy = py[pos]
        pos = (pos + 1) % count
        split = s_start
        if pos != s_end:
            dx = float(ex - sx)
            dy = float(ey - sy)
            max_dist = 0.0
            while pos != s_end:
                qx = px[pos]
                qy = py[pos]
                pos = (pos + 1) % count
                dist = abs(float(qy - sy) * dx - float(qx - sx) * dy)
                if dist > max_dist:
                    max_dist = dist
                    split = (pos + count - 1) % count
            le_eps = max_dist * max_dist <= eps * (dx * dx + dy * dy)
        else:
            le_eps = True
        if le_eps:
            dst_x[nd] = sx
            dst_y[nd] = sy
            nd += 1
        else:
            stack_a[ns] = split
            stack_b[ns] = s_end
            ns += 1
            stack_a[ns] = s_start
            stack_b[ns] = split
            ns += 1

    # clean-up pass: drop vertices lying almost on the line through their neighbours
    count = nd
    new_count = count
    ox = dst_x[:count].copy()
    oy = dst_y[:count].copy()
    pos = count - 1
    stx = ox[pos]
    sty = oy[pos]
    pos = (pos + 1) % count
    wpos = pos
    ptx = ox[pos]
    pty = oy[pos]
    pos = (pos + 1) % count
    i = 0
    while i < count and new_count > 2:
        enx = ox[pos]
        eny = oy[pos]
        pos = (pos + 1) % count
        dx = enx - stx
        dy = eny - sty
        dist = abs(float(ptx - stx) * dy - float(pty - sty) * dx)
        inner = (ptx - stx) * (enx - ptx) + (pty - sty) * (eny - pty)
        if dist * dist <= 0.5 * eps * float(dx * dx + dy * dy) and dx != 0 and dy != 0 and inner >= 0:
            new_count -= 1
            ox[wpos] = enx
            oy[wpos] = eny
            stx = enx
            sty = eny
            wpos = (wpos + 1) % count
            ptx = ox[pos]
            pty = oy[pos]
            pos = (pos + 1) % count
            i += 2
            continue
        ox[wpos] = ptx
        oy[wpos] = pty
        stx = ptx
        sty = pty
        wpos = (wpos + 1) % count
        ptx = enx
        pty = eny
        i += 1
    out = np.empty((new_count, 2), np.int64)
    for k in range(new_count):
        out[k, 0] = ox[k]
        out[k, 1] = oy[k]
    return out


# Pixels at or below this probability are never set by a threshold >= it: the engine
# thresholds and traces contours only inside the bounding box of the pixels above it (see
# :func:`text_window`). Far below any useful threshold; a lower one uses the whole map.
WINDOW_FLOOR = np.float32(0.05)


@njit(cache=True, nogil=True)
def text_window(prob, floor):
    """Bounding box of the pixels with ``prob > floor``, and whether every value is finite.

    Every bitmap ``prob > t`` with ``t >= floor`` (float32) is zero outside the box, so its
    contours are those of the bitmap cropped to the box, shifted by ``(x0, y0)``. One
    branch-free pass over the map (it also replaces a separate NaN/inf check).

    Returns
    -------
    window : int64 (4,)
        Half-open ``(y0, y1, x0, x1)``; all zeros when no pixel exceeds ``floor``.
    finite : bool
        No NaN or infinity in ``prob``.
    """
    h, w = prob.shape
    cols = np.zeros(w, np.uint8)
    y0 = -1
    y1 = 0
    bad = 0
    for i in range(h):
        row = prob[i]
        count = 0
        for j in range(w):
            v = row[j]
            above = np.uint8(v > floor)
            count += above
            cols[j] |= above
            bad |= np.uint8(not (abs(v) < np.inf))  # NaN and +-inf
        if count > 0:
            if y0 < 0:
                y0 = i
            y1 = i + 1
    out = np.zeros(4, np.int64)
    if y0 >= 0:
        x0 = 0
        while cols[x0] == 0:
            x0 += 1
        x1 = w
        while cols[x1 - 1] == 0:
            x1 -= 1
        out[0] = y0
        out[1] = y1
        out[2] = x0
        out[3] = x1
    return out, bad == 0


@njit(cache=True, nogil=True)
def threshold_u8(prob, thresh):
    """The bitmap ``prob > float32(thresh)`` as the uint8 0/255 image ``findContours`` reads.

    Parameters
    ----------
    prob : float32 (H, W)
    thresh : float32

    Returns
    -------
    uint8 (H, W)
    """
    return threshold_box(prob, thresh, 0, prob.shape[0], 0, prob.shape[1])


@njit(cache=True, nogil=True)
def threshold_box(prob, thresh, y0, y1, x0, x1):
    """:func:`threshold_u8` of the box ``prob[y0:y1, x0:x1]`` (read in place, row by row)."""
    out = np.empty((y1 - y0, x1 - x0), np.uint8)
    for i in range(y1 - y0):
        src = prob[y0 + i, x0:x1]
        dst = out[i]
        for j in range(src.shape[0]):  # indices from range(): the loop vectorises
            dst[j] = 255 if src[j] > thresh else 0
    return out


@njit(cache=True, nogil=True)
def arc_lengths(cxy, coffs):
    """OpenCV 4.8.1 ``arcLength(contour, closed=True)`` of every packed integer contour.

    As OpenCV: the points are converted to float32, each step's ``dx*dx + dy*dy`` and its
    square root are float32, and the lengths are summed in float64 starting with the
    closing edge (last point to first).

    Parameters
    ----------
    cxy : int64 (N, 2)
    coffs : int64 (n + 1,)

    Returns
    -------
    float64 (n,)
    """
    n = coffs.shape[0] - 1
    out = np.zeros(n, np.float64)
    for k in range(n):
        a = coffs[k]
        b = coffs[k + 1]
        if b - a <= 1:
            continue
        px = np.float32(cxy[b - 1, 0])
        py = np.float32(cxy[b - 1, 1])
        total = 0.0
        for i in range(a, b):
            x = np.float32(cxy[i, 0])
            y = np.float32(cxy[i, 1])
            dx = x - px
            dy = y - py
            total += np.float64(np.sqrt(dx * dx + dy * dy))
            px = x
            py = y
        out[k] = total
    return out


@njit(cache=True, nogil=True)
def polygon_candidates(prob, cxy, coffs, eps, slow):
    """Approximate every contour and score it (polygon mode, one image).

    Parameters
    ----------
    prob : float32 (H, W)
    cxy : int64 (N, 2)
        All contours' points, concatenated in OpenCV's order.
    coffs : int64 (n + 1,)
        Contour ``i`` is ``cxy[coffs[i]:coffs[i+1]]``.
    eps : float64 (n,)
        ``0.002 * arcLength`` per contour.
    slow : bool
        Score over the raw contour instead of the approximation.

    Returns
    -------
    points, offsets, contour_index, scores
        Candidates with at least 4 approximated points, in contour order; the points are
        int32 (the approximation's pixel coordinates, stored compactly for the memo).
    """
    n = coffs.shape[0] - 1
    pts = np.empty((cxy.shape[0], 2), np.int32)
    offs = np.zeros(n + 1, np.int64)
    idx = np.empty(n, np.int64)
    scores = np.empty(n, np.float64)
    k = 0
    m = 0
    for i in range(n):
        a = coffs[i]
        b = coffs[i + 1]
        ap = approx_poly_dp(cxy[a:b, 0].copy(), cxy[a:b, 1].copy(), eps[i])
        na = ap.shape[0]
        if na < 4:
            continue
        if slow:
            s = box_score_slow(prob, cxy[a:b])
        else:
            s = box_score_fast(prob, ap.astype(np.float64))
        pts[m:m + na] = ap
        m += na
        idx[k] = i
        scores[k] = s
        k += 1
        offs[k] = m
    return pts[:m], offs[:k + 1], idx[:k], scores[:k]


# ------------------------------------------------------------------------------------
# size filter and mapping
# ------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def short_side(xy):
    """``min(cv2.minAreaRect(xy)[1])`` of OpenCV 4.8.1, bit-exact (float32 calipers)."""
    _, _, w, h, _ = min_area_rect_nb(xy[:, 0].astype(np.int64), xy[:, 1].astype(np.int64))
    return h if h < w else w


@njit(cache=True, nogil=True)
def map_points(xy, m):
    """``np.round(M @ [x; y; 1] / w).astype(int16)`` per point, as the baseline maps.

    The products are accumulated in the order ``m[i,0]*x + m[i,1]*y + m[i,2]`` in float64;
    for the letterbox matrices of the seed (no shear or rotation terms) this equals the
    baseline's ``np.dot`` bit for bit. Rounding is half to even (``np.rint``), the int16
    cast wraps like numpy's.
    """
    n = xy.shape[0]
    out = np.empty((n, 2), np.int16)
    for i in range(n):
        x = float(xy[i, 0])
        y = float(xy[i, 1])
        w = m[2, 0] * x
        w += m[2, 1] * y
        w += m[2, 2]
        for c in range(2):
            v = m[c, 0] * x
            v += m[c, 1] * y
            v += m[c, 2]
            v = np.rint(v / w)
            iv = np.int64(v)
            out[i, c] = np.int16(((iv + 32768) & 0xFFFF) - 32768)
    return out


# _SKIP_NOTE: the size filter needs no rectangle when the offset distance is large. Every
# rectangle enclosing a polygon has a short side at least the polygon's minimum width, and
# the unclipped polygon is the Minkowski sum of the candidate with a disk of radius ``d``
# up to Clipper's approximations (chords within the 0.25 arc tolerance of the arc, vertices
# rounded to integers: under 1 pixel each side), so its minimum width is above ``2d - 2``.
# With ``d >= min_side / 2 + 2`` that is ``>= min_side + 2``: the filter keeps it.


@njit(cache=True, nogil=True)
def unclip_polygons(pts, offs, todo, ratio, matrix, min_side):
    """Unclip, size-filter and map the candidates ``todo`` of one image (polygon mode).

    Returns
    -------
    status : int64 (len(todo),)
        :data:`KEEP`, :data:`DROP` or :data:`FALLBACK_OFFSET`.
    out_xy : int16 (M, 2), out_offs : int64 (len(todo) + 1,)
        Image-space polygons of the kept candidates (empty slices for the others).
    """
    nt = todo.shape[0]
    status = np.empty(nt, np.int64)
    chunks = []
    out_offs = np.zeros(nt + 1, np.int64)
    total = 0
    for t in range(nt):
        c = todo[t]
        a = offs[c]
        b = offs[c + 1]
        xs = pts[a:b, 0].astype(np.float64)
        ys = pts[a:b, 1].astype(np.float64)
        d = unclip_distance(xs, ys, ratio)
        st = KEEP
        if np.isnan(d):
            st = DROP
        else:
            xi = xs.astype(np.int64)
            yi = ys.astype(np.int64)
            poly, ost = offset_polygon(xi, yi, d)
            if ost == OFFSET_EMPTY:
                st = DROP
            elif ost != OFFSET_OK:
                st = FALLBACK_OFFSET
            elif d < 0.5 * min_side + 2.0 and short_side(poly) < min_side:
                # (when d >= min_side / 2 + 2 the test cannot fail: see _SKIP_NOTE)
                st = DROP
            else:
                chunks.append(map_points(poly, matrix))
                total += poly.shape[0]
        status[t] = st
        out_offs[t + 1] = total
    out = np.empty((total, 2), np.int16)
    k = 0
    for ch in chunks:
        out[k:k + ch.shape[0]] = ch
        k += ch.shape[0]
    return status, out, out_offs


@njit(cache=True, nogil=True)
def box_candidates(prob, cxy, coffs, min_size, slow):
    """Minimum-area boxes of every contour, size-filtered and scored (box mode, one image).

    Per contour, as the baseline: ``get_mini_boxes`` (4.8.1 ``minAreaRect``, corners
    ordered TL, TR, BR, BL), drop when the short side ``< min_size``, then the box score
    on the float32 corners (or over the raw contour in slow mode).

    Returns
    -------
    points (4n, 2) float32 (the corners as the baseline has them), offsets (n+1,),
    contour_index (n,), scores (n,)
    """
    n = coffs.shape[0] - 1
    pts = np.empty((4 * n, 2), np.float32)
    idx = np.empty(n, np.int64)
    scores = np.empty(n, np.float64)
    k = 0
    for i in range(n):
        a = coffs[i]
        b = coffs[i + 1]
        box, sside = get_mini_boxes_nb(cxy[a:b, 0].copy(), cxy[a:b, 1].copy())
        if sside < min_size:
            continue
        if slow:
            s = box_score_slow(prob, cxy[a:b])
        else:
            s = box_score_fast(prob, box.astype(np.float64))
        pts[4 * k:4 * k + 4] = box
        idx[k] = i
        scores[k] = s
        k += 1
    offs = np.arange(0, 4 * k + 1, 4).astype(np.int64)
    return pts[:4 * k], offs, idx[:k], scores[:k]


@njit(cache=True, nogil=True)
def unclip_boxes(pts, todo, ratio, matrix, min_side):
    """Unclip, re-box, size-filter and map the candidates ``todo`` (box mode, one image).

    As the baseline: distance from shapely's area/length of the float32 corners, Clipper
    offset of the corners truncated to integers, ``get_mini_boxes`` of the result, drop
    when its short side ``< min_size + 2``, map the four corners.

    Returns
    -------
    status (len(todo),), out_xy int16 (4 len(todo), 2)
    """
    nt = todo.shape[0]
    status = np.empty(nt, np.int64)
    out = np.zeros((4 * nt, 2), np.int16)
    for t in range(nt):
        c = todo[t]
        xs = pts[4 * c:4 * c + 4, 0].astype(np.float64)
        ys = pts[4 * c:4 * c + 4, 1].astype(np.float64)
        d = unclip_distance(xs, ys, ratio)
        if np.isnan(d):
            status[t] = DROP
            continue
        poly, ost = offset_polygon(xs.astype(np.int64), ys.astype(np.int64), d)
        if ost == OFFSET_EMPTY:
            status[t] = DROP
            continue
        if ost != OFFSET_OK:
            status[t] = FALLBACK_OFFSET
            continue
        box, sside = get_mini_boxes_nb(poly[:, 0].copy(), poly[:, 1].copy())
        if sside < min_side:
            status[t] = DROP
            continue
        out[4 * t:4 * t + 4] = map_points(box, matrix)
        status[t] = KEEP
    return status, out


@njit(cache=True, nogil=True)
def gather_polygons(coords, start, length):
    """Pack the polygons ``coords[start[k]:start[k] + length[k]]`` as float64.

    Returns
    -------
    out : float64 (sum(length), 2)
    offsets : int64 (len(start) + 1,)
    """
    n = start.shape[0]
    offs = np.zeros(n + 1, np.int64)
    for k in range(n):
        offs[k + 1] = offs[k] + length[k]
    out = np.empty((offs[n], 2), np.float64)
    for k in range(n):
        a = start[k]
        for j in range(length[k]):
            out[offs[k] + j, 0] = coords[a + j, 0]
            out[offs[k] + j, 1] = coords[a + j, 1]
    return out, offs


# ------------------------------------------------------------------------------------
# Python drivers used by the engine
# ------------------------------------------------------------------------------------
def build_candidates(prob: np.ndarray, p: PostProcessParams, window: Optional[np.ndarray] = None):
    """Stage 1 of the engine: contours -> candidates with scores, for one image.

    Identical to the reference's loop up to (and including) the box score; the
    ``box_thresh`` test and the ``max_candidates`` cut are left to the caller.

    ``window``, the :func:`text_window` of ``prob`` at :data:`WINDOW_FLOOR`, lets a
    threshold at or above the floor binarise and trace only that box (without dilation):
    the contours are the same, in the same order, once shifted back to the map.
    """
    from .engine import _Candidates
    from .reference import binarize, dilate_2x2, find_contours_packed

    t = np.float32(p.thresh)
    y0 = x0 = 0  # where the traced bitmap starts in the map
    if p.use_dilation:
        img = dilate_2x2(binarize(prob, p.thresh)).view(np.uint8) * np.uint8(255)
    elif window is None or t < WINDOW_FLOOR:
        img = threshold_u8(prob, t)
    elif window[1] > window[0]:
        y0, y1, x0, x1 = (int(v) for v in window)
        img = threshold_box(prob, t, y0, y1, x0, x1)
    else:  # nothing above the floor: an empty bitmap, no contour
        img = np.zeros((1, 1), np.uint8)
    cxy, coffs = find_contours_packed(img)
    cxy[:, 0] += x0
    cxy[:, 1] += y0
    n = coffs.shape[0] - 1
    slow = p.score_mode == "slow"
    if p.use_polygon:
        eps = 0.002 * arc_lengths(cxy, coffs)
        pts, offs, idx, scores = polygon_candidates(prob, cxy, coffs, eps, slow)
    else:
        pts, offs, idx, scores = box_candidates(prob, cxy, coffs, float(p.min_size), slow)
    return _Candidates(pts, offs, idx, scores, n)


def unclip_all(cand, todo: np.ndarray, ratio: float, matrix: np.ndarray,
               p: PostProcessParams) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Stage 2 of the engine: unclip + size filter + mapping of the candidates ``todo``.

    Parameters
    ----------
    cand : engine candidates of one image
    todo : ndarray of int64
        Candidate indices to process.
    ratio : float
        Unclip ratio.
    matrix : ndarray (3, 3)
        Network-to-image matrix.
    p : PostProcessParams
        Mode and ``min_size``.

    Returns
    -------
    coords : int16 (M, 2)
        Image-space polygons, packed.
    offsets : int64 (len(todo) + 1,)
        ``todo[k]``'s polygon is ``coords[offsets[k]:offsets[k+1]]`` (empty when dropped).
    valid : bool (len(todo),)
        Which candidates survive.
    n_fallback : int
        Candidates whose offset pyclipper computed (the offset kernel's fallback).
    """
    from .reference import map_to_image, unclip_reference

    todo = np.ascontiguousarray(todo, dtype=np.int64)
    n = len(todo)
    min_side = float(p.min_size + 2)
    if p.use_polygon:
        status, out, out_offs = unclip_polygons(cand.points, cand.offsets, todo, float(ratio),
                                                matrix, min_side)
    else:
        status, out = unclip_boxes(cand.points, todo, float(ratio), matrix, min_side)
        # kept boxes take four rows each, dropped ones none
        out_offs = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(4 * (status == KEEP), out=out_offs[1:])
        out = out[np.repeat(status == KEEP, 4)]
    valid = status == KEEP
    fallback = np.flatnonzero(status == FALLBACK_OFFSET)
    if len(fallback) == 0:
        return out, out_offs, valid, 0
    # finish the candidates the offset kernel handed back with pyclipper, then re-pack
    polys = [out[out_offs[i]:out_offs[i + 1]] for i in range(n)]
    for k in fallback:
        c = todo[k]
        pts = cand.points[cand.offsets[c]:cand.offsets[c + 1]]
        pts = pts.astype(np.int64) if p.use_polygon else pts.astype(np.float32)
        expanded = unclip_reference(pts, ratio)
        res = None
        if expanded is not None:
            if p.use_polygon:
                if float(short_side(expanded)) >= min_side:
                    res = map_to_image(expanded, matrix)
            else:
                box, sside = get_mini_boxes_nb(expanded[:, 0].copy(), expanded[:, 1].copy())
                if sside >= min_side:
                    res = map_to_image(box, matrix)
        if res is not None:
            polys[k] = res
            valid[k] = True
    offs = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(q) for q in polys], out=offs[1:])
    coords = np.concatenate(polys).astype(np.int16) if offs[-1] else np.zeros((0, 2), np.int16)
    return coords, offs, valid, len(fallback)
