"""The competition's CLEval (detection only, POLY boxes), fast implementation.

Same numbers as :mod:`unclip_tuner.metrics.cleval_reference` (which documents the rules),
computed with the Numba kernels of :mod:`unclip_tuner.metrics._cleval_kernels`:

* :class:`CLEvalScorer` prepares the ground-truth side ONCE per data set: GT points
  rounded as the baseline's loader does, pseudo character counts and centres, bounding
  boxes, don't-care regions with the cared words they lose, and the iteration orders the
  baseline's Python sets impose on its float sums.
* Per image, ``detection_pairs`` (in :mod:`unclip_tuner.metrics._cleval_kernels`) computes
  the pair data of each detection, looking only at GT words whose bounding boxes touch it
  and computing polygon intersections only where the rules consult them (a shared
  character centre, or a don't-care GT); ``match_pairs`` then runs the matching rules over
  the detections scored, and ``score_detections`` does both, with the false-positive
  counts, in one call for a one-off score. A :class:`DetectionPairs` table keeps the pair
  data, so a subset of the same detections is re-scored without any geometry. The kernels
  release the GIL: a :class:`CLEvalScorer` may be shared by threads scoring different
  images.

The false-positive count of an unmatched detection depends on which hull edge Qhull
visits first when two edges tie for the minimum-area rectangle (typically an axis-aligned
box); where the tie changes the count, the count is taken from scipy's ``ConvexHull``
exactly as the reference does, and remembered per polygon.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Dict, Mapping, Tuple

import numpy as np

from ..io.types import ImageWords
from ..io.types import pack_polygons as pack
from . import _cleval_kernels as K
from .base import ImageScore
from .cleval_reference import (MAX_POLYGONS, MIN_POINTS, aspect_ratio, fp_char_count,
                               gt_char_count, image_score, prepare_gt_points, qhull_order)
from .geometry import intersection_area

__all__ = ["CLEvalScorer", "DetectionPairs", "cleval_image", "pack_polygons"]

_EMPTY_F = np.zeros(0, dtype=np.float64)
_EMPTY_I = np.zeros(1, dtype=np.int64)


def pack_polygons(words: ImageWords) -> Tuple[np.ndarray, np.ndarray]:
    """``(coords, offsets)`` of an image's polygons: ``(N, 2)`` float64 and ``(n + 1)`` int64."""
    return pack(words.polygons)


@dataclass
class _GTImage:
    """The prepared GT side of one image (arguments of the per-image kernels)."""

    xs: np.ndarray
    ys: np.ndarray
    offs: np.ndarray
    box: np.ndarray
    dc: np.ndarray
    chars: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    coffs: np.ndarray
    dc_order: np.ndarray
    valid_rank: np.ndarray
    hxs: np.ndarray
    hys: np.ndarray
    hoffs: np.ndarray
    hole_slices: np.ndarray


