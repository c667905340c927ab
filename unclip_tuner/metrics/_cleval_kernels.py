"""Numba kernels of the fast CLEval (:mod:`unclip_tuner.metrics.cleval`).

Every kernel reproduces a part of :mod:`unclip_tuner.metrics.cleval_reference` (which
documents the rules) operation by operation, so that results are bit-identical. All are
compiled with ``nogil=True`` so that several threads can score images at once.

Polygons travel as packed float64 arrays: ``xs``/``ys`` hold the vertices of all polygons
one after another and ``offs`` (int64, ``n + 1`` entries) the start of each.

The one thing not reproduced here is Qhull's choice of the first hull vertex. It matters
only when two hull edges give rectangles of exactly the same minimum area but different
sides (an axis-aligned box: the horizontal and the vertical edges tie), and only when the
candidates then give different character counts. The kernels report such polygons as
unresolved and the caller asks scipy's ``ConvexHull`` (see ``cleval.py``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .geometry import area_abs, difference_intersection_area, intersection_area, point_inside

EPS32 = 2.0 ** -23          # np.finfo(np.float32).eps
MAX_CHARS = 100
AP_CONSTRAINT = 0.3
AP32 = np.float32(0.3)
MIN_POINTS = 4

# status of an aspect-ratio based count
DEGENERATE = 0      # the hull fails: ar = 0
RESOLVED = 1        # the count does not depend on Qhull's start vertex
UNRESOLVED = 2      # it does: the caller must ask scipy

# positions in the statistics vector returned by match_pairs
ST_TP = 0
ST_DET_CHARS = 1
ST_GT_CHARS = 2
ST_FP_CHARS = 3
ST_PEN_R = 4
ST_PEN_P = 5
ST_SPLIT = 6
ST_MERGE = 7
ST_N_GT = 8
ST_N_DET = 9
ST_N_DET_DC = 10
ST_SIZE = 11


# ---------------------------------------------------------------------------------------
# Aspect ratio and character counts
# ---------------------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def convex_hull_ccw(xs, ys):
    """Strict convex hull, counter-clockwise, as indices into ``xs``/``ys``.

    Reproduces the vertex SET of scipy's ``ConvexHull`` (Qhull) on the baseline's float32
    points: collinear and repeated points are not vertices. Andrew's monotone chain with
    exact orientation tests (the coordinates are float32 values held in float64). Fewer
    than 3 vertices means Qhull would fail.

    Returns
    -------
    ndarray of int64
        Hull vertex indices, counter-clockwise, starting at the lowest-x (then lowest-y)
        point; Qhull's own starting vertex is generally a different one.
    """
    n = xs.shape[0]
    order = np.argsort(ys, kind="mergesort")
    order = order[np.argsort(xs[order], kind="mergesort")]
    hull = np.empty(2 * n + 1, dtype=np.int64)
    k = 0
    for t in range(n):                       # lower chain
        i = order[t]
        while k >= 2:
            o, a = hull[k - 2], hull[k - 1]
            cross = (xs[a] - xs[o]) * (ys[i] - ys[o]) - (ys[a] - ys[o]) * (xs[i] - xs[o])
            if cross > 0.0:
                break
            k -= 1
        hull[k] = i
        k += 1
    lower = k + 1
    for t in range(n - 2, -1, -1):           # upper chain
        i = order[t]
        while k >= lower:
            o, a = hull[k - 2], hull[k - 1]
            cross = (xs[a] - xs[o]) * (ys[i] - ys[o]) - (ys[a] - ys[o]) * (xs[i] - xs[o])
            if cross > 0.0:
                break
            k -= 1
        hull[k] = i
        k += 1
    k -= 1                                   # the last point repeats the first
    if k < 3:
        return hull[:0]
    return hull[:k].copy()


@njit(cache=True, nogil=True)
def edge_rectangles(hx, hy):
    """Sides of the bounding rectangle along every hull edge (reference ``_edge_rectangle``).

    Parameters
    ----------
    hx, hy : ndarray of float32
        Hull points in counter-clockwise order (not closed).

    Returns
    -------
    along, across, area : ndarray of float64
        For edge ``i`` (from point ``i`` to point ``i + 1``): the rectangle side along the
        edge, the side across it and their product, in the pinned numpy 1.26 arithmetic
        (float32 differences, float64 from there on).
    """
    k = hx.shape[0]
    along = np.empty(k, dtype=np.float64)
    across = np.empty(k, dtype=np.float64)
    area = np.empty(k, dtype=np.float64)
    for i in range(k):
        j = i + 1 if i + 1 < k else 0
        dx = np.float64(hx[j] - hx[i])       # float32 subtraction, then float64
        dy = np.float64(hy[j] - hy[i])
        length = math.sqrt(dx * dx + dy * dy)
        ux = dx / length
        uy = dy / length
        ox = -uy
        oy = ux
        amin = math.inf
        amax = -math.inf
        cmin = math.inf
        cmax = -math.inf
        for t in range(k):
            x = np.float64(hx[t])
            y = np.float64(hy[t])
            a = ux * x + uy * y
            c = ox * x + oy * y
            amin = min(amin, a)
            amax = max(amax, a)
            cmin = min(cmin, c)
            cmax = max(cmax, c)
        along[i] = amax - amin
        across[i] = cmax - cmin
        area[i] = along[i] * across[i]
    return along, across, area


@njit(cache=True, nogil=True)
def _ratio(width, height):
    """``min(100, height / (width + eps32))``."""
    ar = height / (width + EPS32)
    return 100.0 if ar > 100.0 else ar


@njit(cache=True, nogil=True)
def gt_count_of_ratio(ar):
    """``min(round(0.5 + max(ar, 1/(ar + eps32))), 100)``, round half to even."""
    inv = 1.0 / (ar + EPS32)
    v = 0.5 + (inv if inv > ar else ar)
    return min(int(np.rint(v)), MAX_CHARS)


@njit(cache=True, nogil=True)
def fp_count_of_ratio(ar):
    """``min(round(0.5 + 1/(eps32 + ar)), 100)``, round half to even."""
    return min(int(np.rint(0.5 + 1.0 / (EPS32 + ar))), MAX_CHARS)


@njit(cache=True, nogil=True)
def _float32_points(xs, ys):
    """The baseline's float32 copy of the points, and the same values in float64."""
    n = xs.shape[0]
    x32 = np.empty(n, dtype=np.float32)
    y32 = np.empty(n, dtype=np.float32)
    x64 = np.empty(n, dtype=np.float64)
    y64 = np.empty(n, dtype=np.float64)
    for i in range(n):
        x32[i] = np.float32(xs[i])
        y32[i] = np.float32(ys[i])
        x64[i] = np.float64(x32[i])
        y64[i] = np.float64(y32[i])
    return x32, y32, x64, y64


