"""Map ensembles: the weighted average of several detectors' probability maps.

Averaging the probability maps of two or three models (or of one model under two input
sizes) before the DB decoder is a cheap ensemble: the decoder, and therefore the tuning,
work on the averaged map as on any other. Two ways to use it:

* :func:`average_maps` returns a lazy :class:`~unclip_tuner.cache.base.MapStore` that
  averages one image at a time when asked (``tune-post --cache A --cache B --weights ...``);
* :func:`write_ensemble` writes the averaged maps as a new cache
  (``unclip-tuner ensemble A B --weights 0.6 0.4 --out C``).

Rules
-----
* The stores must hold the same images (same names) with the same original image size.
  The first store decides the image order, the ground truth and the network grid.
* Weights must be finite and >= 0 with a positive sum; they are divided by their sum.
* Stores whose weight is 0 are not read at all, so weights ``(1, 0)`` give the first
  store's maps bit for bit.
* A map whose grid differs from the first store's (another shape, or another inverse
  matrix) is warped into the first store's network space through the two inverse
  matrices: a first-store pixel ``p`` lies at image point ``M_1 p``, which is pixel
  ``M_k^-1 M_1 p`` of store ``k``; ``cv2.warpAffine`` samples it bilinearly, with 0
  outside store ``k``'s map. ``align=False`` refuses such maps instead.
* The sum is accumulated in float64 in store order and rounded to float32 once, then
  clipped to ``[0, 1]`` (a sum of weights that rounds above 1 can exceed 1 by an ulp).
  Averaging identical maps with weights that are exact binary fractions (``0.5, 0.5``)
  therefore reproduces them exactly.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from .base import MapRecord, MapStore
from .store import fingerprint_of

PathLike = Union[str, os.PathLike]

__all__ = ["EnsembleMapStore", "average_maps", "fingerprint_parts", "normalise_weights",
           "write_ensemble", "warp_to_grid"]


def normalise_weights(weights: Sequence[float], n_stores: int) -> List[float]:
    """Check the weights and divide them by their sum.

    Parameters
    ----------
    weights : sequence of float, optional
        One weight per store; ``None`` or empty means equal weights.
    n_stores : int
        Number of stores.

    Returns
    -------
    list of float
        Weights summing to 1 (up to rounding); a zero weight stays exactly 0.

    Raises
    ------
    ValueError
        For a count mismatch, a negative or non-finite weight, or an all-zero set.
    """
    if n_stores < 1:
        raise ValueError("an ensemble needs at least one map store")
    if weights is None or len(weights) == 0:
        return [1.0 / n_stores] * n_stores
    if len(weights) != n_stores:
        raise ValueError(f"got {len(weights)} weight(s) for {n_stores} map store(s)")
    out = []
    for w in weights:
        try:
            w = float(w)
        except (TypeError, ValueError):
            raise ValueError(f"a weight must be a number, got {w!r}") from None
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"weights must be finite and >= 0, got {w!r}")
        out.append(w)
    total = math.fsum(out)
    if total <= 0:
        raise ValueError("at least one weight must be positive")
    return [w / total for w in out]


def warp_to_grid(prob: np.ndarray, matrix: np.ndarray, ref_matrix: np.ndarray,
                 ref_shape: tuple) -> np.ndarray:
    """Resample a map into another network grid of the same image.

    Parameters
    ----------
    prob : ndarray, shape (h, w), float32
        The map to move, in its own network space.
    matrix : ndarray, shape (3, 3)
        Its inverse matrix (network pixels -> image pixels).
    ref_matrix : ndarray, shape (3, 3)
        The target grid's inverse matrix.
    ref_shape : (H, W)
        The target grid's shape.

    Returns
    -------
    ndarray, shape (H, W), float32
        ``out[y, x] = prob`` sampled bilinearly at ``matrix^-1 @ ref_matrix @ (x, y, 1)``,
        0 where that point falls outside ``prob``.
    """
    import cv2

    m = np.asarray(matrix, dtype=np.float64)
    if abs(np.linalg.det(m)) < 1e-12:
        raise ValueError("the inverse matrix is singular: the map cannot be aligned")
    to_src = np.linalg.inv(m) @ np.asarray(ref_matrix, dtype=np.float64)
    h, w = int(ref_shape[0]), int(ref_shape[1])
    return cv2.warpAffine(np.ascontiguousarray(prob, dtype=np.float32), to_src[:2], (w, h),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


class EnsembleMapStore(MapStore):
    """A lazy weighted average of map stores (see the module docstring for the rules).

    Build it with :func:`average_maps`. ``get(name)`` reads the image's map from every store
    with a positive weight and averages them; nothing is kept in memory between calls.

    Attributes
    ----------
    stores : list of MapStore
        The members, in the order given.
    weights : list of float
        Normalised weights (summing to 1).
    align : bool
        Warp maps whose grid differs from the first store's; refuse them when False.
    """

    def __init__(self, stores: Sequence[MapStore], weights: Optional[Sequence[float]] = None,
                 align: bool = True, check_sizes: bool = True) -> None:
        self.stores = list(stores)
        self.weights = normalise_weights(weights, len(self.stores))
        self.align = bool(align)
        first = self.stores[0]
        self._names = list(first.names())
        known = set(self._names)
        for k, s in enumerate(self.stores[1:], start=2):
            other = list(s.names())
            other_set = set(other)
            if other_set != known or len(other) != len(self._names):
                missing = sorted(known - other_set)
                extra = sorted(other_set - known)
                what = (f"lacks {len(missing)} image(s) of the first, e.g. {missing[0]!r}"
                        if missing else f"has {len(extra)} image(s) the first lacks, "
                        f"e.g. {extra[0]!r}" if extra else "lists an image twice")
                raise ValueError(f"map store {k} does not hold the same images as the "
                                 f"first: it {what}")
        self.gt = first.gt
        self.meta = {
            **dict(getattr(first, "meta", {}) or {}),
            "ensemble": {"members": [_describe(s) for s in self.stores],
                         "weights": list(self.weights), "align": self.align},
        }
        parts = fingerprint_parts(self.stores, self.weights, self.align)
        #: Fingerprint of the averaged maps (what ``write_ensemble`` gives the written cache
        #: in float32), or ``None`` when a member has no fingerprint (in-memory stores).
        self.fingerprint = None if parts is None else fingerprint_of(parts, "float32")
        self._active = [(s, w) for s, w in zip(self.stores, self.weights) if w > 0]
        if check_sizes:
            for name in self._names:
                self._sizes(name)

    def _sizes(self, name: str) -> None:
        """Refuse an image whose original size differs between stores (cheap for caches)."""
        sizes = []
        for s in self.stores:
            entries = getattr(s, "_entries", None)
            if entries is not None and name in entries:
                e = entries[name]
                sizes.append((int(e.width), int(e.height)))
            else:
                r = s.get(name)
                sizes.append((int(r.width), int(r.height)))
        for k, size in enumerate(sizes[1:], start=2):
            if size != sizes[0]:
                raise ValueError(f"{name}: the original image size differs between map store 1 "
                                 f"({sizes[0][0]}x{sizes[0][1]}) and map store {k} "
                                 f"({size[0]}x{size[1]}): not the same image")

    def names(self) -> List[str]:
        return list(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def get(self, name: str) -> MapRecord:
        """The averaged map of one image, in the first store's network space."""
        first = self.stores[0].get(name)
        ref_shape = first.prob.shape
        ref_m = first.inverse_matrix
        if len(self._active) == 1:
            store, _ = self._active[0]
            rec = first if store is self.stores[0] else store.get(name)
            self._check_size(name, first, rec)
            prob = self._aligned(name, rec, ref_m, ref_shape)
            return MapRecord(name, prob, ref_m.copy(), first.width, first.height)
        acc = np.zeros(ref_shape, dtype=np.float64)
        for store, w in self._active:
            rec = first if store is self.stores[0] else store.get(name)
            self._check_size(name, first, rec)
            acc += w * self._aligned(name, rec, ref_m, ref_shape).astype(np.float64)
        prob = acc.astype(np.float32)
        np.clip(prob, 0.0, 1.0, out=prob)
        return MapRecord(name, prob, ref_m.copy(), first.width, first.height)

    @staticmethod
    def _check_size(name: str, first: MapRecord, rec: MapRecord) -> None:
        if (rec.width, rec.height) != (first.width, first.height):
            raise ValueError(f"{name}: the original image size differs between map stores "
                             f"({first.width}x{first.height} vs {rec.width}x{rec.height})")

    def _aligned(self, name: str, rec: MapRecord, ref_m: np.ndarray, ref_shape: tuple) -> np.ndarray:
        prob = np.asarray(rec.prob, dtype=np.float32)
        if prob.shape == ref_shape and np.array_equal(rec.inverse_matrix, ref_m):
            return prob
        if not self.align:
            raise ValueError(f"{name}: the maps have different network grids (shape "
                             f"{prob.shape} vs {ref_shape}, or another inverse matrix); "
                             f"allow alignment to warp them into the first store's grid")
        try:
            return warp_to_grid(prob, rec.inverse_matrix, ref_m, ref_shape)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None


