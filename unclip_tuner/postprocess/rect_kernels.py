"""Numba twins of the pinned OpenCV 4.8.1 rectangle geometry of :mod:`.reference`.

Each kernel gives, bit for bit, the result of its reference function (which is itself
tested against OpenCV 4.8.1):

* :func:`convex_hull_nb` — :func:`.reference.convex_hull` (Sklansky's scan, same vertex
  order);
* :func:`min_area_rect_nb` — :func:`.reference.min_area_rect` (rotating calipers in
  float32 arithmetic, angle in degrees as OpenCV 4.8.1 reports it);
* :func:`box_points_nb` — :func:`.reference.box_points` (``RotatedRect::points``);
* :func:`get_mini_boxes_nb` — :func:`.reference.get_mini_boxes` (the baseline's corner
  ordering after a stable sort by x).

The float32 steps are written with float32 operands only (a float64 operand, a Python
float literal included, would promote the operation to float64); the steps OpenCV runs
in double (lengths, ``atan2``, ``sin``/``cos``, the degree conversion) are written in
float64 and rounded to float32 where OpenCV stores a float.

Domain: integer coordinates with magnitude below ``2**24`` (exact in float32, and the
hull's integer cross products stay far from int64 overflow).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["convex_hull_nb", "min_area_rect_nb", "box_points_nb", "get_mini_boxes_nb"]

# below this many points the hull's sort is a plain insertion sort
_INSERTION_SORT_MAX = 24


# ------------------------------------------------------------------------------------
# convex hull (OpenCV 4.8.1 Sklansky)
# ------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _sign(v):
    """-1, 0 or 1: the sign of an integer."""
    if v > 0:
        return 1
    if v < 0:
        return -1
    return 0


@njit(cache=True, nogil=True)
def _sorted_order(px, py):
    """Point indices sorted by (x, y, index), the order of the reference's ``sorted``."""
    n = px.shape[0]
    if n <= _INSERTION_SORT_MAX:
        order = np.arange(n)
        for i in range(1, n):
            k = order[i]
            x = px[k]
            y = py[k]
            j = i - 1
            # the indices already placed are smaller than k: (x, y) decides alone
            while j >= 0 and (px[order[j]] > x or (px[order[j]] == x and py[order[j]] > y)):
                order[j + 1] = order[j]
                j -= 1
            order[j + 1] = k
        return order
    lim = np.int64(1) << 24
    small = True
    for i in range(n):
        if not (-lim < px[i] < lim and -lim < py[i] < lim):
            small = False
            break
    if not small:
        # two stable passes: by y, then by x
        by_y = np.argsort(py, kind="mergesort")
        by_x = np.argsort(px[by_y], kind="mergesort")
        return by_y[by_x]
    # one key per point (x major, y minor), sorted; equal keys (repeated points) are then
    # put in index order
    key = (px + lim) * (lim << 2) + (py + lim)
    order = np.argsort(key)
    i = 0
    while i < n:
        j = i + 1
        while j < n and key[order[j]] == key[order[i]]:
            j += 1
        if j - i > 1:
            order[i:j] = np.sort(order[i:j])
        i = j
    return order


@njit(cache=True, nogil=True)
def _sklansky(sx, sy, start, end, nsign, sign2, stack):
    """One quarter of OpenCV 4.8.1's ``Sklansky_`` scan, as ``reference._sklansky``.

    ``sx``/``sy`` are the points in sorted order; ``stack`` receives positions in that
    order. Returns the number of stack entries kept (the scan's last, look-ahead entry is
    dropped, as the reference's ``stack[:-1]``).
    """
    incr = 1 if end > start else -1
    pprev = start
    pcur = start + incr
    pnext = start + 2 * incr
    if start == end or (sx[start] == sx[end] and sy[start] == sy[end]):
        stack[0] = start
        return 1
    stack[0] = pprev
    stack[1] = pcur
    stack[2] = pnext
    ns = 3
    end += incr
    while pnext != end:
        cury = sy[pcur]
        by = sy[pnext] - cury
        if _sign(by) != nsign:
            ax = sx[pcur] - sx[pprev]
            ay = cury - sy[pprev]
            bx = sx[pnext] - sx[pcur]
            convexity = ay * bx - ax * by  # > 0: convex angle
            if _sign(convexity) == sign2 and (ax != 0 or ay != 0):
                pprev = pcur
                pcur = pnext
                pnext += incr
                stack[ns] = pnext
                ns += 1
            elif pprev == start:
                pcur = pnext
                stack[1] = pcur
                pnext += incr
                stack[2] = pnext
            else:
                stack[ns - 2] = pnext
                pcur = pprev
                pprev = stack[ns - 4]
                ns -= 1
        else:
            pnext += incr
            stack[ns - 1] = pnext
    return ns - 1