@njit(cache=True, nogil=True)
def _count_of_sides(width, height, fp):
    ar = _ratio(width, height)
    return fp_count_of_ratio(ar) if fp else gt_count_of_ratio(ar)


@njit(cache=True, nogil=True)
def char_count(xs, ys, fp):
    """Pseudo character count (GT, ``fp=False``) or false-positive count (``fp=True``).

    Reproduces ``gt_char_count(aspect_ratio(p))`` / ``fp_char_count(aspect_ratio(p))`` of
    the reference on raw float64 points (converted to float32 here), without knowing
    Qhull's starting hull vertex: the edges of minimum rectangle area are all examined.

    Returns
    -------
    status : int
        DEGENERATE, RESOLVED or UNRESOLVED (see the module docstring).
    count : int
        The count (meaningless when UNRESOLVED).
    """
    x32, y32, x64, y64 = _float32_points(xs, ys)
    hull = convex_hull_ccw(x64, y64)
    if hull.shape[0] == 0:
        return DEGENERATE, _count_of_sides(0.0, 0.0, fp)
    along, across, area = edge_rectangles(x32[hull], y32[hull])
    best = area.min()
    count = -1
    first = -1
    for i in range(area.shape[0]):
        if area[i] != best:
            continue
        if first >= 0 and along[i] == along[first] and across[i] == across[first]:
            continue
        c = _count_of_sides(along[i], across[i], fp)
        if first < 0:
            first = i
            count = c
        elif c != count:
            return UNRESOLVED, -1
    return RESOLVED, count