def _describe(store: MapStore) -> Dict:
    out: Dict = {"kind": type(store).__name__, "images": len(store)}
    path = getattr(store, "path", None)
    if path is not None:
        out["path"] = str(path)
    fp = getattr(store, "fingerprint", None)
    if fp is not None:
        out["fingerprint"] = fp
    return out


def fingerprint_parts(stores: Sequence[MapStore], weights: Sequence[float],
                      align: bool) -> Optional[Dict]:
    """What decides an ensemble's maps: the members' fingerprints, the normalised weights
    (as exact ``repr`` texts) and the alignment flag; ``None`` when a member has no
    fingerprint."""
    members = [getattr(s, "fingerprint", None) for s in stores]
    if any(fp is None for fp in members):
        return None
    return {"source": "ensemble", "members": members,
            "weights": [repr(float(w)) for w in weights], "align": bool(align)}


def average_maps(stores: Sequence[MapStore], weights: Optional[Sequence[float]] = None,
                 align: bool = True) -> EnsembleMapStore:
    """A lazy map store averaging ``stores`` with ``weights`` (normalised to sum 1).

    Parameters
    ----------
    stores : sequence of MapStore
        Two or more stores holding the same images (one store is allowed: it is returned
        unchanged through the wrapper).
    weights : sequence of float, optional
        One weight per store (>= 0, positive sum); equal weights when omitted.
    align : bool
        Warp maps on another network grid into the first store's (bilinear); refuse them
        when False.

    Returns
    -------
    EnsembleMapStore
        Its ``gt`` is the first store's; ``meta["ensemble"]`` describes the members.

    Raises
    ------
    ValueError
        When the stores hold different images or different original sizes, or for bad
        weights.
    """
    return EnsembleMapStore(stores, weights, align=align)