@njit(cache=True, nogil=True)
def _convex_hull_indices(px, py, clockwise):
    """Input indices of the hull vertices, in the order of :func:`convex_hull_nb`."""
    total = px.shape[0]
    if total == 0:
        return np.empty(0, np.int64)
    order = _sorted_order(px, py)
    sx = np.empty(total, np.int64)
    sy = np.empty(total, np.int64)
    for k in range(total):
        sx[k] = px[order[k]]
        sy[k] = py[order[k]]
    miny = 0
    maxy = 0
    for i in range(1, total):
        y = sy[i]
        if sy[miny] > y:
            miny = i
        if sy[maxy] < y:
            maxy = i

    hull = np.empty(2 * total + 4, np.int64)
    nh = 0
    if sx[0] == sx[total - 1] and sy[0] == sy[total - 1]:
        hull[0] = order[0]
        return hull[:1]

    # half through the largest y: the left stack, then the right stack reversed
    sa = np.empty(total + 4, np.int64)
    sb = np.empty(total + 4, np.int64)
    na = _sklansky(sx, sy, 0, maxy, -1, 1, sa)
    nb = _sklansky(sx, sy, total - 1, maxy, -1, -1, sb)
    if clockwise:
        tl, ntl, tr, ntr = sa, na, sb, nb
    else:
        tl, ntl, tr, ntr = sb, nb, sa, na
    for k in range(ntl - 1):
        hull[nh] = order[tl[k]]
        nh += 1
    for k in range(ntr - 1, 0, -1):
        hull[nh] = order[tr[k]]
        nh += 1
    if ntr > 2:
        stop = tr[1]
    elif ntl > 2:
        stop = tl[ntl - 2]
    else:
        stop = -1

    # lower half
    sc = np.empty(total + 4, np.int64)
    sd = np.empty(total + 4, np.int64)
    nc = _sklansky(sx, sy, 0, miny, 1, -1, sc)
    nd = _sklansky(sx, sy, total - 1, miny, 1, 1, sd)
    if clockwise:
        bl, nbl, br, nbr = sd, nd, sc, nc
    else:
        bl, nbl, br, nbr = sc, nc, sd, nd
    if stop >= 0:
        if nbl > 2:
            check = bl[1]
        elif nbl + nbr > 2:
            check = br[2 - nbl]
        else:
            check = -1
        if check == stop or (check >= 0 and sx[check] == sx[stop] and sy[check] == sy[stop]):
            # all points on one line: the lower hull mirrors the upper one
            nbl = min(nbl, 2)
            nbr = min(nbr, 2)
    for k in range(nbl - 1):
        hull[nh] = order[bl[k]]
        nh += 1
    for k in range(nbr - 1, 0, -1):
        hull[nh] = order[br[k]]
        nh += 1
    hull = hull[:nh]

    # make the input indices ascend or descend by a cyclic shift, when possible
    if nh >= 3:
        min_i = 0
        max_i = 0
        lt = 0
        for i in range(1, nh):
            idx = hull[i]
            if hull[i - 1] < idx:
                lt += 1
            if lt > 1 and lt <= i - 2:
                break
            if idx < hull[min_i]:
                min_i = i
            if idx > hull[max_i]:
                max_i = i
        mmdist = abs(max_i - min_i)
        if (mmdist == 1 or mmdist == nh - 1) and (lt <= 1 or lt >= nh - 2):
            ascending = (max_i + 1) % nh == min_i
            i0 = min_i if ascending else max_i
            if i0 > 0:
                rotated = np.empty(nh, np.int64)
                j = i0
                ok = True
                for i in range(nh):
                    cur = hull[j]
                    nj = j + 1 if j + 1 < nh else 0
                    rotated[i] = cur
                    if i < nh - 1 and ascending != (cur < hull[nj]):
                        ok = False
                        break
                    j = nj
                if ok:
                    hull = rotated
    return hull