@njit(cache=True, nogil=True)
def char_count_from(xs, ys, fp, start_x, start_y):
    """:func:`char_count` when Qhull's first hull vertex is known (its float32 coordinates).

    The hull is walked counter-clockwise from that vertex and the first edge reaching the
    minimum rectangle area wins, as in the baseline. Returns ``(UNRESOLVED, -1)`` if the
    vertex is not on this hull (which would mean the hulls differ).
    """
    x32, y32, x64, y64 = _float32_points(xs, ys)
    hull = convex_hull_ccw(x64, y64)
    if hull.shape[0] == 0:
        return DEGENERATE, _count_of_sides(0.0, 0.0, fp)
    k = hull.shape[0]
    start = -1
    for t in range(k):
        if x32[hull[t]] == np.float32(start_x) and y32[hull[t]] == np.float32(start_y):
            start = t
            break
    if start < 0:
        return UNRESOLVED, -1
    rotated = np.empty(k, dtype=np.int64)
    for t in range(k):
        rotated[t] = hull[(start + t) % k]
    along, across, area = edge_rectangles(x32[rotated], y32[rotated])
    first = 0
    for i in range(1, k):
        if area[i] < area[first]:
            first = i
    return RESOLVED, _count_of_sides(along[first], across[first], fp)


@njit(cache=True, nogil=True)
def char_counts(xs, ys, offs, fp):
    """:func:`char_count` for every packed polygon; returns ``(status, count)`` arrays."""
    n = offs.shape[0] - 1
    status = np.empty(n, dtype=np.int64)
    count = np.empty(n, dtype=np.int64)
    for k in range(n):
        s, c = char_count(xs[offs[k]:offs[k + 1]], ys[offs[k]:offs[k + 1]], fp)
        status[k] = s
        count[k] = c
    return status, count


@njit(cache=True, nogil=True)
def fp_counts_of(coords, starts, lengths, ids):
    """:func:`char_count` (false-positive counts) of the polygons ``ids`` of a store whose
    polygon ``k`` is ``coords[starts[k]:starts[k] + lengths[k]]`` (any numeric dtype).

    Returns ``(status, count)`` arrays, one entry per id.
    """
    n = ids.shape[0]
    status = np.empty(n, dtype=np.int64)
    count = np.empty(n, dtype=np.int64)
    for t in range(n):
        k = ids[t]
        s, m = starts[k], lengths[k]
        xs = np.empty(m, dtype=np.float64)
        ys = np.empty(m, dtype=np.float64)
        for i in range(m):
            xs[i] = coords[s + i, 0]
            ys[i] = coords[s + i, 1]
        st, c = char_count(xs, ys, True)
        status[t] = st
        count[t] = c
    return status, count


@njit(cache=True, nogil=True)
def _line_points(px, py, first, step, count, n_chars, out_x, out_y):
    """Top (``step = 1``) or reversed bottom (``step = -1``) line of the centre rule."""
    pos = 0
    for k in range(count - 1):
        sx = px[first + step * k]
        sy = py[first + step * k]
        ex = px[first + step * (k + 1)]
        ey = py[first + step * (k + 1)]
        dx = (ex - sx) / n_chars
        dy = (ey - sy) / n_chars
        out_x[pos] = sx
        out_y[pos] = sy
        pos += 1
        for j in range(1, n_chars):
            out_x[pos] = float(int(sx + dx * j))      # int() truncates toward zero
            out_y[pos] = float(int(sy + dy * j))
            pos += 1
    return pos


