"""Reference unclip: the seed post-processor's polygon expansion with shapely and pyclipper.

This is the plain path that :mod:`unclip_tuner.postprocess.offset` reproduces with Numba
kernels. The rule, as in the baseline's ``DBPostProcessor.unclip``:

1. ``poly = shapely.geometry.Polygon(points)`` on the points as given (float);
   if ``poly.area == 0`` or ``poly.length == 0`` the polygon is skipped;
2. ``distance = poly.area * ratio / poly.length``;
3. ``pyclipper.PyclipperOffset()`` (MiterLimit 2, ArcTolerance 0.25), ``AddPath(points,
   JT_ROUND, ET_CLOSEDPOLYGON)`` (pyclipper converts every coordinate with ``int()``, i.e.
   truncates toward zero), ``Execute(distance)``; the first path is the expanded polygon.

The seed indexes ``Execute(...)[0]`` without checking; here an empty result gives None.
The pinned reference environment has shapely 2.0.2 (GEOS 3.11) and pyclipper 1.3.0.post5
(Clipper 6.4.2); newer versions compute the same values as long as GEOS keeps its ring
area and length formulas and pyclipper keeps Clipper 6.4.2.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np


def _check_points(points) -> np.ndarray:
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < 3:
        raise ValueError(f"points must have shape (n, 2) with n >= 3, got {pts.shape}")
    return pts


def reference_distance(points, ratio: float) -> Optional[float]:
    """``area * ratio / length`` of ``Polygon(points)`` with shapely, or None to skip.

    Parameters
    ----------
    points : array_like, shape (n, 2)
        Polygon vertices, n >= 3.
    ratio : float
        Unclip ratio.

    Returns
    -------
    float or None
        The offset distance; None when the area or the length is 0.
    """
    from shapely.geometry import Polygon

    poly = Polygon(_check_points(points))
    if poly.area == 0 or poly.length == 0:
        return None
    return poly.area * ratio / poly.length


def reference_offset_paths(points, distance: float) -> List[List[List[int]]]:
    """All paths of ``PyclipperOffset`` (round joins, closed polygon) at ``distance``.

    Parameters
    ----------
    points : array_like, shape (n, 2)
        Polygon vertices; pyclipper truncates them to integers.
    distance : float
        Offset distance.

    Returns
    -------
    list of paths
        pyclipper's result, each path a list of ``[x, y]`` integer pairs.
    """
    import pyclipper

    pco = pyclipper.PyclipperOffset()
    pco.AddPath(_check_points(points), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return pco.Execute(distance)


def unclip_reference(points, ratio: float) -> Optional[np.ndarray]:
    """The seed's ``unclip``: shapely distance, then pyclipper's first offset path.

    Parameters
    ----------
    points : array_like, shape (n, 2)
        Polygon vertices (int from ``approxPolyDP`` or float32 box corners), n >= 3.
    ratio : float
        Unclip ratio.

    Returns
    -------
    ndarray of int64, shape (m, 2), or None
        The expanded polygon; None when the seed skips the polygon (zero area or length)
        or pyclipper returns no path.
    """
    distance = reference_distance(points, ratio)
    if distance is None:
        return None
    paths = reference_offset_paths(points, distance)
    if len(paths) == 0:
        return None
    return np.asarray(paths[0], dtype=np.int64).reshape(-1, 2)