@njit(cache=True, nogil=True)
def convex_hull_nb(px, py, clockwise=False):
    """OpenCV 4.8.1 ``cv2.convexHull(points, clockwise)`` on integer points.

    The Numba twin of :func:`unclip_tuner.postprocess.reference.convex_hull`: Sklansky's
    scan over the points sorted by (x, y, input index), the half hull through the largest
    y then the half through the smallest y, in the requested orientation, then the cyclic
    shift that makes the input indices ascend or descend when they can. The vertex order
    is the reference's (it decides which of several equal-area rectangles
    :func:`min_area_rect_nb` reports).

    Parameters
    ----------
    px, py : ndarray of int64, shape (n,)
        Point coordinates (``|coordinate| < 2**24``).
    clockwise : bool

    Returns
    -------
    ndarray of int64, shape (h, 2)
    """
    idx = _convex_hull_indices(px, py, clockwise)
    out = np.empty((idx.shape[0], 2), np.int64)
    for k in range(idx.shape[0]):
        out[k, 0] = px[idx[k]]
        out[k, 1] = py[idx[k]]
    return out


# ------------------------------------------------------------------------------------
# minimum-area rectangle (OpenCV 4.8.1 rotating calipers, float32)
# ------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _rotating_calipers(hx, hy):
    """OpenCV 4.8.1 ``rotatingCalipers(..., CALIPERS_MINAREARECT)`` in float32.

    The twin of ``reference._rotating_calipers_min_area`` on a hull of at least three
    float32 points. Returns the corner and the two side vectors, all float32:
    ``(px, py, v1x, v1y, v2x, v2y)``.
    """
    n = hx.shape[0]
    vx = np.empty(n, np.float32)
    vy = np.empty(n, np.float32)
    inv_len = np.empty(n, np.float32)
    left = 0
    bottom = 0
    right = 0
    top = 0
    left_x = hx[0]
    right_x = hx[0]
    top_y = hy[0]
    bottom_y = hy[0]
    p0x = hx[0]
    p0y = hy[0]
    for i in range(n):
        if p0x < left_x:
            left_x = p0x
            left = i
        if p0x > right_x:
            right_x = p0x
            right = i
        if p0y > top_y:
            top_y = p0y
            top = i
        if p0y < bottom_y:
            bottom_y = p0y
            bottom = i
        j = i + 1 if i + 1 < n else 0
        qx = hx[j]
        qy = hy[j]
        ex = qx - p0x  # float32 subtraction
        ey = qy - p0y
        vx[i] = ex
        vy[i] = ey
        dx = np.float64(ex)  # widened to double for the length
        dy = np.float64(ey)
        sq = dx * dx + dy * dy
        if sq > 0.0:
            inv_len[i] = np.float32(1.0 / math.sqrt(sq))
        else:
            inv_len[i] = np.float32(np.inf)  # 1./sqrt(0.) is +inf in C
        p0x = qx
        p0y = qy

    # orientation of the hull, from the first non-zero cross product (in double)
    orientation = 0
    ax = np.float64(vx[n - 1])
    ay = np.float64(vy[n - 1])
    for i in range(n):
        bx = np.float64(vx[i])
        by = np.float64(vy[i])
        convexity = ax * by - ay * bx
        if convexity != 0.0:
            orientation = 1 if convexity > 0.0 else -1
            break
        ax = bx
        ay = by
    if orientation == 0:
        raise ValueError("min_area_rect: degenerate convex hull")

    seq = np.empty(4, np.int64)
    seq[0] = bottom
    seq[1] = right
    seq[2] = top
    seq[3] = left
    rx = np.empty(4, np.float32)
    ry = np.empty(4, np.float32)
    zero = np.float32(0.0)
    minarea = np.float32(3.4028234663852886e38)  # FLT_MAX
    found = False
    best_left = 0
    best_bottom = 0
    best_a = zero
    best_b = zero
    best_w = zero
    best_h = zero
    for _ in range(n):
        # the caliper side whose next hull edge turns least: the edge vectors brought to a
        # common frame (rotated by 0, -90, 180, +90 degrees), and the rightmost one wins
        s0 = seq[0]
        s1 = seq[1]
        s2 = seq[2]
        s3 = seq[3]
        rx[0] = vx[s0]
        ry[0] = vy[s0]
        rx[1] = vy[s1]
        ry[1] = -vx[s1]
        rx[2] = -vx[s2]
        ry[2] = -vy[s2]
        rx[3] = -vy[s3]
        ry[3] = vx[s3]
        main = 0
        for k in range(1, 4):
            # firstVecIsRight(rot[k], rot[main]): rotate rot[k] by -90 degrees, dot < 0
            if ry[k] * rx[main] + (-rx[k]) * ry[main] < zero:
                main = k
        pidx = seq[main]
        lead_x = vx[pidx] * inv_len[pidx]
        lead_y = vy[pidx] * inv_len[pidx]
        if main == 0:
            base_a = lead_x
            base_b = lead_y
        elif main == 1:
            base_a = lead_y
            base_b = -lead_x
        elif main == 2:
            base_a = -lead_x
            base_b = -lead_y
        else:
            base_a = -lead_y
            base_b = lead_x
        seq[main] = (seq[main] + 1) % n
        ex = hx[seq[1]] - hx[seq[3]]
        ey = hy[seq[1]] - hy[seq[3]]
        width = ex * base_a + ey * base_b
        ex = hx[seq[2]] - hx[seq[0]]
        ey = hy[seq[2]] - hy[seq[0]]
        height = (-ex) * base_b + ey * base_a
        area = width * height
        if area <= minarea:
            minarea = area
            found = True
            best_left = seq[3]
            best_a = base_a
            best_w = width
            best_b = base_b
            best_h = height
            best_bottom = seq[0]
    if not found:
        raise ValueError("min_area_rect: no finite rectangle area")

    a1 = best_a
    b1 = best_b
    a2 = -b1
    b2 = a1
    c1 = a1 * hx[best_left] + hy[best_left] * b1
    c2 = a2 * hx[best_bottom] + hy[best_bottom] * b2
    idet = np.float32(1.0) / (a1 * b2 - a2 * b1)
    cpx = (c1 * b2 - c2 * b1) * idet
    cpy = (a1 * c2 - a2 * c1) * idet
    return cpx, cpy, a1 * best_w, b1 * best_w, a2 * best_h, b2 * best_h