@njit(cache=True, nogil=True)
def character_centres(px, py, n_chars, cx, cy):
    """Pseudo character centres of one GT polygon (reference ``character_centres``).

    ``px``/``py`` are integer-valued float64 points (n >= 4); the ``n_chars`` centres are
    written to ``cx``/``cy``.
    """
    n = px.shape[0]
    half = n // 2
    size = (half - 1) * n_chars + 1
    tx = np.empty(size, dtype=np.float64)
    ty = np.empty(size, dtype=np.float64)
    bx = np.empty(size, dtype=np.float64)
    by = np.empty(size, dtype=np.float64)
    pos = _line_points(px, py, 0, 1, half, n_chars, tx, ty)
    tx[pos] = px[half - 1]
    ty[pos] = py[half - 1]
    pos = _line_points(px, py, n - 1, -1, half, n_chars, bx, by)
    bx[pos] = px[half]          # the last point of the reversed bottom half
    by[pos] = py[half]
    section = (size - 1) / n_chars
    for c in range(n_chars):
        a = int(c * section)
        b = int((c + 1) * section)
        cx[c] = (tx[a] + tx[b] + bx[a] + bx[b]) / 4
        cy[c] = (ty[a] + ty[b] + by[a] + by[b]) / 4


@njit(cache=True, nogil=True)
def all_character_centres(xs, ys, offs, counts):
    """Centres of every packed GT polygon; returns ``(cx, cy, coffs)``."""
    n = offs.shape[0] - 1
    coffs = np.zeros(n + 1, dtype=np.int64)
    for k in range(n):
        coffs[k + 1] = coffs[k] + counts[k]
    cx = np.empty(coffs[n], dtype=np.float64)
    cy = np.empty(coffs[n], dtype=np.float64)
    for k in range(n):
        character_centres(xs[offs[k]:offs[k + 1]], ys[offs[k]:offs[k + 1]], counts[k],
                          cx[coffs[k]:coffs[k + 1]], cy[coffs[k]:coffs[k + 1]])
    return cx, cy, coffs


@njit(cache=True, nogil=True)
def bboxes(xs, ys, offs):
    """``(n, 4)`` bounding boxes ``x0, y0, x1, y1`` of packed polygons."""
    n = offs.shape[0] - 1
    out = np.empty((n, 4), dtype=np.float64)
    for k in range(n):
        s, e = offs[k], offs[k + 1]
        x0 = xs[s]
        x1 = xs[s]
        y0 = ys[s]
        y1 = ys[s]
        for i in range(s + 1, e):
            x0 = min(x0, xs[i])
            x1 = max(x1, xs[i])
            y0 = min(y0, ys[i])
            y1 = max(y1, ys[i])
        out[k, 0] = x0
        out[k, 1] = y0
        out[k, 2] = x1
        out[k, 3] = y1
    return out


# ---------------------------------------------------------------------------------------
# One image: pair data per detection, then the matching of a set of detections
# ---------------------------------------------------------------------------------------
#
# Everything the rules ask about one GT word and one detection (the character centres of
# the word inside the detection, the area precision) depends on those two polygons only.
# So the per-image work is split in two kernels: ``detection_pairs`` computes that pair
# data detection by detection (all the polygon geometry), and ``match_pairs`` runs the
# matching rules and counts over any chosen set of detections from it. A caller that
# scores many subsets of the same detections (a search over box_thresh) computes the
# pairs once and matches many times.