def _prepare_gt_image(words: ImageWords, round_gt: bool) -> _GTImage:
    """Everything the per-image kernel needs from one image's ground truth."""
    flags = words.dont_care_flags
    kept = [i for i, p in enumerate(words.polygons) if p.shape[0] >= MIN_POINTS]
    pts = [prepare_gt_points(words.polygons[i], round_gt) for i in kept]
    n = len(pts)
    offs = np.zeros(n + 1, dtype=np.int64)
    if n:
        offs[1:] = np.cumsum([p.shape[0] for p in pts])
        allp = np.concatenate(pts, axis=0)
        xs = np.ascontiguousarray(allp[:, 0])
        ys = np.ascontiguousarray(allp[:, 1])
    else:
        xs = ys = _EMPTY_F
    dc = np.array([bool(flags[i]) for i in kept], dtype=np.bool_)

    # pseudo character counts: kernels, and scipy where Qhull's start vertex decides
    status, chars = K.char_counts(xs, ys, offs, False)
    for k in np.flatnonzero(status == K.UNRESOLVED):
        chars[k] = count_via_qhull(pts[k], fp=False)
    cx, cy, coffs = K.all_character_centres(xs, ys, offs, chars)
    box = K.bboxes(xs, ys, offs)

    # the orders in which the baseline's sets are iterated
    dc_set = {g for g in range(n) if dc[g]}
    dc_order = np.array(list(dc_set), dtype=np.int64)
    valid_rank = np.full(n, -1, dtype=np.int64)
    for rank, g in enumerate(set(range(n)) - dc_set):
        valid_rank[g] = rank

    # don't-care regions: the cared words overlapping them are subtracted
    hole_slices = np.zeros((n, 4), dtype=np.int64)
    hx, hy, ho = [], [], []
    n_pts = 0
    n_offs = 0
    for g in range(n):
        if not dc[g]:
            continue
        start_pt, start_off = n_pts, n_offs
        rel = [0]
        for h in range(n):
            if dc[h] or not _touch(box[g], box[h]):
                continue
            hs, he = offs[h], offs[h + 1]
            gs, ge = offs[g], offs[g + 1]
            if intersection_area(xs[hs:he], ys[hs:he], xs[gs:ge], ys[gs:ge]) > 0:
                hx.append(xs[hs:he])
                hy.append(ys[hs:he])
                rel.append(rel[-1] + (he - hs))
        ho.append(np.array(rel, dtype=np.int64))
        n_pts += rel[-1]
        n_offs += len(rel)
        hole_slices[g] = (start_pt, n_pts, start_off, n_offs)
    hxs = np.ascontiguousarray(np.concatenate(hx)) if hx else _EMPTY_F
    hys = np.ascontiguousarray(np.concatenate(hy)) if hy else _EMPTY_F
    hoffs = np.concatenate(ho) if ho else _EMPTY_I
    return _GTImage(xs, ys, offs, box, dc, chars, cx, cy, coffs, dc_order, valid_rank,
                    hxs, hys, hoffs, hole_slices)


def count_via_qhull(poly: np.ndarray, fp: bool) -> int:
    """Character count of a polygon whose count depends on Qhull's first hull vertex.

    scipy's ``ConvexHull`` supplies that vertex; the kernel does the rest. Should the
    kernel's hull not contain it, the plain reference computes the whole count.
    """
    poly = np.ascontiguousarray(poly, dtype=np.float64)
    order = qhull_order(poly)
    if order is not None:
        sx, sy = poly[order[0]].astype(np.float32)
        status, count = K.char_count_from(np.ascontiguousarray(poly[:, 0]),
                                          np.ascontiguousarray(poly[:, 1]), fp,
                                          float(sx), float(sy))
        if status == K.RESOLVED:
            return int(count)
    ar = aspect_ratio(poly)
    return fp_char_count(ar) if fp else gt_char_count(ar)


def _touch(a: np.ndarray, b: np.ndarray) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


class DetectionPairs:
    """CLEval pair data of one image's detections, kept per detection.

    Everything the metric asks about a (GT word, detection) pair depends on those two
    polygons only, so a table filled once lets :meth:`CLEvalScorer.score_selected` score
    any subset of the detections with no polygon geometry: a search that changes only
    ``box_thresh`` re-runs the matching, not the intersections. Detections are numbered
    ``0..n-1`` by the caller and filled in any order, each once.

    Attributes
    ----------
    known : bool per detection, filled yet.
    valid : bool per detection, enough points to count (see :func:`detection_pairs`).
    first, count : per detection, its pairs ``first:first + count`` in ``g``, ``inside``,
        ``ap`` and ``char0`` (the GT word, the number of its centres inside, the area
        precision, where those centres start in ``chars``).
    fp : per detection, its false-positive character count once known, else -1.
    """

    def __init__(self, n: int) -> None:
        self.known = np.zeros(n, dtype=np.bool_)
        self.valid = np.zeros(n, dtype=np.bool_)
        self.first = np.zeros(n, dtype=np.int64)
        self.count = np.zeros(n, dtype=np.int64)
        self.fp = np.full(n, -1, dtype=np.int64)
        self.g = np.zeros(0, dtype=np.int32)
        self.inside = np.zeros(0, dtype=np.int32)
        self.ap = np.zeros(0, dtype=np.float32)
        self.char0 = np.zeros(0, dtype=np.int64)
        self.chars = np.zeros(0, dtype=np.int32)

    def add(self, ids: np.ndarray, pairs: tuple) -> None:
        """Record detections ``ids`` from :meth:`CLEvalScorer.detection_pairs` output."""
        valid, pstart, pg, pin, pap, pc0, chars = pairs
        base, cbase = self.g.shape[0], self.chars.shape[0]
        self.known[ids] = True
        self.valid[ids] = valid
        self.first[ids] = base + pstart[:-1]
        self.count[ids] = np.diff(pstart)
        if pg.shape[0]:
            self.g = np.concatenate([self.g, pg])
            self.inside = np.concatenate([self.inside, pin])
            self.ap = np.concatenate([self.ap, pap])
            self.char0 = np.concatenate([self.char0, pc0 + cbase])
        if chars.shape[0]:
            self.chars = np.concatenate([self.chars, chars])


