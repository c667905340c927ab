"""Fast unclip: the DB post-processor's polygon expansion as Numba kernels.

The reference (:mod:`unclip_tuner.postprocess.offset_reference`, the seed's ``unclip``)
computes

* ``distance = area * ratio / length`` with shapely 2.0.2 (GEOS 3.11) on the float points;
* ``pyclipper.PyclipperOffset`` (Clipper 6.4.2) with ``JT_ROUND``, ``ET_CLOSEDPOLYGON``,
  ``ArcTolerance`` 0.25 and ``MiterLimit`` 2 on the points truncated to integers, and keeps
  the first path of ``Execute(distance)``.

Clipper builds the offset in two stages, both reproduced here with Clipper's own integer
and floating-point operations so that the result is the same list of vertices, in the same
order and from the same first vertex:

1. the raw offset path (``ClipperOffset::DoOffset``): edge normals, a round join at every
   convex vertex whose step count follows from the arc tolerance, and at every concave
   vertex the three points offset / vertex / offset, which make the path loop over itself;
2. a union of that path with the positive fill rule (``Clipper::Execute``), which keeps the
   region of winding number >= 1: a scan-line sweep that rounds crossing points with its
   own formula, joins rings that share collinear edges and finally drops duplicate and
   collinear vertices. On real text polygons almost every offset needs it.

Status codes returned by :func:`offset_polygon` and :func:`unclip_polygon`:
:data:`OFFSET_OK` (the result is Clipper's), :data:`OFFSET_EMPTY` (Clipper returns no path,
or the reference skips the polygon because its area or length is 0), and
:data:`OFFSET_FALLBACK` (a case outside what the kernel handles: coordinates beyond
Clipper's 64-bit range, a distance not > 1e-20, or an internal failure such as a state
table that stays too small; the caller must then run pyclipper). :func:`unclip_fast` does
that and reports whether it did.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
from numba import njit

OFFSET_OK = 0
OFFSET_FALLBACK = 1
OFFSET_EMPTY = 2

# Clipper's constants (clipper.cpp): pi as written there, the default arc tolerance
# (def_arc_tolerance), the ArcTolerance that pyclipper passes (its default, also 0.25), and
# the NEAR_ZERO tolerance on the offset distance.
_PI = 3.141592653589793238
_TWO_PI = _PI * 2.0
_DEF_ARC_TOLERANCE = 0.25
_ARC_TOLERANCE = 0.25
_NEAR_ZERO = 1.0e-20

# Clipper computes slope tests in 64-bit integers while every coordinate is within
# +-0x3FFFFFFF ("loRange") and switches to 128-bit arithmetic beyond; the kernels only
# handle the former. Distances above _MAX_DELTA are left to pyclipper as well.
_COORD_LIMIT = 0x3FFFFFFF
_MAX_DELTA = 1.0e8


# ----------------------------------------------------------------------------------------
# Distance: GEOS 3.11 area and length, as shapely 2.0.2 computes them
# ----------------------------------------------------------------------------------------


@njit(cache=True)
def unclip_distance(xs, ys, ratio):
    """Offset distance ``area * ratio / length`` of a polygon, bitwise as shapely 2.0.2.

    Reproduces ``Polygon(points).area * ratio / Polygon(points).length`` of shapely 2.0.2
    (GEOS 3.11): the ring is closed by repeating the first point when it differs from the
    last, the area is GEOS ``Area::ofRingSigned`` (shoelace with x taken relative to the first
    vertex, summed in ring order, then halved and made absolute) and the length is GEOS
    ``Length::ofLine`` (sum of ``sqrt(dx*dx + dy*dy)`` in ring order).

    Parameters
    ----------
    xs, ys : ndarray of float64
        Vertex coordinates (at least 3 points), as given to shapely (not truncated).
    ratio : float
        Unclip ratio.

    Returns
    -------
    float
        The distance, or NaN where the reference skips the polygon (area or length is 0;
        also for fewer than 3 points).
    """
    n = xs.shape[0]
    if n < 3:
        return np.nan  # shapely cannot build such a polygon; the caller skips it
    closed = xs[0] == xs[n - 1] and ys[0] == ys[n - 1]
    m = n if closed else n + 1  # number of ring coordinates
    # signed area, GEOS order of operations
    x0 = xs[0]
    p1x = 0.0
    p1y = ys[0]
    p2x = xs[1 % n] - x0
    p2y = ys[1 % n]
    s = 0.0
    for i in range(1, m - 1):
        p0y = p1y
        p1x = p2x
        p1y = p2y
        k = (i + 1) % n
        p2x = xs[k] - x0
        p2y = ys[k]
        s += p1x * (p0y - p2y)
    area = 0.0 + abs(s / 2.0)
    # length
    length = 0.0
    lx = xs[0]
    ly = ys[0]
    for i in range(1, m):
        k = i % n
        dx = xs[k] - lx
        dy = ys[k] - ly
        length += math.sqrt(dx * dx + dy * dy)
        lx = xs[k]
        ly = ys[k]
    length = 0.0 + length
    if area == 0.0 or length == 0.0:
        return np.nan
    return area * ratio / length


# ----------------------------------------------------------------------------------------
# Stage 1: Clipper's raw offset path (ClipperOffset::AddPath / FixOrientations / DoOffset)
# ----------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _round(v):
    """Clipper ``Round``: half away from zero, through truncation of ``v -+ 0.5``."""
    if v < 0.0:
        return np.int64(v - 0.5)
    return np.int64(v + 0.5)


@njit(cache=True)
def _offset_input(xs, ys):
    """Distinct consecutive vertices of the input ring, oriented with non-negative area.

    ``ClipperOffset::AddPath`` drops trailing points equal to the first and consecutive
    duplicates; ``FixOrientations`` reverses the ring when Clipper's ``Area`` (summed in
    double precision, in Clipper's order) is negative. Returns ``n = 0`` when fewer than
    three distinct points remain (Clipper then ignores the path).
    """
    if xs.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 0
    hi = xs.shape[0] - 1
    while hi > 0 and xs[hi] == xs[0] and ys[hi] == ys[0]:
        hi -= 1
    cx = np.empty(hi + 1, dtype=np.int64)
    cy = np.empty(hi + 1, dtype=np.int64)
    cx[0] = xs[0]
    cy[0] = ys[0]
    j = 0
    for i in range(1, hi + 1):
        if xs[i] != cx[j] or ys[i] != cy[j]:
            j += 1
            cx[j] = xs[i]
            cy[j] = ys[i]
    n = j + 1
    if n < 3:
        return cx[:0], cy[:0], 0
    # Area = -a / 2 with a = sum((x[j] + x[i]) * (y[j] - y[i])), j the previous vertex;
    # the path is reversed when Area < 0, i.e. a > 0
    a = 0.0
    for i in range(n):
        k = i - 1 if i > 0 else n - 1
        a += (float(cx[k]) + float(cx[i])) * (float(cy[k]) - float(cy[i]))
    if -a * 0.5 < 0.0:
        cx[:n] = cx[:n][::-1].copy()
        cy[:n] = cy[:n][::-1].copy()
    return cx[:n], cy[:n], n


@njit(cache=True)
def _raw_offset(cx, cy, delta):
    """Clipper's raw offset path (``DoOffset`` with ``jtRound`` and ``etClosedPolygon``).

    Unit normals ``(dy, -dx) / |d|``; at each vertex ``j`` (previous edge ``k``) the sine
    of the turn decides between a single point (nearly straight), the three points
    offset / vertex / offset (concave side) and a round join whose step count comes from the
    arc tolerance; every coordinate is rounded half away from zero. The floating-point
    operations are written in Clipper's order so that every rounded point is identical.
    """
    n = cx.shape[0]
    ad = abs(delta)
    if ad * _DEF_ARC_TOLERANCE < _ARC_TOLERANCE:
        y = ad * _DEF_ARC_TOLERANCE
    else:
        y = _ARC_TOLERANCE
    steps = _PI / math.acos(1.0 - y / ad)
    if steps > ad * _PI:
        steps = ad * _PI
    msin = math.sin(_TWO_PI / steps)
    mcos = math.cos(_TWO_PI / steps)
    steps_per_rad = steps / _TWO_PI
    if delta < 0.0:
        msin = -msin

    nx = np.empty(n, dtype=np.float64)
    ny = np.empty(n, dtype=np.float64)
    for j in range(n):
        k = j + 1 if j + 1 < n else 0
        ddx = float(cx[k] - cx[j])
        ddy = float(cy[k] - cy[j])
        if ddx == 0.0 and ddy == 0.0:
            nx[j] = 0.0
            ny[j] = 0.0
        else:
            f = 1.0 / math.sqrt(ddx * ddx + ddy * ddy)
            ddx *= f
            ddy *= f
            nx[j] = ddy
            ny[j] = -ddx

    cap = n * (int(steps * 0.5) + 6)
    ox = np.empty(cap, dtype=np.int64)
    oy = np.empty(cap, dtype=np.int64)
    m = 0
    k = n - 1
    for j in range(n):
        sx = float(cx[j])
        sy = float(cy[j])
        sin_a = nx[k] * ny[j] - nx[j] * ny[k]
        straight = False
        if abs(sin_a * delta) < 1.0:
            cos_a = nx[k] * nx[j] + ny[j] * ny[k]
            if cos_a > 0:
                straight = True
        elif sin_a > 1.0:
            sin_a = 1.0
        elif sin_a < -1.0:
            sin_a = -1.0
        if straight:
            # nearly straight: one point on the previous edge's offset; Clipper returns
            # before advancing k, so the next vertex still turns from that edge
            ox[m] = _round(sx + nx[k] * delta)
            oy[m] = _round(sy + ny[k] * delta)
            m += 1
            continue
        if sin_a * delta < 0:
            ox[m] = _round(sx + nx[k] * delta)
            oy[m] = _round(sy + ny[k] * delta)
            ox[m + 1] = cx[j]
            oy[m + 1] = cy[j]
            ox[m + 2] = _round(sx + nx[j] * delta)
            oy[m + 2] = _round(sy + ny[j] * delta)
            m += 3
        else:
            a = math.atan2(sin_a, nx[k] * nx[j] + ny[k] * ny[j])
            st = np.int64(_round(steps_per_rad * abs(a)))
            if st < 1:
                st = 1
            if m + st + 1 > cap:  # cannot happen with the capacity above; kept as a guard
                return ox[:0], oy[:0]
            px = nx[k]
            py = ny[k]
            for _ in range(st):
                ox[m] = _round(sx + px * delta)
                oy[m] = _round(sy + py * delta)
                m += 1
                x2 = px
                px = px * mcos - msin * py
                py = x2 * msin + py * mcos
            ox[m] = _round(sx + nx[j] * delta)
            oy[m] = _round(sy + ny[j] * delta)
            m += 1
        k = j
    return ox[:m], oy[:m]


# ----------------------------------------------------------------------------------------
# Stage 2: the union with the positive fill rule
# ----------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _slopes_equal3(ax, ay, bx, by, cx_, cy_):
    """Clipper ``SlopesEqual(pt1, pt2, pt3)`` in 64-bit integers."""
    return (ay - by) * (bx - cx_) == (ax - bx) * (by - cy_)


@njit(cache=True)
def _union_input(rx, ry):
    """Vertices of the raw path as the union stage sees them (``ClipperBase::AddPath``).

    Trailing points equal to the first and consecutive duplicates are dropped, then the
    ring is walked once more removing duplicate points and middle points of collinear
    triples (spikes included), stepping back after each removal exactly as Clipper does, so
    that the surviving vertices and therefore the edges are the same.
    Returns an empty result when fewer than three vertices remain or all are on one
    horizontal line (Clipper then has nothing to clip).
    """
    hi = rx.shape[0] - 1
    while hi > 0 and rx[hi] == rx[0] and ry[hi] == ry[0]:
        hi -= 1
    while hi > 0 and rx[hi] == rx[hi - 1] and ry[hi] == ry[hi - 1]:
        hi -= 1
    if hi < 2:
        return rx[:0], ry[:0]
    n = hi + 1
    nxt = np.empty(n, dtype=np.int64)
    prv = np.empty(n, dtype=np.int64)
    for i in range(n):
        nxt[i] = i + 1 if i + 1 < n else 0
        prv[i] = i - 1 if i > 0 else n - 1
    e_start = 0
    e = 0
    loop_stop = 0
    while True:
        en = nxt[e]
        if rx[e] == rx[en] and ry[e] == ry[en]:
            if e == en:
                break
            if e == e_start:
                e_start = en
            ep = prv[e]
            nxt[ep] = en
            prv[en] = ep
            e = en
            loop_stop = e
            continue
        ep = prv[e]
        if ep == en:
            break
        if _slopes_equal3(rx[ep], ry[ep], rx[e], ry[e], rx[en], ry[en]):
            if e == e_start:
                e_start = en
            nxt[ep] = en
            prv[en] = ep
            e = ep
            loop_stop = e
            continue
        e = en
        if e == loop_stop:
            break
    if prv[e] == nxt[e]:
        return rx[:0], ry[:0]
    cnt = 1
    e = nxt[e_start]
    while e != e_start:
        cnt += 1
        e = nxt[e]
    px = np.empty(cnt, dtype=np.int64)
    py = np.empty(cnt, dtype=np.int64)
    e = e_start
    flat = True
    for i in range(cnt):
        px[i] = rx[e]
        py[i] = ry[e]
        if py[i] != py[0]:
            flat = False
        e = nxt[e]
    if flat:
        return rx[:0], ry[:0]
    return px, py


# ----------------------------------------------------------------------------------------
# Stage 2: the union sweep (Clipper::Execute(ctUnion, pftPositive) on one closed path)
# ----------------------------------------------------------------------------------------
#
# The sweep is a Vatti scan-line algorithm over the path's edges. It runs from the largest
# y to the smallest; each edge has a bottom (larger y) and a top, a slope Dx = dx/dy (or
# the HORIZONTAL marker), a winding delta and count, and the output ring it currently
# feeds. Output rings are doubly linked lists of integer points. Every decision (edge order
# on ties, the rounded crossing points, when a point is emitted, how two partial rings are
# joined, the order of crossings inside a beam, the order of local minima with equal y)
# follows Clipper 6.4.2 so that the first output ring is identical, vertex for vertex and
# from the same starting vertex; that includes the "joins" that merge or split rings along
# overlapping collinear edges after the sweep. Only what a single subject path with the
# positive fill needs is kept: no clip paths, no open paths, no even-odd rules, no
# StrictlySimple, no PreserveCollinear, no PolyTree.
#
# State layout. All state lives in one int64 table ``T`` of 17 columns, so that every
# helper receives a single array (passing many arrays through non-inlined calls costs a
# reference-count update per array and call):
#   row 0            running scalars (_G_*)
#   row 1            region layout (_L_*), fixed once built
#   rows 2..M+1      edges (fields _BX.._PS); an edge is named by its row
#   output points    (fields _QI.._QP) from row _L_Q0; a point is named by its row
#   output rings     (fields _RI.._RB) from row _L_R0; a ring is named by its row
#   scan-beam queue  rows from _L_SB0, 16 cells per row (the 17th unused)
#   local minima     rows from _L_LM0: y, left bound, right bound, sort order
#   crossings        rows from _L_IL0: edge 1, edge 2, x, y, sort order
#   ghost joins      rows from _L_GJ0: output point, offset point x, y
#   joins            rows from _L_JN0: output point 1, output point 2, offset point x, y
# An edge's Dx is recomputed from its end points when needed (same division, same value).

_NONE = -1
_LEFT = 1
_RIGHT = 2
_HORIZONTAL = -1.0e40
_NCOL = 17
_E0 = 2  # row of the first edge

# edge fields: bottom, current and top points, winding delta and count, output ring,
# side, path neighbours, next edge of the bound, active/sorted list neighbours
(_BX, _BY, _CX, _CY, _TX, _TY, _WD, _WC, _OI, _SD, _NX, _PV, _LML, _NA, _PA, _NS,
 _PS) = range(17)
# output point fields
_QI, _QX, _QY, _QN, _QP = range(5)
# output ring fields: ring it was merged into, hole flag, ring on its left, first point,
# cached bottom point
_RI, _RH, _RF, _RP, _RB = range(5)
# running scalars (row 0): list heads, failure flag, next free point and ring rows,
# scan-beam queue length, next local minimum, numbers of ghost joins and joins
_G_AEL, _G_SEL, _G_FAIL, _G_NQ, _G_NR, _G_NSB, _G_LM, _G_NGJ, _G_NJN = range(9)
# layout (row 1): first row and end row of each region, number of local minima
# (_L_SBEND is the scan-beam queue's capacity in cells)
(_L_Q0, _L_QEND, _L_R0, _L_REND, _L_SB0, _L_SBEND, _L_LM0, _L_NLM, _L_IL0, _L_ILEND,
 _L_GJ0, _L_GJEND, _L_JN0, _L_JNEND) = range(14)
# failure reasons
_FAIL_CAPACITY = 2
_FAIL_ERROR = 3


@njit(cache=True, inline="always")
def _fail(T, reason):
    """Record the first failure reason (later ones are consequences of it)."""
    if T[0, _G_FAIL] == 0:
        T[0, _G_FAIL] = reason


@njit(cache=True, inline="always")
def _horz(T, e):
    return T[e, _TY] == T[e, _BY]


@njit(cache=True, inline="always")
def _dx(T, e):
    """Clipper's ``Dx`` of an edge: dx/dy from bottom to top, HORIZONTAL when flat."""
    dy = T[e, _TY] - T[e, _BY]
    if dy == 0:
        return _HORIZONTAL
    return float(T[e, _TX] - T[e, _BX]) / float(dy)


