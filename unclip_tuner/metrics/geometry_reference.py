"""Plain reference geometry of the competition's CLEval (Polygon3 3.0.9.1 / GPC semantics).

The competition metric builds every box as a Polygon3 polygon from its points truncated to
int32 and then asks four questions. This module answers them with straightforward float64
Python, written for clarity; :mod:`unclip_tuner.metrics.geometry` answers the same
questions with Numba kernels and is tested against this module and against vectors
produced by Polygon3 itself (``tests/data/geometry``).

The semantics reproduced (each checked against Polygon3 3.0.9.1):

* ``Polygon(p).area()`` of one contour is the absolute value of the shoelace sum, summed
  in the order ``(x[i] + x[i+1]) * (y[i+1] - y[i])`` around the ring. A self-intersecting
  contour is not filled: a symmetric bow-tie has area 0.
* ``(A & B).area()`` is the area of the intersection of A and B, each filled with the
  EVEN-ODD rule (a point is inside when a ray from it crosses the contour an odd number
  of times). ``area()`` of the resulting contours adds outer contours and subtracts holes,
  which is exactly the measure of that set; an empty result has area 0.
* ``((base - h1) - h2 ...) & det`` is the even-odd set of ``det`` intersected with the
  even-odd set of ``base`` minus the even-odd sets of the ``h``: a difference with GPC
  leaves a clean polygon whose even-odd fill is the difference region, so successive
  subtractions compose as set differences.
* ``Polygon(p).isInside(x, y)`` is the crossing-number test over the closed ring: the edge
  from ``v[j]`` to ``v[i]`` toggles the answer when ``v[i].y <= y < v[j].y`` or
  ``v[j].y <= y < v[i].y`` and ``x < (v[j].x - v[i].x) * (y - v[i].y) / (v[j].y - v[i].y)
  + v[i].x``, evaluated in that order in float64. On an axis-aligned box this makes the
  left and top edges (smallest x, smallest y) inside and the right and bottom edges
  outside; a self-intersecting ring answers by even-odd.

Polygon3 refuses to build a polygon from fewer than 3 points (``Polygon.Error: Invalid
polygon or contour for operation``); the functions here accept them and give the values
of the rules above (area 0, empty intersections, never inside), so that the caller decides
what such a box means. GPC itself is wrong, or crashes, on a few pairs where a ring
intersects itself with coincident crossings, and may report an area below 1e-14 for an
empty intersection of zero-area rings; these functions give the exact even-odd area (see
:mod:`unclip_tuner.metrics.geometry` for the measured rates).

Areas are computed exactly up to float64 rounding by vertical slab decomposition: between
two consecutive "event" abscissae (vertex x coordinates and crossing points of any two
edges) no edges cross, so along a vertical line each operand's even-odd cross-section is a
set of intervals whose end points move linearly with x. The length of the combined set is
then linear in x inside the slab, and its value at the slab's middle times the slab's
width is the slab's exact area.
"""

from __future__ import annotations

from typing import Callable, List, Sequence, Tuple

import numpy as np

__all__ = ["polygon_area", "intersection_area", "difference_intersection_area", "point_inside"]

# An edge oriented from left to right: (x0, y0, x1, y1) with x0 < x1. Vertical edges are
# dropped: they never cross the interior of a vertical slab.
Edge = Tuple[float, float, float, float]


def _vertices(poly, name: str = "poly") -> np.ndarray:
    """Validate one polygon and return it as an ``(n, 2)`` float64 array."""
    arr = np.asarray(poly, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must be an (n, 2) array of vertices, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has no vertices")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite coordinates")
    return arr


def polygon_area(poly) -> float:
    """Area of one contour as Polygon3 ``Polygon(p).area()`` computes it.

    Parameters
    ----------
    poly : array_like, shape (n, 2)
        Vertices (integer-valued in the metric), the ring closes implicitly.

    Returns
    -------
    float
        ``0.5 * |sum (x[i] + x[i+1]) * (y[i+1] - y[i])|`` over the closed ring.
    """
    v = _vertices(poly)
    xs = [float(x) for x in v[:, 0]]
    ys = [float(y) for y in v[:, 1]]
    n = len(xs)
    total = 0.0
    for i in range(n):
        j = (i + 1) % n
        total += (xs[i] + xs[j]) * (ys[j] - ys[i])
    return 0.5 * abs(total)


def point_inside(poly, x: float, y: float) -> bool:
    """Polygon3 ``Polygon(p).isInside(x, y)`` for a one-contour polygon.

    Parameters
    ----------
    poly : array_like, shape (n, 2)
        Vertices of the ring.
    x, y : float
        The query point (pseudo character centres may be half-integers).

    Returns
    -------
    bool
        The crossing-number (even-odd) answer with Polygon3's half-open edge rule, see the
        module docstring.
    """
    v = _vertices(poly)
    x = float(x)
    y = float(y)
    n = v.shape[0]
    inside = False
    j = n - 1
    for i in range(n):
        xi, yi = float(v[i, 0]), float(v[i, 1])
        xj, yj = float(v[j, 0]), float(v[j, 1])
        spans = (yi <= y < yj) or (yj <= y < yi)
        if spans and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def _edges(v: np.ndarray) -> List[Edge]:
    """The non-vertical edges of the closed ring ``v``, each oriented left to right."""
    out: List[Edge] = []
    n = v.shape[0]
    for i in range(n):
        ax, ay = float(v[i, 0]), float(v[i, 1])
        bx, by = float(v[(i + 1) % n, 0]), float(v[(i + 1) % n, 1])
        if ax < bx:
            out.append((ax, ay, bx, by))
        elif bx < ax:
            out.append((bx, by, ax, ay))
    return out