class CLEvalScorer:
    """Scores detections image by image against a data set's ground truth.

    Parameters
    ----------
    gt : Dataset or mapping of name -> ImageWords
        Ground truth; ``ImageWords.dont_care`` flags don't-care words.
    max_polygons : int
        Detections per image beyond this many are ignored (the baseline's cut, 500).
    round_gt : bool
        Round GT points half to even, as the baseline's data loader does before the
        metric sees them (default). With False they are truncated like detections.

    Notes
    -----
    Thread-safe: :meth:`score` may be called from several threads at once.
    """

    def __init__(self, gt: Mapping[str, ImageWords], max_polygons: int = MAX_POLYGONS,
                 round_gt: bool = True) -> None:
        if max_polygons < 0:
            raise ValueError("max_polygons must be >= 0")
        self.max_polygons = int(max_polygons)
        self.round_gt = bool(round_gt)
        self._images: Dict[str, _GTImage] = {
            name: _prepare_gt_image(words, self.round_gt) for name, words in gt.items()}
        self._fp_cache: Dict[bytes, int] = {}
        self._lock = threading.Lock()

    def __contains__(self, name: str) -> bool:
        return name in self._images

    def __len__(self) -> int:
        return len(self._images)

    def score(self, name: str, det: ImageWords) -> ImageScore:
        """Score one image's detections (in output order) against its GT.

        Parameters
        ----------
        name : str
            The GT image name.
        det : ImageWords
            Detections; only the first ``max_polygons`` count.

        Returns
        -------
        ImageScore
        """
        coords, offsets = pack_polygons(det)
        return self.score_packed(name, coords, offsets)

    def __call__(self, name: str, det: ImageWords) -> ImageScore:
        """Same as :meth:`score`: a scorer is the ``image_scorer`` callable itself."""
        return self.score(name, det)

    def score_packed(self, name: str, coords: np.ndarray, offsets: np.ndarray) -> ImageScore:
        """Score detections given as packed arrays (the post-processor's output form).

        Parameters
        ----------
        name : str
            The GT image name.
        coords : ndarray, shape (N, 2), float64
            All detection vertices, polygon after polygon.
        offsets : ndarray, shape (n_det + 1,), int64
            ``coords[offsets[k]:offsets[k + 1]]`` is detection ``k``; ``offsets[0] == 0``
            and ``offsets[-1] == N``.

        Returns
        -------
        ImageScore
        """
        gt = self._image(name)
        coords, offsets = _check_packed(coords, offsets)
        stats, unresolved = K.score_detections(
            gt.xs, gt.ys, gt.offs, gt.box, gt.dc, gt.chars, gt.cx, gt.cy, gt.coffs,
            gt.dc_order, gt.valid_rank, gt.hxs, gt.hys, gt.hoffs, gt.hole_slices,
            coords, offsets, self.max_polygons)
        fp = int(stats[K.ST_FP_CHARS])
        for k in unresolved:
            fp += self._fp_count(coords[offsets[k]:offsets[k + 1]])
        return _image_score(stats, fp)

    def detection_pairs(self, name: str, coords: np.ndarray, offsets: np.ndarray) -> tuple:
        """The pair data of packed detections (see :class:`DetectionPairs`).

        ``coords``/``offsets`` as for :meth:`score_packed` (float64, validated by the
        caller); the result goes to :meth:`DetectionPairs.add`.
        """
        gt = self._image(name)
        return K.detection_pairs(gt.xs, gt.ys, gt.offs, gt.box, gt.dc, gt.cx, gt.cy, gt.coffs,
                                 gt.hxs, gt.hys, gt.hoffs, gt.hole_slices, coords, offsets)

    def score_selected(self, name: str, table: "DetectionPairs", ids: np.ndarray,
                       coords: np.ndarray, starts: np.ndarray, lengths: np.ndarray
                       ) -> ImageScore:
        """Score the detections ``ids`` of a pair table, in output order.

        The same numbers as :meth:`score_packed` on those detections' polygons: only the
        first ``max_polygons`` of ``ids`` count, then those with too few points are
        dropped. Detection ``k``'s polygon is ``coords[starts[k]:starts[k] + lengths[k]]``;
        it is read only for unmatched detections whose false-positive count the table does
        not know yet. Not thread-safe for one table (it records those counts).
        """
        gt = self._image(name)
        ids = np.asarray(ids, dtype=np.int64)[:self.max_polygons]
        ids = ids[table.valid[ids]]
        stats, unmatched = K.match_pairs(gt.dc, gt.chars, gt.cx.shape[0], gt.dc_order,
                                         gt.valid_rank, ids, table.first, table.count,
                                         table.g, table.inside, table.ap, table.char0,
                                         table.chars)
        need = unmatched[table.fp[unmatched] < 0]
        if need.shape[0]:
            status, counts = K.fp_counts_of(coords, starts, lengths, need)
            for t in np.flatnonzero(status == K.UNRESOLVED):
                k = need[t]
                poly = coords[starts[k]:starts[k] + lengths[k]].astype(np.float64)
                counts[t] = self._fp_count(poly)
            table.fp[need] = counts
        return _image_score(stats, int(table.fp[unmatched].sum()))

    def _image(self, name: str) -> _GTImage:
        gt = self._images.get(name)
        if gt is None:
            raise ValueError(f"image {name!r} is not in the ground truth")
        return gt

    def _fp_count(self, poly: np.ndarray) -> int:
        """False-positive count through scipy's hull order, remembered per polygon."""
        key = poly.tobytes()
        count = self._fp_cache.get(key)
        if count is None:
            count = count_via_qhull(poly, fp=True)
            with self._lock:
                if len(self._fp_cache) > 200_000:
                    self._fp_cache.clear()
                self._fp_cache[key] = count
        return count