@njit(cache=True)
def _top_x(T, e, y):
    """x of edge ``e`` at scan line ``y`` (Clipper ``TopX``: exact at the top vertex)."""
    if y == T[e, _TY]:
        return T[e, _TX]
    return T[e, _BX] + _round(_dx(T, e) * float(y - T[e, _BY]))


@njit(cache=True, inline="always")
def _slopes_equal4(ax, ay, bx, by, cx_, cy_, dx_, dy_):
    """Clipper ``SlopesEqual(pt1, pt2, pt3, pt4)``: segment ab parallel to segment cd."""
    return (ay - by) * (cx_ - dx_) == (ax - bx) * (cy_ - dy_)


# --- the scan-beam queue: pending y values, the largest popped first ---
#
# Clipper keeps a max-heap and drops duplicates when it pops, so a pop returns the largest
# pending value and removes every copy of it. Here the pending values are kept distinct
# and in increasing order (a push inserts unless the value is there already, a pop takes
# the last one): the same pops for any sequence of pushes. The queue holds few values at
# a time (the local minima below and the tops of the active edges), and a new top is
# usually near the end, so the insertion scans a short stretch.
#
# The values are stored 16 cells per row, so that a shift and a mask address a cell
# (k >= 0): cell k is T[_L_SB0 + k // 16, k % 16].
_SB_SHIFT = 4
_SB_MASK = 15


@njit(cache=True, inline="always")
def _sb_get(T, b, k):
    return T[b + (k >> _SB_SHIFT), k & _SB_MASK]


@njit(cache=True, inline="always")
def _sb_set(T, b, k, v):
    T[b + (k >> _SB_SHIFT), k & _SB_MASK] = v


@njit(cache=True)
def _sb_push(T, y):
    """Queue ``y`` (``InsertScanbeam``)."""
    b = T[1, _L_SB0]
    n = T[0, _G_NSB]
    i = n
    while i > 0:
        v = _sb_get(T, b, i - 1)
        if v == y:
            return
        if v < y:
            break
        i -= 1
    if n >= T[1, _L_SBEND]:
        _fail(T, _FAIL_CAPACITY)
        return
    for k in range(n, i, -1):
        _sb_set(T, b, k, _sb_get(T, b, k - 1))
    _sb_set(T, b, i, y)
    T[0, _G_NSB] = n + 1


@njit(cache=True)
def _sb_pop(T):
    """Largest pending y (``PopScanbeam``); returns ``(found, y)``."""
    n = T[0, _G_NSB]
    if n == 0:
        return False, np.int64(0)
    T[0, _G_NSB] = n - 1
    return True, _sb_get(T, T[1, _L_SB0], n - 1)


# --- libstdc++ std::sort ---
# Clipper sorts its local minima and the crossings of a beam by decreasing y with
# std::sort, which is not stable: elements with equal y end up in the order given by
# libstdc++'s introsort (median-of-3 quicksort down to 16 elements, heapsort past the
# depth limit, then insertion sort). That order decides which output ring is created
# first, so it is reproduced. The sequence is column ``cv`` of rows ``base..base+n-1``;
# its elements are row numbers whose key is in column ``ck``.


@njit(cache=True, inline="always")
def _before(T, ck, a, b):
    return T[b, ck] < T[a, ck]


@njit(cache=True)
def _heap_adjust(T, base, cv, ck, hole, length, value):
    top = hole
    second = hole
    while second < (length - 1) // 2:
        second = 2 * (second + 1)
        if _before(T, ck, T[base + second, cv], T[base + second - 1, cv]):
            second -= 1
        T[base + hole, cv] = T[base + second, cv]
        hole = second
    if (length & 1) == 0 and second == (length - 2) // 2:
        second = 2 * (second + 1)
        T[base + hole, cv] = T[base + second - 1, cv]
        hole = second - 1
    while hole > top:
        parent = (hole - 1) // 2
        if not _before(T, ck, T[base + parent, cv], value):
            break
        T[base + hole, cv] = T[base + parent, cv]
        hole = parent
    T[base + hole, cv] = value


@njit(cache=True)
def _heap_sort_range(T, base, cv, ck, first, last):
    length = last - first
    if length >= 2:
        parent = (length - 2) // 2
        while True:
            _heap_adjust(T, base + first, cv, ck, parent, length, T[base + first + parent, cv])
            if parent == 0:
                break
            parent -= 1
    while last - first > 1:
        last -= 1
        value = T[base + last, cv]
        T[base + last, cv] = T[base + first, cv]
        _heap_adjust(T, base + first, cv, ck, 0, last - first, value)


@njit(cache=True)
def _linear_insert(T, base, cv, ck, i):
    val = T[base + i, cv]
    j = i - 1
    while _before(T, ck, val, T[base + j, cv]):
        T[base + i, cv] = T[base + j, cv]
        i = j
        j -= 1
    T[base + i, cv] = val


@njit(cache=True)
def _insertion_sort(T, base, cv, ck, first, last):
    for i in range(first + 1, last):
        if _before(T, ck, T[base + i, cv], T[base + first, cv]):
            val = T[base + i, cv]
            for k in range(i, first, -1):
                T[base + k, cv] = T[base + k - 1, cv]
            T[base + first, cv] = val
        else:
            _linear_insert(T, base, cv, ck, i)