def write_ensemble(stores: Sequence[MapStore], weights: Optional[Sequence[float]], out: PathLike,
                   align: bool = True, dtype: str = "float32", overwrite: bool = False,
                   progress: Optional[Callable] = None):
    """Write the weighted average of ``stores`` as a new cache.

    Parameters
    ----------
    stores, weights, align
        See :func:`average_maps`.
    out : path
        The new cache folder (resumed when it holds the same ensemble).
    dtype : {"float32", "float16"}
        Storage dtype.
    overwrite : bool
        Replace a cache holding other maps.
    progress : callable, optional
        Wraps the iterable of image names (``progress(names, total=n)``).

    Returns
    -------
    MapCache
        The new cache, opened.
    """
    from .store import MapCache

    ens = average_maps(stores, weights, align=align)
    parts = fingerprint_parts(ens.stores, ens.weights, ens.align)
    if parts is None:
        raise ValueError("write_ensemble needs on-disk caches (with fingerprints); "
                         "use average_maps for in-memory stores")
    outp = Path(out).resolve()
    for s in ens.stores:
        p = getattr(s, "path", None)
        if p is not None and Path(p).resolve() == outp:
            raise ValueError(f"{out}: the output cache must not be one of the inputs")
    writer = MapCache.create(out, parts, meta=ens.meta, dtype=dtype, gt=ens.gt,
                             overwrite=overwrite)
    with writer:
        todo = [n for n in ens.names() if not writer.has(n)]
        it = progress(todo, total=len(todo)) if progress is not None else todo
        for name in it:
            writer.add(ens.get(name))
    return MapCache.open(out, verify="none")