def _y_at(e: Edge, x: float) -> float:
    """Ordinate of edge ``e`` at abscissa ``x`` (``x0 <= x <= x1``)."""
    x0, y0, x1, y1 = e
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def _collinear(a: Edge, b: Edge) -> bool:
    """True when edges ``a`` and ``b`` lie on one straight line (exact for integer vertices)."""
    dx, dy = a[2] - a[0], a[3] - a[1]
    return (dx * (b[1] - a[1]) - dy * (b[0] - a[0]) == 0.0
            and dx * (b[3] - a[1]) - dy * (b[2] - a[0]) == 0.0)


def _crossing_x(a: Edge, b: Edge) -> List[float]:
    """Abscissa where edges ``a`` and ``b`` cross strictly inside their common x range.

    Returns an empty list when they do not cross there (disjoint ranges, parallel or
    coincident, or meeting only at the range's ends, which are vertex abscissae anyway).
    """
    lo = max(a[0], b[0])
    hi = min(a[2], b[2])
    if not lo < hi:
        return []
    d_lo = _y_at(a, lo) - _y_at(b, lo)
    d_hi = _y_at(a, hi) - _y_at(b, hi)
    if (d_lo < 0.0 < d_hi) or (d_hi < 0.0 < d_lo):
        return [lo + (hi - lo) * d_lo / (d_lo - d_hi)]
    return []


def _region_area(operands: Sequence[np.ndarray], inside: Callable[[List[bool]], bool],
                 x_lo: float, x_hi: float) -> float:
    """Area of the set where ``inside(parities)`` holds, between abscissae x_lo and x_hi.

    ``parities[k]`` is True where the point is inside operand ``k`` under the even-odd
    rule. ``inside`` must be False where any operand it requires is absent, so the
    abscissa range can be clipped to the overlap of the required operands.
    """
    if not x_lo < x_hi:
        return 0.0
    edges = [(k, e) for k, v in enumerate(operands) for e in _edges(v)]
    # Edges on one straight line are all evaluated with the first such edge's formula, so
    # that overlapping collinear edges meet at bit-identical ordinates and the sliver
    # between them is exactly empty (as it is for the exact geometry).
    line_of = list(range(len(edges)))
    for i in range(len(edges)):
        for j in range(i):
            if line_of[j] == j and _collinear(edges[j][1], edges[i][1]):
                line_of[i] = j
                break
    events = {float(x) for v in operands for x in v[:, 0] if x_lo <= x <= x_hi}
    events.update((x_lo, x_hi))
    for i in range(len(edges)):
        for j in range(i + 1, len(edges)):
            if line_of[i] == line_of[j]:
                continue
            for x in _crossing_x(edges[i][1], edges[j][1]):
                if x_lo < x < x_hi:
                    events.add(x)
    xs = sorted(events)
    area = 0.0
    for xl, xr in zip(xs[:-1], xs[1:]):
        xm = 0.5 * (xl + xr)
        hits = sorted((_y_at(edges[line_of[i]][1], xm), k)
                      for i, (k, e) in enumerate(edges) if e[0] < xm < e[2])
        parities = [False] * len(operands)
        length = 0.0
        for idx in range(len(hits) - 1):
            y, k = hits[idx]
            parities[k] = not parities[k]
            if inside(parities):
                length += hits[idx + 1][0] - y
        area += length * (xr - xl)
    return area


def intersection_area(a, b) -> float:
    """Polygon3 ``(Polygon(a) & Polygon(b)).area()``; 0.0 when the result is empty.

    Parameters
    ----------
    a, b : array_like, shape (n, 2)
        The two rings, each filled with the even-odd rule.

    Returns
    -------
    float
        Area of the intersection of the two even-odd regions.
    """
    va = _vertices(a, "a")
    vb = _vertices(b, "b")
    lo = max(va[:, 0].min(), vb[:, 0].min())
    hi = min(va[:, 0].max(), vb[:, 0].max())
    return _region_area([va, vb], lambda p: p[0] and p[1], lo, hi)


def difference_intersection_area(det, base, holes) -> float:
    """Polygon3 ``(Polygon(det) & (((Polygon(base) - Polygon(h0)) - Polygon(h1)) ...)).area()``.

    This is the area a detection shares with a don't-care region from which the
    overlapping ground-truth words were subtracted one after another.

    Parameters
    ----------
    det : array_like, shape (n, 2)
        The detection ring.
    base : array_like, shape (m, 2)
        The ring the holes are subtracted from.
    holes : sequence of array_like
        The subtracted rings, in order (the order does not change the area).

    Returns
    -------
    float
        Area of ``EO(det) ∩ EO(base) \\ EO(h0) \\ EO(h1) ...`` (EO: even-odd region).
    """
    vd = _vertices(det, "det")
    vb = _vertices(base, "base")
    vh = [_vertices(h, f"holes[{i}]") for i, h in enumerate(holes)]
    lo = max(vd[:, 0].min(), vb[:, 0].min())
    hi = min(vd[:, 0].max(), vb[:, 0].max())

    def inside(p: List[bool]) -> bool:
        return p[0] and p[1] and not any(p[2:])

    return _region_area([vd, vb] + vh, inside, lo, hi)