@njit(cache=True, nogil=True)
def detection_pairs(gxs, gys, goffs, gbox, gdc, cx, cy, coffs, hxs, hys, hoffs, hole_slices,
                    coords, doffs):
    """Pair data of each detection with the GT words of one image.

    A (GT word, detection) pair exists when their bounding boxes touch and the detection
    holds at least one of the word's character centres, or the word is don't-care; it
    carries the number of centres inside, their indices and the area precision (float32),
    which is the share of the detection inside the word (inside the word minus its cared
    words, for a don't-care word). Detection points are truncated toward zero first.

    Parameters
    ----------
    gxs, gys, goffs : GT points (rounded, packed), gbox their bounding boxes.
    gdc : bool per GT word (don't-care).
    cx, cy, coffs : packed character centres per GT word.
    hxs, hys, hoffs, hole_slices : the holes of every don't-care word (the cared GT words
        overlapping it), packed word after word; ``hole_slices[g] = (p0, p1, o0, o1)``:
        word g's hole points are ``hxs[p0:p1]`` and their offsets ``hoffs[o0:o1]``
        (relative to ``p0``, one more entry than holes).
    coords : (N, 2) float64 detection vertices, ``doffs`` (n + 1) int64 offsets.

    Returns
    -------
    valid : ndarray of bool, per detection: at least ``MIN_POINTS`` points (the others are
        ignored by the metric and have no pairs).
    pstart : ndarray of int64, n + 1 entries: detection ``d``'s pairs are
        ``pstart[d]:pstart[d + 1]``, in increasing GT order.
    pg, pin : ndarray of int32, per pair: the GT word and the number of its centres inside.
    pap : ndarray of float32, per pair: the area precision.
    pc0 : ndarray of int64, per pair: where its centres start in ``chars``.
    chars : ndarray of int32: indices (into ``cx``/``cy``) of the centres inside.
    """
    n_g = goffs.shape[0] - 1
    n_d = doffs.shape[0] - 1

    # GT words sorted by their top edge: the words whose box can touch a detection box lie
    # in a window of that order (top in [detection top - tallest word, detection bottom])
    gtop = np.empty(n_g, dtype=np.float64)
    tallest = 0.0
    for g in range(n_g):
        gtop[g] = gbox[g, 1]
        tallest = max(tallest, gbox[g, 3] - gbox[g, 1])
    by_top = np.argsort(gtop, kind="mergesort")
    tops = gtop[by_top]

    longest = 0
    for d in range(n_d):
        longest = max(longest, doffs[d + 1] - doffs[d])
    dx = np.empty(longest, dtype=np.float64)
    dy = np.empty(longest, dtype=np.float64)
    near = np.empty(n_g, dtype=np.int64)

    valid = np.zeros(n_d, dtype=np.bool_)
    pstart = np.zeros(n_d + 1, dtype=np.int64)
    cap = 16 + 2 * n_d
    pg = np.empty(cap, dtype=np.int32)
    pin = np.empty(cap, dtype=np.int32)
    pap = np.empty(cap, dtype=np.float32)
    pc0 = np.empty(cap, dtype=np.int64)
    chars = np.empty(64 + 16 * n_d, dtype=np.int32)
    n_p = 0
    n_c = 0
    for d in range(n_d):
        s = doffs[d]
        m = doffs[d + 1] - s
        if m < MIN_POINTS:
            pstart[d + 1] = n_p
            continue
        valid[d] = True
        for i in range(m):
            dx[i] = np.trunc(coords[s + i, 0])
            dy[i] = np.trunc(coords[s + i, 1])
        px_ = dx[:m]
        py_ = dy[:m]
        x0 = px_[0]
        x1 = px_[0]
        y0 = py_[0]
        y1 = py_[0]
        for i in range(1, m):
            x0 = min(x0, px_[i])
            x1 = max(x1, px_[i])
            y0 = min(y0, py_[i])
            y1 = max(y1, py_[i])
        darea = area_abs(px_, py_)

        lo = np.searchsorted(tops, y0 - tallest, side="left")
        hi = np.searchsorted(tops, y1, side="right")
        n_near = 0
        for t in range(lo, hi):
            g = by_top[t]
            if gbox[g, 0] <= x1 and x0 <= gbox[g, 2] and y0 <= gbox[g, 3]:
                near[n_near] = g
                n_near += 1
        for t in range(1, n_near):               # insertion sort: increasing GT order
            v = near[t]
            u = t - 1
            while u >= 0 and near[u] > v:
                near[u + 1] = near[u]
                u -= 1
            near[u + 1] = v
        for t in range(n_near):
            g = near[t]
            start = n_c
            for c in range(coffs[g], coffs[g + 1]):
                qx, qy = cx[c], cy[c]
                if x0 <= qx <= x1 and y0 <= qy <= y1 and point_inside(px_, py_, qx, qy):
                    if n_c == chars.shape[0]:
                        chars = _grow(chars, n_c)
                    chars[n_c] = c
                    n_c += 1
            count = n_c - start
            if count == 0 and not gdc[g]:
                continue
            ap = np.float32(0.0)
            if darea > 0.0:
                gs, ge = goffs[g], goffs[g + 1]
                if gdc[g]:
                    p0, p1 = hole_slices[g, 0], hole_slices[g, 1]
                    o0, o1 = hole_slices[g, 2], hole_slices[g, 3]
                    shared = difference_intersection_area(
                        px_, py_, gxs[gs:ge], gys[gs:ge], hxs[p0:p1], hys[p0:p1], hoffs[o0:o1])
                else:
                    shared = intersection_area(gxs[gs:ge], gys[gs:ge], px_, py_)
                ap = np.float32(shared / darea)
            if n_p == pg.shape[0]:
                pg = _grow(pg, n_p)
                pin = _grow(pin, n_p)
                pap = _grow(pap, n_p)
                pc0 = _grow(pc0, n_p)
            pg[n_p] = g
            pin[n_p] = count
            pap[n_p] = ap
            pc0[n_p] = start
            n_p += 1
        pstart[d + 1] = n_p
    return (valid, pstart, pg[:n_p].copy(), pin[:n_p].copy(), pap[:n_p].copy(),
            pc0[:n_p].copy(), chars[:n_c].copy())