@njit(cache=True, nogil=True)
def min_area_rect_nb(px, py):
    """OpenCV 4.8.1 ``cv2.minAreaRect(points)`` on integer points.

    The Numba twin of :func:`unclip_tuner.postprocess.reference.min_area_rect`: the
    counter-clockwise hull of :func:`convex_hull_nb` in float32, then rotating calipers
    in float32 arithmetic (the last rectangle of minimal area wins); the width is the
    length of the first side vector (square root in double), the angle its direction
    (``atan2`` in double, stored as float32, then ``(float)(angle * 180 / CV_PI)`` with
    the product by 180 in float32). Two hull points give a zero-height rectangle along
    the segment, one point a zero-size rectangle at it, no point all zeros.

    Parameters
    ----------
    px, py : ndarray of int64, shape (n,)

    Returns
    -------
    cx, cy, width, height, angle : float32
        ``((cx, cy), (width, height), angle)`` of ``cv2.minAreaRect``.

    Raises
    ------
    ValueError
        When the hull has three or more points but no turn (OpenCV asserts there).
    """
    idx = _convex_hull_indices(px, py, False)
    n = idx.shape[0]
    hx = np.empty(n, np.float32)
    hy = np.empty(n, np.float32)
    for k in range(n):
        hx[k] = np.float32(px[idx[k]])
        hy[k] = np.float32(py[idx[k]])
    half = np.float32(0.5)
    cx = np.float32(0.0)
    cy = np.float32(0.0)
    w = np.float32(0.0)
    h = np.float32(0.0)
    ang = np.float32(0.0)
    if n > 2:
        cpx, cpy, v1x, v1y, v2x, v2y = _rotating_calipers(hx, hy)
        cx = cpx + (v1x + v2x) * half
        cy = cpy + (v1y + v2y) * half
        d1x = np.float64(v1x)
        d1y = np.float64(v1y)
        d2x = np.float64(v2x)
        d2y = np.float64(v2y)
        w = np.float32(math.sqrt(d1x * d1x + d1y * d1y))
        h = np.float32(math.sqrt(d2x * d2x + d2y * d2y))
        ang = np.float32(math.atan2(d1y, d1x))
    elif n == 2:
        cx = (hx[0] + hx[1]) * half
        cy = (hy[0] + hy[1]) * half
        dx = np.float64(hx[1] - hx[0])
        dy = np.float64(hy[1] - hy[0])
        w = np.float32(math.sqrt(dx * dx + dy * dy))
        ang = np.float32(math.atan2(dy, dx))
    elif n == 1:
        cx = hx[0]
        cy = hy[0]
    ang = np.float32(np.float64(ang * np.float32(180.0)) / math.pi)
    return cx, cy, w, h, ang