@njit(cache=True)
def _gnu_sort(T, base, cv, ck, n):
    """Sort by decreasing key exactly as libstdc++ ``std::sort`` does."""
    if n <= 1:
        return
    lg = 0
    t = n
    while t > 1:
        t >>= 1
        lg += 1
    # pending sub-ranges (the order in which disjoint ranges are sorted does not matter)
    st = np.empty((2 * lg + 4, 3), dtype=np.int64)
    ns = 1
    st[0, 0] = 0
    st[0, 1] = n
    st[0, 2] = 2 * lg
    while ns > 0:
        ns -= 1
        first = st[ns, 0]
        last = st[ns, 1]
        depth = st[ns, 2]
        while last - first > 16:
            if depth == 0:
                _heap_sort_range(T, base, cv, ck, first, last)
                break
            depth -= 1
            # median of (first+1, middle, last-1) moved to first
            a = T[base + first + 1, cv]
            b = T[base + first + (last - first) // 2, cv]
            c = T[base + last - 1, cv]
            if _before(T, ck, a, b):
                if _before(T, ck, b, c):
                    m = first + (last - first) // 2
                elif _before(T, ck, a, c):
                    m = last - 1
                else:
                    m = first + 1
            elif _before(T, ck, a, c):
                m = first + 1
            elif _before(T, ck, b, c):
                m = last - 1
            else:
                m = first + (last - first) // 2
            t = T[base + first, cv]
            T[base + first, cv] = T[base + m, cv]
            T[base + m, cv] = t
            # unguarded partition around the pivot at first
            pivot = T[base + first, cv]
            lo = first + 1
            hi = last
            while True:
                while _before(T, ck, T[base + lo, cv], pivot):
                    lo += 1
                hi -= 1
                while _before(T, ck, pivot, T[base + hi, cv]):
                    hi -= 1
                if not lo < hi:
                    break
                t = T[base + lo, cv]
                T[base + lo, cv] = T[base + hi, cv]
                T[base + hi, cv] = t
                lo += 1
            st[ns, 0] = lo
            st[ns, 1] = last
            st[ns, 2] = depth
            ns += 1
            last = lo
    if n > 16:
        _insertion_sort(T, base, cv, ck, 0, 16)
        for i in range(16, n):
            _linear_insert(T, base, cv, ck, i)
    else:
        _insertion_sort(T, base, cv, ck, 0, n)


# --- building edges and local minima (ClipperBase::AddPath for a closed path) ---


@njit(cache=True, inline="always")
def _reverse_horizontal(T, e):
    t = T[e, _TX]
    T[e, _TX] = T[e, _BX]
    T[e, _BX] = t


@njit(cache=True)
def _next_local_min(T, e):
    """Next edge whose bottom is shared with the previous edge (``FindNextLocMin``)."""
    while True:
        while (T[e, _BX] != T[T[e, _PV], _BX] or T[e, _BY] != T[T[e, _PV], _BY]
               or (T[e, _CX] == T[e, _TX] and T[e, _CY] == T[e, _TY])):
            e = T[e, _NX]
        if not _horz(T, e) and not _horz(T, T[e, _PV]):
            break
        while _horz(T, T[e, _PV]):
            e = T[e, _PV]
        e2 = e
        while _horz(T, e):
            e = T[e, _NX]
        if T[e, _TY] == T[T[e, _PV], _BY]:
            continue  # an intermediate horizontal, not a minimum
        if T[T[e2, _PV], _BX] < T[e, _BX]:
            e = e2
        break
    return e


@njit(cache=True)
def _process_bound(T, e, forward):
    """Chain the edges of one bound through ``_LML`` and align its horizontals
    (``ProcessBound``); returns the first edge beyond the bound."""
    result = e
    if _horz(T, e):
        es = T[e, _PV] if forward else T[e, _NX]
        if _horz(T, es):
            if T[es, _BX] != T[e, _BX] and T[es, _TX] != T[e, _BX]:
                _reverse_horizontal(T, e)
        elif T[es, _BX] != T[e, _BX]:
            _reverse_horizontal(T, e)
    e_start = e
    if forward:
        while T[result, _TY] == T[T[result, _NX], _BY]:
            result = T[result, _NX]
        if _horz(T, result):
            h = result
            while _horz(T, T[h, _PV]):
                h = T[h, _PV]
            if T[T[h, _PV], _TX] > T[T[result, _NX], _TX]:
                result = T[h, _PV]
        while e != result:
            T[e, _LML] = T[e, _NX]
            if _horz(T, e) and e != e_start and T[e, _BX] != T[T[e, _PV], _TX]:
                _reverse_horizontal(T, e)
            e = T[e, _NX]
        if _horz(T, e) and e != e_start and T[e, _BX] != T[T[e, _PV], _TX]:
            _reverse_horizontal(T, e)
        result = T[result, _NX]
    else:
        while T[result, _TY] == T[T[result, _PV], _BY]:
            result = T[result, _PV]
        if _horz(T, result):
            h = result
            while _horz(T, T[h, _NX]):
                h = T[h, _NX]
            if T[T[h, _NX], _TX] >= T[T[result, _PV], _TX]:
                result = T[h, _NX]
        while e != result:
            T[e, _LML] = T[e, _PV]
            if _horz(T, e) and e != e_start and T[e, _BX] != T[T[e, _NX], _TX]:
                _reverse_horizontal(T, e)
            e = T[e, _PV]
        if _horz(T, e) and e != e_start and T[e, _BX] != T[T[e, _NX], _TX]:
            _reverse_horizontal(T, e)
        result = T[result, _PV]
    return result


# --- active edge list (AEL) and sorted/horizontal edge list (SEL) ---


@njit(cache=True)
def _e2_inserts_before_e1(T, e1, e2):
    if T[e2, _CX] == T[e1, _CX]:
        if T[e2, _TY] > T[e1, _TY]:
            return T[e2, _TX] < _top_x(T, e1, T[e2, _TY])
        return T[e1, _TX] > _top_x(T, e2, T[e1, _TY])
    return T[e2, _CX] < T[e1, _CX]


@njit(cache=True)
def _insert_into_ael(T, e, start):
    head = T[0, _G_AEL]
    if head == _NONE:
        T[e, _PA] = _NONE
        T[e, _NA] = _NONE
        T[0, _G_AEL] = e
    elif start == _NONE and _e2_inserts_before_e1(T, head, e):
        T[e, _PA] = _NONE
        T[e, _NA] = head
        T[head, _PA] = e
        T[0, _G_AEL] = e
    else:
        if start == _NONE:
            start = head
        while T[start, _NA] != _NONE and not _e2_inserts_before_e1(T, T[start, _NA], e):
            start = T[start, _NA]
        nxt = T[start, _NA]
        T[e, _NA] = nxt
        if nxt != _NONE:
            T[nxt, _PA] = e
        T[e, _PA] = start
        T[start, _NA] = e


@njit(cache=True)
def _delete_from_list(T, e, fnext, fprev, ghead):
    p = T[e, fprev]
    n = T[e, fnext]
    if p == _NONE and n == _NONE and e != T[0, ghead]:
        return
    if p != _NONE:
        T[p, fnext] = n
    else:
        T[0, ghead] = n
    if n != _NONE:
        T[n, fprev] = p
    T[e, fnext] = _NONE
    T[e, fprev] = _NONE


@njit(cache=True)
def _swap_in_list(T, e1, e2, fnext, fprev, ghead):
    """Exchange two edges in the AEL or SEL (``SwapPositionsInAEL`` / ``...InSEL``)."""
    if T[e1, fnext] == _NONE and T[e1, fprev] == _NONE:
        return
    if T[e2, fnext] == _NONE and T[e2, fprev] == _NONE:
        return
    if T[e1, fnext] == e2:
        n = T[e2, fnext]
        if n != _NONE:
            T[n, fprev] = e1
        p = T[e1, fprev]
        if p != _NONE:
            T[p, fnext] = e2
        T[e2, fprev] = p
        T[e2, fnext] = e1
        T[e1, fprev] = e2
        T[e1, fnext] = n
    elif T[e2, fnext] == e1:
        n = T[e1, fnext]
        if n != _NONE:
            T[n, fprev] = e2
        p = T[e2, fprev]
        if p != _NONE:
            T[p, fnext] = e1
        T[e1, fprev] = p
        T[e1, fnext] = e2
        T[e2, fprev] = e1
        T[e2, fnext] = n
    else:
        n = T[e1, fnext]
        p = T[e1, fprev]
        T[e1, fnext] = T[e2, fnext]
        if T[e1, fnext] != _NONE:
            T[T[e1, fnext], fprev] = e1
        T[e1, fprev] = T[e2, fprev]
        if T[e1, fprev] != _NONE:
            T[T[e1, fprev], fnext] = e1
        T[e2, fnext] = n
        if n != _NONE:
            T[n, fprev] = e2
        T[e2, fprev] = p
        if p != _NONE:
            T[p, fnext] = e2
    if T[e1, fprev] == _NONE:
        T[0, ghead] = e1
    elif T[e2, fprev] == _NONE:
        T[0, ghead] = e2


@njit(cache=True)
def _swap_in_ael(T, e1, e2):
    # an edge already removed from the AEL has no neighbours
    if T[e1, _NA] == T[e1, _PA] or T[e2, _NA] == T[e2, _PA]:
        return
    _swap_in_list(T, e1, e2, _NA, _PA, _G_AEL)


@njit(cache=True)
def _add_to_sel(T, e):
    head = T[0, _G_SEL]
    if head == _NONE:
        T[0, _G_SEL] = e
        T[e, _PS] = _NONE
        T[e, _NS] = _NONE
    else:
        T[e, _NS] = head
        T[e, _PS] = _NONE
        T[head, _PS] = e
        T[0, _G_SEL] = e


@njit(cache=True)
def _update_edge_into_ael(T, e):
    """Replace ``e`` in the AEL by the next edge of its bound (``UpdateEdgeIntoAEL``)."""
    n = T[e, _LML]
    if n == _NONE:
        _fail(T, _FAIL_ERROR)
        return e
    T[n, _OI] = T[e, _OI]
    p = T[e, _PA]
    a = T[e, _NA]
    if p != _NONE:
        T[p, _NA] = n
    else:
        T[0, _G_AEL] = n
    if a != _NONE:
        T[a, _PA] = n
    T[n, _SD] = T[e, _SD]
    T[n, _WD] = T[e, _WD]
    T[n, _WC] = T[e, _WC]
    T[n, _CX] = T[n, _BX]
    T[n, _CY] = T[n, _BY]
    T[n, _PA] = p
    T[n, _NA] = a
    if not _horz(T, n):
        _sb_push(T, T[n, _TY])
    return n


# --- output rings ---


@njit(cache=True)
def _set_hole_state(T, e, r):
    """A new ring is a hole when an odd number of rings are open on its left."""
    e2 = T[e, _PA]
    tmp = _NONE
    while e2 != _NONE:
        if T[e2, _OI] >= 0 and T[e2, _WD] != 0:
            if tmp == _NONE:
                tmp = e2
            elif T[tmp, _OI] == T[e2, _OI]:
                tmp = _NONE
        e2 = T[e2, _PA]
    if tmp == _NONE:
        T[r, _RF] = _NONE
        T[r, _RH] = 0
    else:
        T[r, _RF] = T[tmp, _OI]
        T[r, _RH] = 1 - T[T[tmp, _OI], _RH]


@njit(cache=True)
def _add_out_pt(T, e, x, y):
    """Append a point to the ring of edge ``e`` at the end the edge holds (``AddOutPt``);
    starts a new ring when the edge has none."""
    q = T[0, _G_NQ]
    if q >= T[1, _L_QEND]:
        _fail(T, _FAIL_CAPACITY)
        return _NONE
    if T[e, _OI] < 0:
        if T[0, _G_NR] >= T[1, _L_REND]:
            _fail(T, _FAIL_CAPACITY)
            return _NONE
        r = _new_ring(T)
        T[q, _QI] = T[r, _RI]
        T[q, _QX] = x
        T[q, _QY] = y
        T[q, _QN] = q
        T[q, _QP] = q
        T[0, _G_NQ] = q + 1
        T[r, _RP] = q
        _set_hole_state(T, e, r)
        T[e, _OI] = r
        return q
    r = T[e, _OI]
    op = T[r, _RP]
    to_front = T[e, _SD] == _LEFT
    if to_front and T[op, _QX] == x and T[op, _QY] == y:
        return op
    last = T[op, _QP]
    if not to_front and T[last, _QX] == x and T[last, _QY] == y:
        return last
    T[q, _QI] = T[r, _RI]
    T[q, _QX] = x
    T[q, _QY] = y
    T[q, _QN] = op
    T[q, _QP] = last
    T[last, _QN] = q
    T[op, _QP] = q
    T[0, _G_NQ] = q + 1
    if to_front:
        T[r, _RP] = q
    return q


@njit(cache=True)
def _ring_area(T, op):
    start = op
    a = 0.0
    while True:
        p = T[op, _QP]
        a += float(T[p, _QX] + T[op, _QX]) * float(T[p, _QY] - T[op, _QY])
        op = T[op, _QN]
        if op == start:
            break
    return a * 0.5


@njit(cache=True)
def _reverse_ring(T, pp):
    p1 = pp
    while True:
        p2 = T[p1, _QN]
        T[p1, _QN] = T[p1, _QP]
        T[p1, _QP] = p2
        p1 = p2
        if p1 == pp:
            break


@njit(cache=True, inline="always")
def _pt_dx(x1, y1, x2, y2):
    if y1 == y2:
        return _HORIZONTAL
    return float(x2 - x1) / float(y2 - y1)


@njit(cache=True)
def _first_is_bottom_pt(T, b1, b2):
    """Which of two coincident bottom points starts the ring below (``FirstIsBottomPt``)."""
    x = T[b1, _QX]
    y = T[b1, _QY]
    p = T[b1, _QP]
    while T[p, _QX] == x and T[p, _QY] == y and p != b1:
        p = T[p, _QP]
    d1p = abs(_pt_dx(x, y, T[p, _QX], T[p, _QY]))
    p = T[b1, _QN]
    while T[p, _QX] == x and T[p, _QY] == y and p != b1:
        p = T[p, _QN]
    d1n = abs(_pt_dx(x, y, T[p, _QX], T[p, _QY]))
    x = T[b2, _QX]
    y = T[b2, _QY]
    p = T[b2, _QP]
    while T[p, _QX] == x and T[p, _QY] == y and p != b2:
        p = T[p, _QP]
    d2p = abs(_pt_dx(x, y, T[p, _QX], T[p, _QY]))
    p = T[b2, _QN]
    while T[p, _QX] == x and T[p, _QY] == y and p != b2:
        p = T[p, _QN]
    d2n = abs(_pt_dx(x, y, T[p, _QX], T[p, _QY]))
    if max(d1p, d1n) == max(d2p, d2n) and min(d1p, d1n) == min(d2p, d2n):
        return _ring_area(T, b1) > 0
    return (d1p >= d2p and d1p >= d2n) or (d1n >= d2p and d1n >= d2n)


@njit(cache=True)
def _bottom_pt(T, pp):
    """Lowest (then leftmost) point of a ring (``GetBottomPt``)."""
    dups = _NONE
    p = T[pp, _QN]
    while p != pp:
        if T[p, _QY] > T[pp, _QY]:
            pp = p
            dups = _NONE
        elif T[p, _QY] == T[pp, _QY] and T[p, _QX] <= T[pp, _QX]:
            if T[p, _QX] < T[pp, _QX]:
                dups = _NONE
                pp = p
            elif T[p, _QN] != pp and T[p, _QP] != pp:
                dups = p
        p = T[p, _QN]
    if dups != _NONE:
        while dups != p:
            if not _first_is_bottom_pt(T, p, dups):
                pp = dups
            dups = T[dups, _QN]
            while T[dups, _QX] != T[pp, _QX] or T[dups, _QY] != T[pp, _QY]:
                dups = T[dups, _QN]
    return pp


@njit(cache=True)
def _lowermost_ring(T, r1, r2):
    if T[r1, _RB] == _NONE:
        T[r1, _RB] = _bottom_pt(T, T[r1, _RP])
    if T[r2, _RB] == _NONE:
        T[r2, _RB] = _bottom_pt(T, T[r2, _RP])
    b1 = T[r1, _RB]
    b2 = T[r2, _RB]
    if T[b1, _QY] > T[b2, _QY]:
        return r1
    if T[b1, _QY] < T[b2, _QY]:
        return r2
    if T[b1, _QX] < T[b2, _QX]:
        return r1
    if T[b1, _QX] > T[b2, _QX]:
        return r2
    if T[b1, _QN] == b1:
        return r2
    if T[b2, _QN] == b2:
        return r1
    if _first_is_bottom_pt(T, b1, b2):
        return r1
    return r2


@njit(cache=True)
def _ring_left_of(T, r1, r2):
    """True when ``r2`` is on the chain of rings to the left of ``r1``."""
    while True:
        r1 = T[r1, _RF]
        if r1 == r2:
            return True
        if r1 == _NONE:
            return False


@njit(cache=True)
def _append_ring(T, e1, e2):
    """Join the ring of ``e2`` onto the ring of ``e1`` at a local maximum (``AppendPolygon``)."""
    r1 = T[e1, _OI]
    r2 = T[e2, _OI]
    if _ring_left_of(T, r1, r2):
        hole_ref = r2
    elif _ring_left_of(T, r2, r1):
        hole_ref = r1
    else:
        hole_ref = _lowermost_ring(T, r1, r2)
    p1_lft = T[r1, _RP]
    p1_rt = T[p1_lft, _QP]
    p2_lft = T[r2, _RP]
    p2_rt = T[p2_lft, _QP]
    if T[e1, _SD] == _LEFT:
        if T[e2, _SD] == _LEFT:
            _reverse_ring(T, p2_lft)
            T[p2_lft, _QN] = p1_lft
            T[p1_lft, _QP] = p2_lft
            T[p1_rt, _QN] = p2_rt
            T[p2_rt, _QP] = p1_rt
            T[r1, _RP] = p2_rt
        else:
            T[p2_rt, _QN] = p1_lft
            T[p1_lft, _QP] = p2_rt
            T[p2_lft, _QP] = p1_rt
            T[p1_rt, _QN] = p2_lft
            T[r1, _RP] = p2_lft
    else:
        if T[e2, _SD] == _RIGHT:
            _reverse_ring(T, p2_lft)
            T[p1_rt, _QN] = p2_rt
            T[p2_rt, _QP] = p1_rt
            T[p2_lft, _QN] = p1_lft
            T[p1_lft, _QP] = p2_lft
        else:
            T[p1_rt, _QN] = p2_lft
            T[p2_lft, _QP] = p1_rt
            T[p1_lft, _QP] = p2_rt
            T[p2_rt, _QN] = p1_lft
    T[r1, _RB] = _NONE
    if hole_ref == r2:
        if T[r2, _RF] != r1:
            T[r1, _RF] = T[r2, _RF]
        T[r1, _RH] = T[r2, _RH]
    T[r2, _RP] = _NONE
    T[r2, _RB] = _NONE
    T[r2, _RF] = r1
    ok_idx = T[e1, _OI]
    obsolete = T[e2, _OI]
    T[e1, _OI] = _NONE
    T[e2, _OI] = _NONE
    e = T[0, _G_AEL]
    while e != _NONE:
        if T[e, _OI] == obsolete:
            T[e, _OI] = ok_idx
            T[e, _SD] = T[e1, _SD]
            break
        e = T[e, _NA]
    T[r2, _RI] = T[r1, _RI]


@njit(cache=True)
def _add_local_max(T, e1, e2, x, y):
    _add_out_pt(T, e1, x, y)
    if T[e1, _OI] == T[e2, _OI]:
        T[e1, _OI] = _NONE
        T[e2, _OI] = _NONE
    elif T[e1, _OI] < T[e2, _OI]:
        _append_ring(T, e1, e2)
    else:
        _append_ring(T, e2, e1)


@njit(cache=True)
def _add_local_min(T, e1, e2, x, y):
    """Start a ring at a local minimum; the steeper edge takes the left side."""
    if _horz(T, e2) or _dx(T, e1) > _dx(T, e2):
        result = _add_out_pt(T, e1, x, y)
        T[e2, _OI] = T[e1, _OI]
        T[e1, _SD] = _LEFT
        T[e2, _SD] = _RIGHT
        e = e1
        prev_e = T[e2, _PA] if T[e, _PA] == e2 else T[e, _PA]
    else:
        result = _add_out_pt(T, e2, x, y)
        T[e1, _OI] = T[e2, _OI]
        T[e1, _SD] = _RIGHT
        T[e2, _SD] = _LEFT
        e = e2
        prev_e = T[e1, _PA] if T[e, _PA] == e1 else T[e, _PA]
    if prev_e != _NONE and T[prev_e, _OI] >= 0 and T[prev_e, _TY] < y and T[e, _TY] < y:
        xp = _top_x(T, prev_e, y)
        xe = _top_x(T, e, y)
        if (xp == xe and T[e, _WD] != 0 and T[prev_e, _WD] != 0
                and _slopes_equal4(xp, y, T[prev_e, _TX], T[prev_e, _TY],
                                   xe, y, T[e, _TX], T[e, _TY])):
            # overlapping collinear edges: their rings are joined after the sweep
            op = _add_out_pt(T, prev_e, x, y)
            _add_join(T, result, op, T[e, _TX], T[e, _TY])
    return result


@njit(cache=True, inline="always")
def _swap_sides_and_rings(T, e1, e2):
    t = T[e1, _SD]
    T[e1, _SD] = T[e2, _SD]
    T[e2, _SD] = t
    t = T[e1, _OI]
    T[e1, _OI] = T[e2, _OI]
    T[e2, _OI] = t


@njit(cache=True)
def _intersect_edges(T, e1, e2, x, y):
    """Update winding counts where two edges cross and emit the crossing point when the
    boundary of the positive region turns there (``IntersectEdges``; ``e1`` is on the
    right of ``e2`` above the point)."""
    c1 = T[e1, _OI] >= 0
    c2 = T[e2, _OI] >= 0
    if T[e1, _WC] + T[e2, _WD] == 0:
        T[e1, _WC] = -T[e1, _WC]
    else:
        T[e1, _WC] += T[e2, _WD]
    if T[e2, _WC] - T[e1, _WD] == 0:
        T[e2, _WC] = -T[e2, _WC]
    else:
        T[e2, _WC] -= T[e1, _WD]
    w1 = T[e1, _WC]
    w2 = T[e2, _WC]
    if c1 and c2:
        if (w1 != 0 and w1 != 1) or (w2 != 0 and w2 != 1):
            _add_local_max(T, e1, e2, x, y)
        else:
            _add_out_pt(T, e1, x, y)
            _add_out_pt(T, e2, x, y)
            _swap_sides_and_rings(T, e1, e2)
    elif c1:
        if w2 == 0 or w2 == 1:
            _add_out_pt(T, e1, x, y)
            _swap_sides_and_rings(T, e1, e2)
    elif c2:
        if w1 == 0 or w1 == 1:
            _add_out_pt(T, e2, x, y)
            _swap_sides_and_rings(T, e1, e2)
    elif (w1 == 0 or w1 == 1) and (w2 == 0 or w2 == 1):
        if w1 == 1 and w2 == 1:
            _add_local_min(T, e1, e2, x, y)
        else:
            t = T[e1, _SD]
            T[e1, _SD] = T[e2, _SD]
            T[e2, _SD] = t


@njit(cache=True)
def _set_winding_count(T, e):
    """Winding count of a new edge from its left neighbour (non-zero family rules)."""
    p = T[e, _PA]
    while p != _NONE and T[p, _WD] == 0:
        p = T[p, _PA]
    if p == _NONE:
        T[e, _WC] = T[e, _WD]
        return
    wc = T[p, _WC]
    if wc * T[p, _WD] < 0:
        if abs(wc) > 1:
            if T[p, _WD] * T[e, _WD] < 0:
                T[e, _WC] = wc
            else:
                T[e, _WC] = wc + T[e, _WD]
        else:
            T[e, _WC] = T[e, _WD]
    else:
        if T[p, _WD] * T[e, _WD] < 0:
            T[e, _WC] = wc
        else:
            T[e, _WC] = wc + T[e, _WD]


@njit(cache=True, inline="always")
def _horz_overlap(a1, a2, b1, b2):
    if a1 > a2:
        t = a1
        a1 = a2
        a2 = t
    if b1 > b2:
        t = b1
        b1 = b2
        b2 = t
    return a1 < b2 and b1 < a2


@njit(cache=True)
def _insert_local_minima(T, bot_y):
    """Insert the bounds of every local minimum at ``bot_y`` (``InsertLocalMinimaIntoAEL``)."""
    lm0 = T[1, _L_LM0]
    gj0 = T[1, _L_GJ0]
    while T[0, _G_LM] < T[1, _L_NLM]:
        node = T[lm0 + T[0, _G_LM], 3]
        if T[node, 0] != bot_y:
            break
        lb = T[node, 1]
        rb = T[node, 2]
        T[0, _G_LM] += 1
        op1 = _NONE
        _insert_into_ael(T, lb, _NONE)
        _insert_into_ael(T, rb, lb)
        _set_winding_count(T, lb)
        T[rb, _WC] = T[lb, _WC]
        if T[lb, _WC] == 1:
            op1 = _add_local_min(T, lb, rb, T[lb, _BX], T[lb, _BY])
        _sb_push(T, T[lb, _TY])
        if _horz(T, rb):
            _add_to_sel(T, rb)
            if T[rb, _LML] != _NONE:
                _sb_push(T, T[T[rb, _LML], _TY])
        else:
            _sb_push(T, T[rb, _TY])
        if T[0, _G_FAIL] != 0:
            return
        if op1 != _NONE and _horz(T, rb) and T[0, _G_NGJ] > 0 and T[rb, _WD] != 0:
            # a horizontal minimum overlapping a horizontal just swept: join the rings
            for i in range(T[0, _G_NGJ]):
                g = gj0 + i
                if _horz_overlap(T[T[g, 0], _QX], T[g, 1], T[rb, _BX], T[rb, _TX]):
                    _add_join(T, T[g, 0], op1, T[g, 1], T[g, 2])
        pl = T[lb, _PA]
        if (T[lb, _OI] >= 0 and pl != _NONE and T[pl, _CX] == T[lb, _BX] and T[pl, _OI] >= 0
                and _slopes_equal4(T[pl, _BX], T[pl, _BY], T[pl, _TX], T[pl, _TY],
                                   T[lb, _CX], T[lb, _CY], T[lb, _TX], T[lb, _TY])
                and T[lb, _WD] != 0 and T[pl, _WD] != 0):
            op2 = _add_out_pt(T, pl, T[lb, _BX], T[lb, _BY])
            _add_join(T, op1, op2, T[lb, _TX], T[lb, _TY])
        if T[lb, _NA] != rb:
            pr = T[rb, _PA]
            if (T[rb, _OI] >= 0 and T[pr, _OI] >= 0
                    and _slopes_equal4(T[pr, _CX], T[pr, _CY], T[pr, _TX], T[pr, _TY],
                                       T[rb, _CX], T[rb, _CY], T[rb, _TX], T[rb, _TY])
                    and T[rb, _WD] != 0 and T[pr, _WD] != 0):
                op2 = _add_out_pt(T, pr, T[rb, _BX], T[rb, _BY])
                _add_join(T, op1, op2, T[rb, _TX], T[rb, _TY])
            e = T[lb, _NA]
            if e != _NONE:
                while e != rb:
                    _intersect_edges(T, rb, e, T[lb, _CX], T[lb, _CY])
                    e = T[e, _NA]


@njit(cache=True)
def _maxima_pair(T, e, in_ael_only):
    """The other edge ending at the local maximum on top of ``e`` (``GetMaximaPair[Ex]``)."""
    n = T[e, _NX]
    if T[n, _TX] == T[e, _TX] and T[n, _TY] == T[e, _TY] and T[n, _LML] == _NONE:
        r = n
    else:
        p = T[e, _PV]
        if T[p, _TX] == T[e, _TX] and T[p, _TY] == T[e, _TY] and T[p, _LML] == _NONE:
            r = p
        else:
            return _NONE
    if in_ael_only and T[r, _NA] == T[r, _PA] and not _horz(T, r):
        return _NONE
    return r


@njit(cache=True)
def _add_join(T, op1, op2, x, y):
    """Record that the rings of two output points share a collinear edge (``AddJoin``)."""
    j = T[1, _L_JN0] + T[0, _G_NJN]
    if j >= T[1, _L_JNEND]:
        _fail(T, _FAIL_CAPACITY)
        return
    T[j, 0] = op1
    T[j, 1] = op2
    T[j, 2] = x
    T[j, 3] = y
    T[0, _G_NJN] += 1


@njit(cache=True)
def _add_ghost_join(T, op, x, y):
    """Remember a swept horizontal that a later horizontal minimum may overlap."""
    g = T[1, _L_GJ0] + T[0, _G_NGJ]
    if g >= T[1, _L_GJEND]:
        _fail(T, _FAIL_CAPACITY)
        return
    T[g, 0] = op
    T[g, 1] = x
    T[g, 2] = y
    T[0, _G_NGJ] += 1


@njit(cache=True)
def _join_pending_horizontals(T, h, op1):
    """Join ``op1`` with every pending contributing horizontal overlapping ``h``."""
    en = T[0, _G_SEL]
    while en != _NONE:
        if T[en, _OI] >= 0 and _horz_overlap(T[h, _BX], T[h, _TX], T[en, _BX], T[en, _TX]):
            r = T[en, _OI]
            op2 = T[r, _RP] if T[en, _SD] == _LEFT else T[T[r, _RP], _QP]
            _add_join(T, op2, op1, T[en, _TX], T[en, _TY])
        en = T[en, _NS]


@njit(cache=True)
def _process_horizontal(T, h):
    """Sweep one horizontal edge (and the horizontals chained after it) across the edges
    it meets (``ProcessHorizontal``); crossings are at the other edge's current x."""
    if T[h, _BX] < T[h, _TX]:
        left = T[h, _BX]
        right = T[h, _TX]
        l2r = True
    else:
        left = T[h, _TX]
        right = T[h, _BX]
        l2r = False
    e_last = h
    while T[e_last, _LML] != _NONE and _horz(T, T[e_last, _LML]):
        e_last = T[e_last, _LML]
    e_max = _NONE
    if T[e_last, _LML] == _NONE:
        e_max = _maxima_pair(T, e_last, False)
    op1 = _NONE
    while True:
        is_last = h == e_last
        e = T[h, _NA] if l2r else T[h, _PA]
        while e != _NONE:
            if (l2r and T[e, _CX] > right) or ((not l2r) and T[e, _CX] < left):
                break
            # stop at the end of an intermediate horizontal when the edge lies above the
            # next edge of the bound
            if (T[e, _CX] == T[h, _TX] and T[h, _LML] != _NONE
                    and _dx(T, e) < _dx(T, T[h, _LML])):
                break
            if T[h, _OI] >= 0:
                op1 = _add_out_pt(T, h, T[e, _CX], T[e, _CY])
                _join_pending_horizontals(T, h, op1)
                _add_ghost_join(T, op1, T[h, _BX], T[h, _BY])
            if e == e_max and is_last:
                if T[h, _OI] >= 0:
                    _add_local_max(T, h, e_max, T[h, _TX], T[h, _TY])
                _delete_from_list(T, h, _NA, _PA, _G_AEL)
                _delete_from_list(T, e_max, _NA, _PA, _G_AEL)
                return
            if l2r:
                _intersect_edges(T, h, e, T[e, _CX], T[h, _CY])
            else:
                _intersect_edges(T, e, h, T[e, _CX], T[h, _CY])
            e_next = T[e, _NA] if l2r else T[e, _PA]
            _swap_in_ael(T, h, e)
            e = e_next
        if T[h, _LML] == _NONE or not _horz(T, T[h, _LML]):
            break
        h = _update_edge_into_ael(T, h)
        if T[h, _OI] >= 0:
            _add_out_pt(T, h, T[h, _BX], T[h, _BY])
        if T[h, _BX] < T[h, _TX]:
            left = T[h, _BX]
            right = T[h, _TX]
            l2r = True
        else:
            left = T[h, _TX]
            right = T[h, _BX]
            l2r = False
    if T[h, _OI] >= 0 and op1 == _NONE:
        r = T[h, _OI]
        op1 = T[r, _RP] if T[h, _SD] == _LEFT else T[T[r, _RP], _QP]
        _join_pending_horizontals(T, h, op1)
        _add_ghost_join(T, op1, T[h, _TX], T[h, _TY])
    if T[h, _LML] != _NONE:
        if T[h, _OI] >= 0:
            op1 = _add_out_pt(T, h, T[h, _TX], T[h, _TY])
            h = _update_edge_into_ael(T, h)
            if T[h, _WD] == 0:
                return
            # the edge above the horizontal overlapping a neighbour: join their rings
            for side in range(2):
                o = T[h, _PA] if side == 0 else T[h, _NA]
                if (o != _NONE and T[o, _CX] == T[h, _BX] and T[o, _CY] == T[h, _BY]
                        and T[o, _WD] != 0 and T[o, _OI] >= 0 and T[o, _CY] > T[o, _TY]
                        and (T[h, _TY] - T[h, _BY]) * (T[o, _TX] - T[o, _BX])
                        == (T[h, _TX] - T[h, _BX]) * (T[o, _TY] - T[o, _BY])):
                    op2 = _add_out_pt(T, o, T[h, _BX], T[h, _BY])
                    _add_join(T, op1, op2, T[h, _TX], T[h, _TY])
                    break
        else:
            _update_edge_into_ael(T, h)
    else:
        if T[h, _OI] >= 0:
            _add_out_pt(T, h, T[h, _TX], T[h, _TY])
        _delete_from_list(T, h, _NA, _PA, _G_AEL)


@njit(cache=True)
def _process_horizontals(T):
    while T[0, _G_SEL] != _NONE and T[0, _G_FAIL] == 0:
        h = T[0, _G_SEL]
        _delete_from_list(T, h, _NS, _PS, _G_SEL)
        _process_horizontal(T, h)


@njit(cache=True)
def _intersect_point(T, e1, e2):
    """Rounded crossing point of two edges (``IntersectPoint``), clamped to the beam."""
    d1 = _dx(T, e1)
    d2 = _dx(T, e2)
    if d1 == d2:
        y = T[e1, _CY]
        return _top_x(T, e1, y), y
    if d1 == 0.0:
        x = T[e1, _BX]
        if _horz(T, e2):
            y = T[e2, _BY]
        else:
            b2 = T[e2, _BY] - (T[e2, _BX] / d2)
            y = _round(x / d2 + b2)
    elif d2 == 0.0:
        x = T[e2, _BX]
        if _horz(T, e1):
            y = T[e1, _BY]
        else:
            b1 = T[e1, _BY] - (T[e1, _BX] / d1)
            y = _round(x / d1 + b1)
    else:
        b1 = T[e1, _BX] - T[e1, _BY] * d1
        b2 = T[e2, _BX] - T[e2, _BY] * d2
        q = (b2 - b1) / (d1 - d2)
        y = _round(q)
        if abs(d1) < abs(d2):
            x = _round(d1 * q + b1)
        else:
            x = _round(d2 * q + b2)
    if y < T[e1, _TY] or y < T[e2, _TY]:
        y = T[e1, _TY] if T[e1, _TY] > T[e2, _TY] else T[e2, _TY]
        if abs(d1) < abs(d2):
            x = _top_x(T, e1, y)
        else:
            x = _top_x(T, e2, y)
    if y > T[e1, _CY]:
        y = T[e1, _CY]
        if abs(d1) > abs(d2):
            x = _top_x(T, e2, y)
        else:
            x = _top_x(T, e1, y)
    return np.int64(x), np.int64(y)


@njit(cache=True, inline="always")
def _adjacent_in_sel(T, node):
    e1 = T[node, 0]
    e2 = T[node, 1]
    return T[e1, _NS] == e2 or T[e1, _PS] == e2


@njit(cache=True)
def _process_intersections(T, top_y):
    """Find the edges whose order changes inside the beam (bubble sort on the rounded x at
    ``top_y``), then emit the crossings bottom-most first keeping every swapped pair
    adjacent (``ProcessIntersections``). Returns False where Clipper fails."""
    if T[0, _G_AEL] == _NONE:
        return True
    il0 = T[1, _L_IL0]
    ilend = T[1, _L_ILEND]
    e = T[0, _G_AEL]
    T[0, _G_SEL] = e
    while e != _NONE:
        T[e, _PS] = T[e, _PA]
        T[e, _NS] = T[e, _NA]
        T[e, _CX] = _top_x(T, e, top_y)
        e = T[e, _NA]
    n = 0
    while True:
        modified = False
        e = T[0, _G_SEL]
        while T[e, _NS] != _NONE:
            en = T[e, _NS]
            if T[e, _CX] > T[en, _CX]:
                x, y = _intersect_point(T, e, en)
                if y < top_y:
                    x = _top_x(T, e, top_y)
                    y = top_y
                if il0 + n >= ilend:
                    _fail(T, _FAIL_CAPACITY)
                    T[0, _G_SEL] = _NONE
                    return True
                node = il0 + n
                T[node, 0] = e
                T[node, 1] = en
                T[node, 2] = x
                T[node, 3] = y
                T[node, 4] = node
                n += 1
                _swap_in_list(T, e, en, _NS, _PS, _G_SEL)
                modified = True
            else:
                e = en
        if T[e, _PS] != _NONE:
            T[T[e, _PS], _NS] = _NONE
        else:
            break
        if not modified:
            break
    T[0, _G_SEL] = _NONE
    if n == 0:
        return True
    if n > 1:
        # copy the AEL order into the SEL, sort the crossings by decreasing y and make
        # sure each one swaps two adjacent edges
        e = T[0, _G_AEL]
        T[0, _G_SEL] = e
        while e != _NONE:
            T[e, _PS] = T[e, _PA]
            T[e, _NS] = T[e, _NA]
            e = T[e, _NA]
        _gnu_sort(T, il0, 4, 3, n)
        for i in range(n):
            if not _adjacent_in_sel(T, T[il0 + i, 4]):
                j = i + 1
                while j < n and not _adjacent_in_sel(T, T[il0 + j, 4]):
                    j += 1
                if j == n:
                    T[0, _G_SEL] = _NONE
                    return False
                t = T[il0 + i, 4]
                T[il0 + i, 4] = T[il0 + j, 4]
                T[il0 + j, 4] = t
            node = T[il0 + i, 4]
            _swap_in_list(T, T[node, 0], T[node, 1], _NS, _PS, _G_SEL)
    for i in range(n):
        node = T[il0 + i, 4]
        _intersect_edges(T, T[node, 0], T[node, 1], T[node, 2], T[node, 3])
        _swap_in_ael(T, T[node, 0], T[node, 1])
    T[0, _G_SEL] = _NONE
    return True


@njit(cache=True)
def _do_maxima(T, e):
    mp = _maxima_pair(T, e, True)
    if mp == _NONE:
        if T[e, _OI] >= 0:
            _add_out_pt(T, e, T[e, _TX], T[e, _TY])
        _delete_from_list(T, e, _NA, _PA, _G_AEL)
        return
    en = T[e, _NA]
    while en != _NONE and en != mp:
        _intersect_edges(T, e, en, T[e, _TX], T[e, _TY])
        _swap_in_ael(T, e, en)
        en = T[e, _NA]
    if T[e, _OI] == _NONE and T[mp, _OI] == _NONE:
        _delete_from_list(T, e, _NA, _PA, _G_AEL)
        _delete_from_list(T, mp, _NA, _PA, _G_AEL)
    elif T[e, _OI] >= 0 and T[mp, _OI] >= 0:
        _add_local_max(T, e, mp, T[e, _TX], T[e, _TY])
        _delete_from_list(T, e, _NA, _PA, _G_AEL)
        _delete_from_list(T, mp, _NA, _PA, _G_AEL)
    else:
        _fail(T, _FAIL_ERROR)


@njit(cache=True)
def _process_top_of_beam(T, top_y):
    """Maxima, horizontals and intermediate vertices at ``top_y``
    (``ProcessEdgesAtTopOfScanbeam``)."""
    e = T[0, _G_AEL]
    while e != _NONE:
        is_max = T[e, _TY] == top_y and T[e, _LML] == _NONE
        if is_max:
            mp = _maxima_pair(T, e, True)
            is_max = mp == _NONE or not _horz(T, mp)
        if is_max:
            prev = T[e, _PA]
            _do_maxima(T, e)
            if T[0, _G_FAIL] != 0:
                return
            e = T[0, _G_AEL] if prev == _NONE else T[prev, _NA]
        else:
            if T[e, _TY] == top_y and T[e, _LML] != _NONE and _horz(T, T[e, _LML]):
                e = _update_edge_into_ael(T, e)
                if T[e, _OI] >= 0:
                    _add_out_pt(T, e, T[e, _BX], T[e, _BY])
                _add_to_sel(T, e)
            else:
                # Clipper recomputes TopX(e, top_y) here; _process_intersections has
                # just stored that same value in _CX for every edge of the AEL
                T[e, _CY] = top_y
            e = T[e, _NA]
    _process_horizontals(T)
    if T[0, _G_FAIL] != 0:
        return
    e = T[0, _G_AEL]
    while e != _NONE:
        if T[e, _TY] == top_y and T[e, _LML] != _NONE:
            op = _NONE
            if T[e, _OI] >= 0:
                op = _add_out_pt(T, e, T[e, _TX], T[e, _TY])
            e = _update_edge_into_ael(T, e)
            # an intermediate vertex where the new edge overlaps a neighbour: join rings
            for side in range(2):
                o = T[e, _PA] if side == 0 else T[e, _NA]
                if (o != _NONE and T[o, _CX] == T[e, _BX] and T[o, _CY] == T[e, _BY]
                        and op != _NONE and T[o, _OI] >= 0 and T[o, _CY] > T[o, _TY]
                        and _slopes_equal4(T[e, _CX], T[e, _CY], T[e, _TX], T[e, _TY],
                                           T[o, _CX], T[o, _CY], T[o, _TX], T[o, _TY])
                        and T[e, _WD] != 0 and T[o, _WD] != 0):
                    op2 = _add_out_pt(T, o, T[e, _BX], T[e, _BY])
                    _add_join(T, op, op2, T[e, _TX], T[e, _TY])
                    break
        e = T[e, _NA]


# --- joining rings that share collinear edges (JoinCommonEdges) ---


@njit(cache=True)
def _new_ring(T):
    """A new empty ring (``CreateOutRec``); the caller checks the capacity first."""
    r = T[0, _G_NR]
    T[0, _G_NR] = r + 1
    T[r, _RI] = r
    T[r, _RH] = 0
    T[r, _RF] = _NONE
    T[r, _RP] = _NONE
    T[r, _RB] = _NONE
    return r


@njit(cache=True)
def _ring_of(T, idx):
    """The ring a point belongs to, following merges (``GetOutRec``)."""
    r = idx
    while r != T[r, _RI]:
        r = T[r, _RI]
    return r


@njit(cache=True)
def _dup_point(T, op, after):
    """Copy of point ``op`` linked after (or before) it (``DupOutPt``)."""
    q = T[0, _G_NQ]
    T[0, _G_NQ] = q + 1
    T[q, _QI] = T[op, _QI]
    T[q, _QX] = T[op, _QX]
    T[q, _QY] = T[op, _QY]
    if after:
        n = T[op, _QN]
        T[q, _QN] = n
        T[q, _QP] = op
        T[n, _QP] = q
        T[op, _QN] = q
    else:
        p = T[op, _QP]
        T[q, _QP] = p
        T[q, _QN] = op
        T[p, _QN] = q
        T[op, _QP] = q
    return q


@njit(cache=True)
def _point_in_ring(T, x, y, op):
    """+1 inside, 0 outside, -1 on the boundary (``PointInPolygon``, Hormann-Agathos)."""
    result = 0
    start = op
    while True:
        n = T[op, _QN]
        ox = T[op, _QX]
        oy = T[op, _QY]
        nx = T[n, _QX]
        ny = T[n, _QY]
        if ny == y:
            if nx == x or (oy == y and ((nx > x) == (ox < x))):
                return -1
        if (oy < y) != (ny < y):
            if ox >= x:
                if nx > x:
                    result = 1 - result
                else:
                    d = float(ox - x) * float(ny - y) - float(nx - x) * float(oy - y)
                    if d == 0.0:
                        return -1
                    if (d > 0) == (ny > oy):
                        result = 1 - result
            elif nx > x:
                d = float(ox - x) * float(ny - y) - float(nx - x) * float(oy - y)
                if d == 0.0:
                    return -1
                if (d > 0) == (ny > oy):
                    result = 1 - result
        op = n
        if op == start:
            break
    return result


@njit(cache=True)
def _ring_contains(T, inner, outer):
    """Ring of point ``outer`` contains the ring of point ``inner`` (``Poly2ContainsPoly1``):
    decided by the first vertex of ``inner`` that is not on ``outer``."""
    op = inner
    while True:
        res = _point_in_ring(T, T[op, _QX], T[op, _QY], outer)
        if res >= 0:
            return res > 0
        op = T[op, _QN]
        if op == inner:
            break
    return True


@njit(cache=True)
def _join_horz_side(T, op, pt_x, pt_y, discard_left, l2r):
    """Move along one horizontal run to the join point and split it (half of ``JoinHorz``);
    returns the two points ``(op, op_b)`` to relink."""
    if l2r:
        while (T[T[op, _QN], _QX] <= pt_x and T[T[op, _QN], _QX] >= T[op, _QX]
               and T[T[op, _QN], _QY] == pt_y):
            op = T[op, _QN]
        if discard_left and T[op, _QX] != pt_x:
            op = T[op, _QN]
        after = not discard_left
    else:
        while (T[T[op, _QN], _QX] >= pt_x and T[T[op, _QN], _QX] <= T[op, _QX]
               and T[T[op, _QN], _QY] == pt_y):
            op = T[op, _QN]
        if (not discard_left) and T[op, _QX] != pt_x:
            op = T[op, _QN]
        after = discard_left
    op_b = _dup_point(T, op, after)
    if T[op_b, _QX] != pt_x or T[op_b, _QY] != pt_y:
        op = op_b
        T[op, _QX] = pt_x
        T[op, _QY] = pt_y
        op_b = _dup_point(T, op, after)
    return op, op_b


@njit(cache=True)
def _join_horz(T, op1, op1b, op2, op2b, pt_x, pt_y, discard_left):
    """Join two rings along overlapping horizontal runs (``JoinHorz``)."""
    l2r1 = not (T[op1, _QX] > T[op1b, _QX])
    l2r2 = not (T[op2, _QX] > T[op2b, _QX])
    if l2r1 == l2r2:
        return False
    op1, op1b = _join_horz_side(T, op1, pt_x, pt_y, discard_left, l2r1)
    op2, op2b = _join_horz_side(T, op2, pt_x, pt_y, discard_left, l2r2)
    if l2r1 == discard_left:
        T[op1, _QP] = op2
        T[op2, _QN] = op1
        T[op1b, _QN] = op2b
        T[op2b, _QP] = op1b
    else:
        T[op1, _QN] = op2
        T[op2, _QP] = op1
        T[op1b, _QP] = op2b
        T[op2b, _QN] = op1b
    return True


@njit(cache=True)
def _link_join(T, j, op1, op2, reverse1):
    """Splice two rings at coincident points ``op1``/``op2`` (end of ``JoinPoints``)."""
    if reverse1:
        op1b = _dup_point(T, op1, False)
        op2b = _dup_point(T, op2, True)
        T[op1, _QP] = op2
        T[op2, _QN] = op1
        T[op1b, _QN] = op2b
        T[op2b, _QP] = op1b
    else:
        op1b = _dup_point(T, op1, True)
        op2b = _dup_point(T, op2, False)
        T[op1, _QN] = op2
        T[op2, _QP] = op1
        T[op1b, _QP] = op2b
        T[op2b, _QN] = op1b
    T[j, 0] = op1
    T[j, 1] = op1b


@njit(cache=True)
def _join_end(T, op, off_x, off_y, forward):
    """Neighbour of ``op`` in one direction skipping duplicates, and whether the edge to it
    runs up along the join (the orientation test of ``JoinPoints``)."""
    f = _QN if forward else _QP
    x = T[op, _QX]
    y = T[op, _QY]
    b = T[op, f]
    while T[b, _QX] == x and T[b, _QY] == y and b != op:
        b = T[b, f]
    bad = T[b, _QY] > y or not _slopes_equal3(x, y, T[b, _QX], T[b, _QY], off_x, off_y)
    return b, bad


@njit(cache=True)
def _join_points(T, j, r1, r2):
    """Splice the two rings of join ``j`` (``JoinPoints``); False when it does not apply."""
    op1 = T[j, 0]
    op2 = T[j, 1]
    off_x = T[j, 2]
    off_y = T[j, 3]
    is_horz = T[op1, _QY] == off_y
    if (is_horz and T[op1, _QX] == off_x and T[op2, _QX] == off_x
            and T[op2, _QY] == off_y):
        # both points at the offset point
        if r1 != r2:
            return False
        b = T[op1, _QN]
        while b != op1 and T[b, _QX] == off_x and T[b, _QY] == off_y:
            b = T[b, _QN]
        reverse1 = T[b, _QY] > off_y
        b = T[op2, _QN]
        while b != op2 and T[b, _QX] == off_x and T[b, _QY] == off_y:
            b = T[b, _QN]
        reverse2 = T[b, _QY] > off_y
        if reverse1 == reverse2:
            return False
        _link_join(T, j, op1, op2, reverse1)
        return True
    if is_horz:
        # overlapping horizontal runs: find their extremities first
        op1b = op1
        while (T[T[op1, _QP], _QY] == T[op1, _QY] and T[op1, _QP] != op1b
               and T[op1, _QP] != op2):
            op1 = T[op1, _QP]
        while (T[T[op1b, _QN], _QY] == T[op1b, _QY] and T[op1b, _QN] != op1
               and T[op1b, _QN] != op2):
            op1b = T[op1b, _QN]
        if T[op1b, _QN] == op1 or T[op1b, _QN] == op2:
            return False  # a flat ring
        op2b = op2
        while (T[T[op2, _QP], _QY] == T[op2, _QY] and T[op2, _QP] != op2b
               and T[op2, _QP] != op1b):
            op2 = T[op2, _QP]
        while (T[T[op2b, _QN], _QY] == T[op2b, _QY] and T[op2b, _QN] != op2
               and T[op2b, _QN] != op1):
            op2b = T[op2b, _QN]
        if T[op2b, _QN] == op2 or T[op2b, _QN] == op1:
            return False
        a1 = T[op1, _QX]
        a2 = T[op1b, _QX]
        b1 = T[op2, _QX]
        b2 = T[op2b, _QX]
        # overlap of [a1, a2] and [b1, b2] (``GetOverlap``)
        if a1 < a2:
            if b1 < b2:
                left = max(a1, b1)
                right = min(a2, b2)
            else:
                left = max(a1, b2)
                right = min(a2, b1)
        else:
            if b1 < b2:
                left = max(a2, b1)
                right = min(a1, b2)
            else:
                left = max(a2, b2)
                right = min(a1, b1)
        if not left < right:
            return False
        if left <= a1 <= right:
            px = a1
            py = T[op1, _QY]
            discard_left = a1 > a2
        elif left <= b1 <= right:
            px = b1
            py = T[op2, _QY]
            discard_left = b1 > b2
        elif left <= a2 <= right:
            px = a2
            py = T[op1b, _QY]
            discard_left = a2 > a1
        else:
            px = b2
            py = T[op2b, _QY]
            discard_left = b2 > b1
        T[j, 0] = op1
        T[j, 1] = op2
        return _join_horz(T, op1, op1b, op2, op2b, px, py, discard_left)
    # collinear non-horizontal edges starting at the same bottom point
    op1b, reverse1 = _join_end(T, op1, off_x, off_y, True)
    if reverse1:
        op1b, bad = _join_end(T, op1, off_x, off_y, False)
        if bad:
            return False
    op2b, reverse2 = _join_end(T, op2, off_x, off_y, True)
    if reverse2:
        op2b, bad = _join_end(T, op2, off_x, off_y, False)
        if bad:
            return False
    if op1b == op1 or op2b == op2 or op1b == op2b or (r1 == r2 and reverse1 == reverse2):
        return False
    _link_join(T, j, op1, op2, reverse1)
    return True


@njit(cache=True)
def _join_common_edges(T):
    """Apply every recorded join in order (``JoinCommonEdges``, without the PolyTree
    bookkeeping): two rings become one, or one ring splits into two."""
    j0 = T[1, _L_JN0]
    nj = T[0, _G_NJN]
    # every join adds at most four points and one ring
    if (T[0, _G_NQ] + 4 * nj + 4 > T[1, _L_QEND]
            or T[0, _G_NR] + nj + 1 > T[1, _L_REND]):
        _fail(T, _FAIL_CAPACITY)
        return
    for j in range(j0, j0 + nj):
        r1 = _ring_of(T, T[T[j, 0], _QI])
        r2 = _ring_of(T, T[T[j, 1], _QI])
        if T[r1, _RP] == _NONE or T[r2, _RP] == _NONE:
            continue
        if r1 == r2:
            hole_ref = r1
        elif _ring_left_of(T, r1, r2):
            hole_ref = r2
        elif _ring_left_of(T, r2, r1):
            hole_ref = r1
        else:
            hole_ref = _lowermost_ring(T, r1, r2)
        if not _join_points(T, j, r1, r2):
            continue
        if r1 == r2:
            # the ring split in two
            T[r1, _RP] = T[j, 0]
            T[r1, _RB] = _NONE
            r2 = _new_ring(T)
            T[r2, _RP] = T[j, 1]
            op = T[r2, _RP]
            while True:
                T[op, _QI] = T[r2, _RI]
                op = T[op, _QP]
                if op == T[r2, _RP]:
                    break
            if _ring_contains(T, T[r2, _RP], T[r1, _RP]):
                T[r2, _RH] = 1 - T[r1, _RH]
                T[r2, _RF] = r1
                if (T[r2, _RH] != 0) == (_ring_area(T, T[r2, _RP]) > 0):
                    _reverse_ring(T, T[r2, _RP])
            elif _ring_contains(T, T[r1, _RP], T[r2, _RP]):
                T[r2, _RH] = T[r1, _RH]
                T[r1, _RH] = 1 - T[r2, _RH]
                T[r2, _RF] = T[r1, _RF]
                T[r1, _RF] = r2
                if (T[r1, _RH] != 0) == (_ring_area(T, T[r1, _RP]) > 0):
                    _reverse_ring(T, T[r1, _RP])
            else:
                T[r2, _RH] = T[r1, _RH]
                T[r2, _RF] = T[r1, _RF]
        else:
            # two rings became one
            T[r2, _RP] = _NONE
            T[r2, _RB] = _NONE
            T[r2, _RI] = T[r1, _RI]
            T[r1, _RH] = T[hole_ref, _RH]
            if hole_ref == r2:
                T[r1, _RF] = T[r2, _RF]
            T[r2, _RF] = r1


@njit(cache=True)
def _fixup_ring(T, r):
    """Drop duplicate and collinear points of a finished ring (``FixupOutPolygon``)."""
    last_ok = _NONE
    T[r, _RB] = _NONE
    pp = T[r, _RP]
    while True:
        a = T[pp, _QP]
        c = T[pp, _QN]
        if a == pp or a == c:
            T[r, _RP] = _NONE
            return
        x = T[pp, _QX]
        y = T[pp, _QY]
        if ((x == T[c, _QX] and y == T[c, _QY]) or (x == T[a, _QX] and y == T[a, _QY])
                or _slopes_equal3(T[a, _QX], T[a, _QY], x, y, T[c, _QX], T[c, _QY])):
            last_ok = _NONE
            T[a, _QN] = c
            T[c, _QP] = a
            pp = a
        elif pp == last_ok:
            break
        else:
            if last_ok == _NONE:
                last_ok = pp
            pp = c
    T[r, _RP] = pp


@njit(cache=True)
def _build_sweep_table(px, py, scale):
    """Edges and local minima of the path (``ClipperBase::AddPath`` + ``Reset``) in a new
    state table; ``scale`` multiplies the room left for output points, rings, crossings
    and queued y values (the sweep reports a capacity failure when it runs out)."""
    M = px.shape[0]
    n_lm_cap = M // 2 + 2
    q_cap = scale * (2 * M + 32)
    r_cap = scale * (M // 2 + 8)
    sb_cap = scale * (3 * M + 16)
    il_cap = scale * (M // 2 + 16)
    gj_cap = scale * (M // 2 + 16)
    jn_cap = scale * (M // 2 + 16)
    q0 = _E0 + M
    r0 = q0 + q_cap
    sb0 = r0 + r_cap
    lm0 = sb0 + (sb_cap >> _SB_SHIFT) + 1
    il0 = lm0 + n_lm_cap
    gj0 = il0 + il_cap
    jn0 = gj0 + gj_cap
    T = np.empty((jn0 + jn_cap, _NCOL), dtype=np.int64)
    T[0, :] = 0
    T[1, :] = 0
    T[0, _G_AEL] = _NONE
    T[0, _G_SEL] = _NONE
    T[0, _G_NQ] = q0
    T[0, _G_NR] = r0
    T[1, _L_Q0] = q0
    T[1, _L_QEND] = r0
    T[1, _L_R0] = r0
    T[1, _L_REND] = sb0
    T[1, _L_SB0] = sb0
    T[1, _L_SBEND] = sb_cap
    T[1, _L_LM0] = lm0
    T[1, _L_IL0] = il0
    T[1, _L_ILEND] = gj0
    T[1, _L_GJ0] = gj0
    T[1, _L_GJEND] = gj0 + gj_cap
    T[1, _L_JN0] = jn0
    T[1, _L_JNEND] = jn0 + jn_cap
    for i in range(M):
        e = _E0 + i
        n = _E0 + (i + 1 if i + 1 < M else 0)
        k = i + 1 if i + 1 < M else 0
        for f in range(_NCOL):
            T[e, f] = _NONE
        T[e, _CX] = px[i]
        T[e, _CY] = py[i]
        T[e, _NX] = n
        T[e, _PV] = _E0 + (i - 1 if i > 0 else M - 1)
        T[e, _WD] = 0
        T[e, _WC] = 0
        T[e, _SD] = 0
        if py[i] >= py[k]:
            T[e, _BX] = px[i]
            T[e, _BY] = py[i]
            T[e, _TX] = px[k]
            T[e, _TY] = py[k]
        else:
            T[e, _TX] = px[i]
            T[e, _TY] = py[i]
            T[e, _BX] = px[k]
            T[e, _BY] = py[k]

    # local minima, in the order Clipper finds them
    nlm = 0
    e = _E0
    e_min = _NONE
    guard = 0
    while True:
        guard += 1
        if guard > 4 * M + 8 or nlm >= n_lm_cap:
            _fail(T, _FAIL_ERROR)
            return T
        e = _next_local_min(T, e)
        if e == e_min:
            break
        if e_min == _NONE:
            e_min = e
        y = T[e, _BY]
        if _dx(T, e) < _dx(T, T[e, _PV]):
            lb = T[e, _PV]
            rb = e
            forward = False
        else:
            lb = e
            rb = T[e, _PV]
            forward = True
        T[lb, _WD] = -1 if T[lb, _NX] == rb else 1
        T[rb, _WD] = -T[lb, _WD]
        e = _process_bound(T, lb, forward)
        e2 = _process_bound(T, rb, not forward)
        node = lm0 + nlm
        T[node, 0] = y
        T[node, 1] = lb
        T[node, 2] = rb
        T[node, 3] = node
        nlm += 1
        if not forward:
            e = e2
    T[1, _L_NLM] = nlm
    # local minima by decreasing y in std::sort's order, then the sweep's initial state
    _gnu_sort(T, lm0, 3, 0, nlm)
    for i in range(nlm - 1, -1, -1):  # increasing y: each push appends to the queue
        _sb_push(T, T[T[lm0 + i, 3], 0])
    for i in range(nlm):
        node = T[lm0 + i, 3]
        lb = T[node, 1]
        rb = T[node, 2]
        T[lb, _CX] = T[lb, _BX]
        T[lb, _CY] = T[lb, _BY]
        T[lb, _SD] = _LEFT
        T[lb, _OI] = _NONE
        T[rb, _CX] = T[rb, _BX]
        T[rb, _CY] = T[rb, _BY]
        T[rb, _SD] = _RIGHT
        T[rb, _OI] = _NONE
    return T


@njit(cache=True)
def _union_sweep(px, py, scale):
    """First ring of Clipper's positive union of one closed path.

    Returns ``(out, status, fail)``: ``status`` is OFFSET_OK, OFFSET_EMPTY (no ring) or
    OFFSET_FALLBACK, ``fail`` the failure reason (join, capacity, error) for the latter.
    """
    empty = np.zeros((0, 2), dtype=np.int64)
    T = _build_sweep_table(px, py, scale)
    if T[0, _G_FAIL] != 0:
        return empty, OFFSET_FALLBACK, T[0, _G_FAIL]
    found, bot_y = _sb_pop(T)
    if not found:
        return empty, OFFSET_EMPTY, 0
    _insert_local_minima(T, bot_y)
    top_y = bot_y
    while T[0, _G_FAIL] == 0:
        found, y = _sb_pop(T)
        if found:
            top_y = y
        elif T[0, _G_LM] >= T[1, _L_NLM]:
            break
        else:
            _fail(T, _FAIL_ERROR)
            break
        _process_horizontals(T)
        T[0, _G_NGJ] = 0
        if T[0, _G_FAIL] != 0:
            break
        if not _process_intersections(T, top_y):
            _fail(T, _FAIL_ERROR)
            break
        if T[0, _G_FAIL] != 0:
            break
        _process_top_of_beam(T, top_y)
        if T[0, _G_FAIL] != 0:
            break
        _insert_local_minima(T, top_y)
    if T[0, _G_FAIL] != 0:
        return empty, OFFSET_FALLBACK, T[0, _G_FAIL]

    # orientation of outer rings and holes, then clean-up, then the first ring
    r0 = T[1, _L_R0]
    r1 = T[0, _G_NR]
    for r in range(r0, r1):
        if T[r, _RP] == _NONE:
            continue
        if (T[r, _RH] != 0) == (_ring_area(T, T[r, _RP]) > 0):
            _reverse_ring(T, T[r, _RP])
    if T[0, _G_NJN] > 0:
        _join_common_edges(T)
        if T[0, _G_FAIL] != 0:
            return empty, OFFSET_FALLBACK, T[0, _G_FAIL]
        r1 = T[0, _G_NR]
    for r in range(r0, r1):
        if T[r, _RP] != _NONE:
            _fixup_ring(T, r)
    for r in range(r0, r1):
        if T[r, _RP] == _NONE:
            continue
        p = T[T[r, _RP], _QP]
        cnt = 1
        t = T[p, _QN]
        while t != p:
            cnt += 1
            t = T[t, _QN]
        if cnt < 2:
            continue
        out = np.empty((cnt, 2), dtype=np.int64)
        for i in range(cnt):
            out[i, 0] = T[p, _QX]
            out[i, 1] = T[p, _QY]
            p = T[p, _QP]
        return out, OFFSET_OK, 0
    return empty, OFFSET_EMPTY, 0


@njit(cache=True)
def offset_polygon(xs_int, ys_int, delta):
    """Clipper 6.4.2 ``ClipperOffset`` (round joins, closed polygon) of one integer ring.

    Reproduces ``PyclipperOffset(); AddPath(points, JT_ROUND, ET_CLOSEDPOLYGON);
    Execute(delta)[0]`` with the default ``ArcTolerance`` 0.25 and ``MiterLimit`` 2, for
    ``delta > 0`` (the unclip case): raw offset path, then Clipper's positive union of it.

    Parameters
    ----------
    xs_int, ys_int : ndarray of int64
        Vertex coordinates, already truncated to integers as pyclipper does.
    delta : float
        Offset distance.

    Returns
    -------
    out_xy : ndarray of int64, shape (m, 2)
        pyclipper's first output path, same vertices, order and first vertex. Empty unless
        ``status`` is :data:`OFFSET_OK`.
    status : int
        :data:`OFFSET_OK`, :data:`OFFSET_EMPTY` (pyclipper returns no path) or
        :data:`OFFSET_FALLBACK` (call pyclipper).
    """
    empty = np.zeros((0, 2), dtype=np.int64)
    if not (delta > _NEAR_ZERO and delta < _MAX_DELTA):
        return empty, OFFSET_FALLBACK
    for i in range(xs_int.shape[0]):
        if abs(xs_int[i]) > _COORD_LIMIT or abs(ys_int[i]) > _COORD_LIMIT:
            return empty, OFFSET_FALLBACK
    cx, cy, n = _offset_input(xs_int, ys_int)
    if n == 0:
        return empty, OFFSET_EMPTY
    rx, ry = _raw_offset(cx, cy, delta)
    if rx.shape[0] == 0:
        return empty, OFFSET_FALLBACK
    px, py = _union_input(rx, ry)
    if px.shape[0] == 0:
        return empty, OFFSET_EMPTY
    for i in range(px.shape[0]):
        if abs(px[i]) > _COORD_LIMIT or abs(py[i]) > _COORD_LIMIT:
            return empty, OFFSET_FALLBACK
    # the state table is sized for typical paths; it is enlarged when it runs out
    scale = 1
    for _ in range(3):
        out, status, fail = _union_sweep(px, py, scale)
        if fail != _FAIL_CAPACITY:
            return out, status
        scale *= 4
    return empty, OFFSET_FALLBACK


@njit(cache=True)
def unclip_polygon(xs, ys, ratio):
    """The seed's ``unclip`` on float points, in one kernel (distance, truncation, offset).

    Parameters
    ----------
    xs, ys : ndarray of float64
        Finite vertex coordinates (at least 3 points), as the seed passes them to shapely.
    ratio : float
        Unclip ratio.

    Returns
    -------
    out_xy : ndarray of int64, shape (m, 2)
        The expanded polygon when ``status`` is :data:`OFFSET_OK`.
    status : int
        :data:`OFFSET_OK`; :data:`OFFSET_EMPTY` where the seed gets nothing (zero area or
        length, or no path from pyclipper); :data:`OFFSET_FALLBACK` where pyclipper must be
        run on the truncated points with ``distance``.
    distance : float
        ``area * ratio / length`` (NaN when the area or length is 0).
    """
    distance = unclip_distance(xs, ys, ratio)
    if np.isnan(distance):
        return np.zeros((0, 2), dtype=np.int64), OFFSET_EMPTY, distance
    n = xs.shape[0]
    xi = np.empty(n, dtype=np.int64)
    yi = np.empty(n, dtype=np.int64)
    for i in range(n):
        # pyclipper converts each coordinate with int(): truncation toward zero
        xi[i] = np.int64(xs[i])
        yi[i] = np.int64(ys[i])
    out, status = offset_polygon(xi, yi, distance)
    return out, status, distance


def unclip_fast(points, ratio: float) -> Tuple[Optional[np.ndarray], bool]:
    """The seed's ``unclip`` with the Numba kernels, running pyclipper only on fallback.

    Parameters
    ----------
    points : array_like, shape (n, 2)
        Polygon vertices (int from ``approxPolyDP`` or float32 box corners), n >= 3.
    ratio : float
        Unclip ratio (> 0).

    Returns
    -------
    polygon : ndarray of int64, shape (m, 2), or None
        pyclipper's first path, or None where the reference skips the polygon (zero area
        or length) or pyclipper returns no path.
    used_fallback : bool
        True when pyclipper computed the result.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < 3:
        raise ValueError(f"points must have shape (n, 2) with n >= 3, got {pts.shape}")
    if not (np.isfinite(ratio) and ratio > 0):
        raise ValueError(f"ratio must be a finite number > 0, got {ratio}")
    fx = np.ascontiguousarray(pts[:, 0], dtype=np.float64)
    fy = np.ascontiguousarray(pts[:, 1], dtype=np.float64)
    if not (np.isfinite(fx).all() and np.isfinite(fy).all()):
        raise ValueError("points must be finite")
    out, status, distance = unclip_polygon(fx, fy, float(ratio))
    if status == OFFSET_OK:
        return out, False
    if status == OFFSET_EMPTY:
        return None, False
    import pyclipper

    path = np.stack([np.trunc(fx), np.trunc(fy)], axis=1).astype(np.int64).tolist()
    pco = pyclipper.PyclipperOffset()
    pco.AddPath(path, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    paths = pco.Execute(distance)
    if len(paths) == 0:
        return None, True
    return np.asarray(paths[0], dtype=np.int64).reshape(-1, 2), True