@njit(cache=True, nogil=True)
def match_pairs(gdc, gchars, n_centres, dc_order, valid_rank, sel, pfirst, pcount,
                pg, pin, pap, pc0, chars):
    """CLEval counts of one image for the detections ``sel`` (reference ``cleval_image`` up
    to the false-positive counts and the score formulas).

    Parameters
    ----------
    gdc : bool per GT word (don't-care); gchars: pseudo character count per word.
    n_centres : number of character centres of the image (all words).
    dc_order : the don't-care GT indices in the order the baseline's set iterates them.
    valid_rank : per GT word, its position in the baseline's iteration of the cared GT set
        (-1 for don't-care words); many-to-one sums follow that order.
    sel : ndarray of int64
        The scored detections (valid ones, after the ``max_polygons`` cut), as indices into
        ``pfirst``/``pcount``; their order does not change the counts.
    pfirst, pcount : per detection, its first pair and number of pairs.
    pg, pin, pap, pc0, chars : the pair data (see :func:`detection_pairs`).

    Returns
    -------
    stats : ndarray of int64, see the ``ST_*`` positions (``ST_FP_CHARS`` left at 0).
    unmatched : ndarray of int64
        The entries of ``sel`` neither don't-care nor matched: each adds its false-positive
        character count.
    """
    n_g = gdc.shape[0]
    n_d = sel.shape[0]

    # the pairs of the selection, numbered locally, detection after detection: detection
    # j's pairs are dfirst[j]:dfirst[j + 1]
    dfirst = np.zeros(n_d + 1, dtype=np.int64)
    for j in range(n_d):
        dfirst[j + 1] = dfirst[j] + pcount[sel[j]]
    n_p = dfirst[n_d]
    p_g = np.empty(n_p, dtype=np.int64)
    p_d = np.empty(n_p, dtype=np.int64)
    p_in = np.empty(n_p, dtype=np.int64)
    p_ap = np.empty(n_p, dtype=np.float32)
    p_src = np.empty(n_p, dtype=np.int64)
    for j in range(n_d):
        p = pfirst[sel[j]]
        for k in range(dfirst[j], dfirst[j + 1]):
            p_g[k] = pg[p]
            p_d[k] = j
            p_in[k] = pin[p]
            p_ap[k] = pap[p]
            p_src[k] = p
            p += 1

    # candidate pairs and their counts over all GT words / all detections
    cand = np.zeros(n_p, dtype=np.bool_)
    row_cnt = np.zeros(n_g, dtype=np.int64)
    col_cnt = np.zeros(n_d, dtype=np.int64)
    for p in range(n_p):
        if p_ap[p] >= AP32 and p_in[p] > 0:
            cand[p] = True
            row_cnt[p_g[p]] += 1
            col_cnt[p_d[p]] += 1

    # don't-care detections: one don't-care pair of area precision >= 0.3, or the float64
    # sum of those holding a centre, in the baseline's set order, reaching 0.3
    dc_pos = np.full(n_g, -1, dtype=np.int64)
    for t in range(dc_order.shape[0]):
        dc_pos[dc_order[t]] = t
    key = np.empty(n_g, dtype=np.int64)
    val = np.empty(n_g, dtype=np.float64)
    det_ok = np.ones(n_d, dtype=np.bool_)
    n_det_dc = 0
    for d in range(n_d):
        hit = False
        k = 0
        for p in range(dfirst[d], dfirst[d + 1]):
            if dc_pos[p_g[p]] < 0:
                continue
            if p_ap[p] >= AP32:
                hit = True
                break
            if p_in[p] > 0:
                k = _insert_sorted(key, val, k, dc_pos[p_g[p]], np.float64(p_ap[p]))
        total = 0.0
        for t in range(k):
            total += val[t]
        if hit or total >= AP_CONSTRAINT:
            det_ok[d] = False
            n_det_dc += 1

    # matching
    matched = np.zeros(n_p, dtype=np.bool_)
    usable = np.zeros(n_g, dtype=np.int64)       # candidate pairs of a word with kept dets
    for p in range(n_p):
        g, d = p_g[p], p_d[p]
        if cand[p] and det_ok[d]:
            usable[g] += 1
            if not gdc[g] and row_cnt[g] == 1 and col_cnt[d] == 1:      # one-to-one
                matched[p] = True
    for p in range(n_p):                                            # one-to-many
        g = p_g[p]
        if cand[p] and det_ok[p_d[p]] and not gdc[g] and row_cnt[g] >= 2 and usable[g] >= 2:
            matched[p] = True
    for d in range(n_d):                                            # many-to-one
        if not det_ok[d]:
            continue
        k = 0
        for p in range(dfirst[d], dfirst[d + 1]):
            g = p_g[p]
            if p_in[p] > 0 and not gdc[g]:
                k += 1
        if k < 2:
            continue
        k = 0
        for p in range(dfirst[d], dfirst[d + 1]):
            g = p_g[p]
            if p_in[p] > 0 and not gdc[g]:
                k = _insert_sorted(key, val, k, valid_rank[g], np.float64(p_ap[p]))
        total = 0.0
        for t in range(k):
            total += val[t]
        if total >= AP_CONSTRAINT:
            for p in range(dfirst[d], dfirst[d + 1]):
                if p_in[p] > 0 and not gdc[p_g[p]]:
                    matched[p] = True

    # counts
    found = np.zeros(n_centres, dtype=np.bool_)
    dets_per_gt = np.zeros(n_g, dtype=np.int64)
    gts_per_det = np.zeros(n_d, dtype=np.int64)
    tp = 0
    det_chars = 0
    for p in range(n_p):
        if not matched[p]:
            continue
        dets_per_gt[p_g[p]] += 1
        gts_per_det[p_d[p]] += 1
        det_chars += p_in[p]
        c0 = pc0[p_src[p]]
        for t in range(c0, c0 + p_in[p]):
            c = chars[t]
            if not found[c]:
                found[c] = True
                tp += 1
    stats = np.zeros(ST_SIZE, dtype=np.int64)
    for g in range(n_g):
        if gdc[g]:
            continue
        stats[ST_GT_CHARS] += gchars[g]
        if dets_per_gt[g] > 1:
            stats[ST_PEN_R] += dets_per_gt[g] - 1
            stats[ST_SPLIT] += 1
    unmatched = np.empty(n_d, dtype=np.int64)
    n_un = 0
    for d in range(n_d):
        if not det_ok[d]:
            continue
        if gts_per_det[d] > 1:
            stats[ST_PEN_P] += gts_per_det[d] - 1
            stats[ST_MERGE] += 1
        elif gts_per_det[d] == 0:
            unmatched[n_un] = sel[d]
            n_un += 1
    stats[ST_TP] = tp
    stats[ST_DET_CHARS] = det_chars
    stats[ST_N_GT] = n_g
    stats[ST_N_DET] = n_d
    stats[ST_N_DET_DC] = n_det_dc
    return stats, unmatched[:n_un].copy()