@njit(cache=True, nogil=True)
def box_points_nb(cx, cy, w, h, angle):
    """OpenCV 4.8.1 ``cv2.boxPoints(((cx, cy), (w, h), angle))``: the corners in float32.

    The Numba twin of :func:`unclip_tuner.postprocess.reference.box_points`
    (``RotatedRect::points``): ``b = cos(angle) / 2`` and ``a = sin(angle) / 2`` (the
    trigonometry in double, then float32), ``p0 = (c.x - a*h - b*w, c.y + b*h - a*w)``,
    ``p1 = (c.x + a*h - b*w, c.y - b*h - a*w)``, ``p2 = 2c - p0``, ``p3 = 2c - p1``.

    Parameters
    ----------
    cx, cy, w, h, angle : float
        Rounded to float32 first (angle in degrees).

    Returns
    -------
    ndarray of float32, shape (4, 2)
    """
    fcx = np.float32(cx)
    fcy = np.float32(cy)
    fw = np.float32(w)
    fh = np.float32(h)
    rad = np.float64(np.float32(angle)) * math.pi / 180.0
    half = np.float32(0.5)
    b = np.float32(math.cos(rad)) * half
    a = np.float32(math.sin(rad)) * half
    two = np.float32(2.0)
    out = np.empty((4, 2), np.float32)
    p0x = fcx - a * fh - b * fw
    p0y = fcy + b * fh - a * fw
    p1x = fcx + a * fh - b * fw
    p1y = fcy - b * fh - a * fw
    out[0, 0] = p0x
    out[0, 1] = p0y
    out[1, 0] = p1x
    out[1, 1] = p1y
    out[2, 0] = two * fcx - p0x
    out[2, 1] = two * fcy - p0y
    out[3, 0] = two * fcx - p1x
    out[3, 1] = two * fcy - p1y
    return out


@njit(cache=True, nogil=True)
def _stable_sort_by_x(corners):
    """Order of the 4 corners after Python's stable ``sorted(..., key=x)``.

    The steps of CPython's list sort on four items (an initial run, ascending or strictly
    descending and then reversed, extended by binary insertion), with ``<`` as the only
    comparison, so the order is the reference's even for unordered (NaN) keys.
    """
    n = 4
    order = np.arange(n)
    key = corners[:, 0]
    # initial run
    run = 2
    if key[1] < key[0]:
        while run < n and key[run] < key[run - 1]:
            run += 1
        for i in range(run // 2):
            t = order[i]
            order[i] = order[run - 1 - i]
            order[run - 1 - i] = t
    else:
        while run < n and not (key[run] < key[run - 1]):
            run += 1
    # binary insertion of the rest
    for start in range(run, n):
        pivot = order[start]
        lo = 0
        hi = start
        while lo < hi:
            mid = lo + ((hi - lo) >> 1)
            if key[pivot] < key[order[mid]]:
                hi = mid
            else:
                lo = mid + 1
        for k in range(start, lo, -1):
            order[k] = order[k - 1]
        order[lo] = pivot
    return order


@njit(cache=True, nogil=True)
def get_mini_boxes_nb(px, py):
    """The baseline's ``get_mini_boxes``: ordered rectangle corners and the short side.

    The Numba twin of :func:`unclip_tuner.postprocess.reference.get_mini_boxes`: the
    corners of :func:`min_area_rect_nb` (:func:`box_points_nb`) sorted by x with a stable
    sort; of the two leftmost the first is the top-left when the second has a strictly
    larger y, otherwise the second is; the two rightmost likewise give the top-right;
    the result is ``[TL, TR, BR, BL]``.

    Parameters
    ----------
    px, py : ndarray of int64, shape (n,)

    Returns
    -------
    box : ndarray of float32, shape (4, 2)
    short_side : float
        ``min(width, height)`` of the rectangle (a float32 value).
    """
    cx, cy, w, h, ang = min_area_rect_nb(px, py)
    corners = box_points_nb(cx, cy, w, h, ang)
    order = _stable_sort_by_x(corners)
    if corners[order[1], 1] > corners[order[0], 1]:
        i1 = order[0]
        i4 = order[1]
    else:
        i1 = order[1]
        i4 = order[0]
    if corners[order[3], 1] > corners[order[2], 1]:
        i2 = order[2]
        i3 = order[3]
    else:
        i2 = order[3]
        i3 = order[2]
    box = np.empty((4, 2), np.float32)
    box[0] = corners[i1]
    box[1] = corners[i2]
    box[2] = corners[i3]
    box[3] = corners[i4]
    # Python's min(w, h): the second only when strictly smaller
    short = h if h < w else w
    return box, np.float64(short)