def _image_score(stats: np.ndarray, fp: int) -> ImageScore:
    """The per-image score from the kernels' statistics and the false-positive count."""
    extra = {"num_splitted": float(stats[K.ST_SPLIT]),
             "num_merged": float(stats[K.ST_MERGE]),
             "num_char_overlapped": float(stats[K.ST_DET_CHARS] - stats[K.ST_TP]),
             "n_gt": float(stats[K.ST_N_GT]), "n_det": float(stats[K.ST_N_DET]),
             "n_det_dont_care": float(stats[K.ST_N_DET_DC])}
    return image_score(int(stats[K.ST_TP]), float(stats[K.ST_PEN_R]),
                       float(stats[K.ST_PEN_P]), int(stats[K.ST_GT_CHARS]),
                       int(stats[K.ST_DET_CHARS]), fp, extra)


def _check_packed(coords, offsets) -> Tuple[np.ndarray, np.ndarray]:
    """Validate and normalise packed detections; clear one-line errors."""
    coords = np.ascontiguousarray(coords, dtype=np.float64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"coords must have shape (N, 2), got {coords.shape}")
    if offsets.ndim != 1 or offsets.shape[0] < 1:
        raise ValueError("offsets must be a 1-D array of n_det + 1 entries")
    if offsets[0] != 0 or offsets[-1] != coords.shape[0]:
        raise ValueError(f"offsets must start at 0 and end at len(coords) = {coords.shape[0]}")
    if offsets.shape[0] > 1 and np.any(np.diff(offsets) < 0):
        raise ValueError("offsets must be non-decreasing")
    if not np.all(np.isfinite(coords)):
        raise ValueError("coords contain NaN or infinite values")
    return coords, offsets


def cleval_image(gt: ImageWords, det: ImageWords, max_polygons: int = MAX_POLYGONS,
                 round_gt: bool = True) -> ImageScore:
    """CLEval of one image (fast path; see :func:`cleval_reference.cleval_image`).

    For many images, build one :class:`CLEvalScorer` instead: the GT preparation is then
    done once.
    """
    scorer = CLEvalScorer({"": gt}, max_polygons=max_polygons, round_gt=round_gt)
    return scorer.score("", det)