@njit(cache=True, nogil=True)
def score_detections(gxs, gys, goffs, gbox, gdc, gchars, cx, cy, coffs, dc_order, valid_rank,
                     hxs, hys, hoffs, hole_slices, coords, doffs, max_polygons):
    """CLEval counts of one image's detections in one call: :func:`detection_pairs` on the
    first ``max_polygons`` detections, :func:`match_pairs` over the valid ones, then the
    false-positive counts of the unmatched ones.

    Returns
    -------
    stats : ndarray of int64, see the ``ST_*`` positions.
    unresolved : ndarray of int64
        Unmatched detections whose false-positive count depends on Qhull's start vertex;
        their counts are NOT in ``stats[ST_FP_CHARS]``.
    """
    n = min(doffs.shape[0] - 1, max_polygons)
    valid, pstart, pg, pin, pap, pc0, chars = detection_pairs(
        gxs, gys, goffs, gbox, gdc, cx, cy, coffs, hxs, hys, hoffs, hole_slices,
        coords, doffs[:n + 1])
    stats, unmatched = match_pairs(gdc, gchars, cx.shape[0], dc_order, valid_rank,
                                   np.flatnonzero(valid), pstart, pstart[1:] - pstart[:-1],
                                   pg, pin, pap, pc0, chars)
    status, count = fp_counts_of(coords, doffs[:n], doffs[1:n + 1] - doffs[:n], unmatched)
    unresolved = np.empty(unmatched.shape[0], dtype=np.int64)
    n_unres = 0
    for t in range(unmatched.shape[0]):
        if status[t] == UNRESOLVED:
            unresolved[n_unres] = unmatched[t]
            n_unres += 1
        else:
            stats[ST_FP_CHARS] += count[t]
    return stats, unresolved[:n_unres].copy()


@njit(cache=True, nogil=True)
def _insert_sorted(key, val, k, new_key, new_val):
    """Insert ``(new_key, new_val)`` into the first ``k`` entries, kept in increasing key
    order (keys are distinct); returns the new length."""
    u = k - 1
    while u >= 0 and key[u] > new_key:
        key[u + 1] = key[u]
        val[u + 1] = val[u]
        u -= 1
    key[u + 1] = new_key
    val[u + 1] = new_val
    return k + 1


@njit(cache=True, nogil=True)
def _grow(a, n):
    """``a`` with twice the room, its first ``n`` entries kept."""
    out = np.empty(2 * a.shape[0], dtype=a.dtype)
    out[:n] = a[:n]
    return out
