"""Decode-and-score engines: the reference path and the fast path behind one interface.

Both engines answer two questions over a map store:

* ``decode(params, name)``: the detections of one image, in image space;
* ``evaluate(params, images=None)``: the dataset score of a parameter set.

:class:`ReferenceEngine` runs the plain reference decoder (:mod:`.reference`) and the
reference metric on every call. :class:`FastEngine` gives the same numbers but is designed
around what each parameter invalidates:

=====================================  ================================================
parameter                              work it invalidates (per image)
=====================================  ================================================
``thresh``, ``use_dilation``,          bitmap -> contours -> approximated polygons (or
``score_mode``, ``use_polygon``        min-area boxes) -> box scores: the *candidates*
``max_candidates``                     nothing: a prefix cut of the candidates
``box_thresh``                         a filter of the candidates' scores (a candidate
                                       kept for the first time at this ratio is unclipped)
unclip ratio, ``min_size``             the unclipped, mapped polygons of kept candidates
=====================================  ================================================

Memo keys are exact: a threshold is keyed by the bits of its float32 value (the bitmap is
``prob > float32(thresh)``, so two thresholds with the same float32 give the same
candidates) and a ratio by the bits of its float64 value; never by a rounded float. The
metric is memoised per image by the *number* of kept candidates, which determines the kept
set for a given prefix cut because keeping is monotone in ``box_thresh``: a new box_thresh
re-scores only the images whose kept set changed. Under CLEval that re-score is itself
cheap: the metric's pair data (character centres inside, area precision with each GT word)
is memoised per candidate next to its unclipped polygon, so a changed kept set runs only
the matching rules.

The first time a map is read, one pass checks it for NaN and infinities and finds its
*text window*, the bounding box of the pixels above 0.05: a threshold at or above that floor
binarises and traces contours inside the window only (on letterboxed maps, a part of the
map), with the same contours, in the same order, as over the whole map.

Images run in parallel threads inside one ``evaluate`` call (the Numba kernels release
the GIL and OpenCV's own threading is set to one thread), so there is a single level of
parallelism: never call ``evaluate`` from inside another thread pool.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..cache.base import MapStore
from ..io.types import Dataset, ImageWords
from ..metrics import aggregate, image_scorer, official_figure
from ..metrics.base import DatasetScore, ImageScore
from .params import PostProcessParams


def _f32_key(value: float) -> int:
    return int(np.float32(value).view(np.uint32))


def _f64_key(value: float) -> int:
    return int(np.float64(value).view(np.uint64))


def _polygons_to_words(polys: List[np.ndarray]) -> ImageWords:
    return ImageWords([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polys])


class _EngineBase:
    """Shared plumbing: the store, its GT, the metric and the thread pool."""

    def __init__(self, store: MapStore, metric: str = "cleval", jobs: int = 1,
                 gt: Optional[Dataset] = None, metric_engine: str = "fast") -> None:
        if jobs < 1:
            raise ValueError("jobs must be >= 1")
        self.store = store
        self.metric = metric
        self.jobs = int(jobs)
        self.names: List[str] = list(store.names())
        self.gt = gt if gt is not None else store.gt
        self._official = official_figure(metric)
        self._scorer = None
        if self.gt is not None:
            missing = [n for n in self.names if n not in self.gt]
            if missing:
                raise ValueError(f"{len(missing)} cached image(s) have no ground truth, e.g. {missing[0]!r}")
            self._scorer = image_scorer(self.gt, metric, metric_engine)
        self._pool: Optional[ThreadPoolExecutor] = None

    # -- helpers ---------------------------------------------------------------------
    def _map(self, fn, items: Sequence):
        """``[fn(x) for x in items]``, spread over ``jobs`` threads.

        Each thread pulls the next item from a shared counter until none is left, so the
        threads stay busy without one future per item; after an error (or an interrupt
        of the waiting caller) the threads stop at their next item and it is raised here.
        """
        if self.jobs == 1 or len(items) < 2:
            return [fn(x) for x in items]
        if self._pool is None:
            _limit_opencv_threads()
            self._pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="unclip-tuner")
        n = len(items)
        results: list = [None] * n
        counter = itertools.count()
        failed: list = []

        def worker() -> None:
            while not failed:
                i = next(counter)  # atomic under the GIL
                if i >= n:
                    return
                try:
                    results[i] = fn(items[i])
                except BaseException:
                    failed.append(i)
                    raise

        futures = [self._pool.submit(worker) for _ in range(min(self.jobs, n))]
        try:
            for f in futures:
                f.result()
        except BaseException:
            failed.append(-1)  # an interrupt while waiting stops the threads too
            raise
        return results

    def _select(self, images: Optional[Sequence[str]]) -> List[str]:
        if images is None:
            return self.names
        known = set(self.names)
        bad = [n for n in images if n not in known]
        if bad:
            raise ValueError(f"{len(bad)} image(s) are not in the map store, e.g. {bad[0]!r}")
        return list(images)

    def _need_gt(self) -> None:
        if self._scorer is None:
            raise ValueError("this map store has no ground truth: decoding works, scoring does not")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- public API ------------------------------------------------------------------
    def decode(self, params: PostProcessParams, name: str) -> ImageWords:
        raise NotImplementedError

    def decode_all(self, params: PostProcessParams, images: Optional[Sequence[str]] = None) -> Dataset:
        names = self._select(images)
        words = self._map(lambda n: self.decode(params, n), names)
        return Dataset(zip(names, words))

    def score_image(self, params: PostProcessParams, name: str) -> ImageScore:
        self._need_gt()
        return self._scorer(name, self.decode(params, name))

    def evaluate(self, params: PostProcessParams, images: Optional[Sequence[str]] = None) -> DatasetScore:
        """Dataset score of ``params`` over ``images`` (all images by default)."""
        self._need_gt()
        names = self._select(images)
        scores = self._map(self._image_scoring(params), names)
        return aggregate(self.metric, names, scores, self._official)

    def _image_scoring(self, params: PostProcessParams):
        """``name -> ImageScore`` under ``params``, for :meth:`evaluate`."""
        return lambda name: self.score_image(params, name)


def _limit_opencv_threads() -> None:
    import cv2

    cv2.setNumThreads(1)


class ReferenceEngine(_EngineBase):
    """The plain path: the reference decoder and the reference metric, nothing cached."""

    def __init__(self, store: MapStore, metric: str = "cleval", jobs: int = 1,
                 gt: Optional[Dataset] = None) -> None:
        super().__init__(store, metric, jobs, gt, metric_engine="reference")

    def decode(self, params: PostProcessParams, name: str) -> ImageWords:
        from .reference import decode_reference

        rec = self.store.get(name)
        dets = decode_reference(rec.prob, rec.inverse_matrix, params)
        return _polygons_to_words([p for p, _ in dets])


# ------------------------------------------------------------------------------------
# Fast engine
# ------------------------------------------------------------------------------------
@dataclass
class _Candidates:
    """Candidates of one image at one (thresh, dilation, score mode, box/polygon) key.

    ``points[offsets[i]:offsets[i+1]]`` are candidate ``i``'s points in network space
    (approximated polygon as int32, or the four float32 min-area corners in box mode,
    the compact dtypes that hold them exactly);
    ``contour_index[i]`` its position in OpenCV's contour order (for the max_candidates
    prefix cut); ``scores[i]`` its box score.
    """

    points: np.ndarray
    offsets: np.ndarray
    contour_index: np.ndarray
    scores: np.ndarray
    n_contours: int

    def kept(self, box_thresh: float, max_candidates: int) -> np.ndarray:
        """Indices of the candidates the baseline keeps (``box_thresh > score`` drops)."""
        sel = (self.contour_index < max_candidates) & ~(box_thresh > self.scores)
        return np.flatnonzero(sel)


class _Unclipped:
    """The candidates of one image unclipped at one ratio and mapped to image space, each
    computed the first time a ``box_thresh`` keeps it.

    ``state[i]`` is -1 while candidate ``i`` has not been unclipped, then 1 when it
    survives (its int16 polygon is ``coords[start[i]:start[i] + length[i]]``) or 0 when the
    unclip or the size filter drops it. Keeping is monotone in ``box_thresh``, so a search
    only ever unclips candidates that some trial kept.
    """

    def __init__(self, n: int) -> None:
        self.state = np.full(n, -1, dtype=np.int8)
        self.start = np.zeros(n, dtype=np.int64)
        self.length = np.zeros(n, dtype=np.int64)
        self.coords = np.zeros((0, 2), dtype=np.int16)
        self.pairs = None  # the metric's per-candidate pair data, filled when first scored

    def missing(self, idx: np.ndarray) -> np.ndarray:
        """The candidates of ``idx`` not unclipped yet."""
        return idx[self.state[idx] < 0]

    def add(self, todo: np.ndarray, coords: np.ndarray, offsets: np.ndarray,
            valid: np.ndarray) -> None:
        """Record the results of candidates ``todo``, packed as :func:`unclip_all` gives them."""
        base = self.coords.shape[0]
        if coords.shape[0]:
            self.coords = np.concatenate([self.coords, coords])
        self.start[todo] = base + offsets[:-1]
        self.length[todo] = np.diff(offsets)
        self.state[todo] = valid

    def survivors(self, idx: np.ndarray) -> np.ndarray:
        """The candidates of ``idx`` (all computed) that are detections, in order."""
        return idx[self.state[idx] == 1]

    def polygons(self, idx: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Packed float64 polygons of the surviving candidates ``idx``."""
        return gather_polygons(self.coords, self.start[idx], self.length[idx])

    def select(self, idx: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Packed float64 polygons of the surviving candidates of ``idx`` (all computed)."""
        return self.polygons(self.survivors(idx))


class _LRU(OrderedDict):
    """A dict that forgets its least recently used entries beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def lookup(self, key):
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def store(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


@dataclass
class _ImageState:
    lock: threading.Lock
    candidates: _LRU
    unclipped: _LRU
    scores: _LRU
    matrix: Optional[np.ndarray] = None
    window: Optional[np.ndarray] = None  # text_window of the map, set by its first check


class FastEngine(_EngineBase):
    """The search path: memoised stages and Numba kernels (see the module docstring).

    Memory stays bounded: maps are read from the store when a new threshold needs them and
    released afterwards, and each image keeps at most ``memo_thresholds`` candidate sets,
    ``memo_geometries`` unclipped sets and ``memo_scores`` scores (least recently used
    first out), so a long search does not grow without limit.

    Parameters
    ----------
    store : MapStore
        Maps (and GT, unless ``gt`` is given).
    metric : str
        Metric profile for :meth:`evaluate`.
    jobs : int
        Threads over images.
    gt : Dataset, optional
        Ground truth overriding the store's.
    """

    def __init__(self, store: MapStore, metric: str = "cleval", jobs: int = 1,
                 gt: Optional[Dataset] = None, memo_thresholds: int = 32,
                 memo_geometries: int = 96, memo_scores: int = 512) -> None:
        super().__init__(store, metric, jobs, gt, metric_engine="fast")
        self._limits = (memo_thresholds, memo_geometries, memo_scores)
        self._state: Dict[str, _ImageState] = {}
        self.clear()
        self.stats = {"fallback": 0, "unclipped": 0, "candidates_built": 0, "scored": 0,
                      "score_memo_hits": 0}
        self._stats_lock = threading.Lock()
        # the fast CLEval scorer keeps pair data per candidate (see _pair_score)
        self._pair_scorer = self._scorer if hasattr(self._scorer, "score_selected") else None

    def clear(self) -> None:
        """Forget every memoised stage."""
        t, g, s = self._limits
        self._state = {n: _ImageState(threading.Lock(), _LRU(t), _LRU(g), _LRU(s)) for n in self.names}

    def _count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[key] += n

    def _load(self, name: str, st: _ImageState) -> Tuple[np.ndarray, np.ndarray]:
        r = self.store.get(name)
        prob = r.prob
        if prob.dtype != np.float32 or not prob.flags.c_contiguous:
            prob = np.ascontiguousarray(prob, dtype=np.float32)
        if st.window is None:  # first read: NaN/inf check and text window in one pass
            window, finite = text_window(prob, WINDOW_FLOOR)
            if not finite:
                raise ValueError(f"{name}: the probability map contains NaN or infinity")
            st.window = window
        st.matrix = np.ascontiguousarray(r.inverse_matrix, dtype=np.float64)
        return prob, st.matrix

    # -- memo keys of one parameter set --------------------------------------------------
    @staticmethod
    def _plan(p: PostProcessParams) -> "_Plan":
        """The memo keys of ``p``, computed once per call rather than once per image."""
        ratio = p.polygon_unclip_ratio if p.use_polygon else p.box_unclip_ratio
        cand_key = (_f32_key(p.thresh), bool(p.use_dilation), p.score_mode, bool(p.use_polygon),
                    float(p.min_size))
        return _Plan(p, cand_key, float(ratio), (cand_key, _f64_key(ratio)),
                     float(p.box_thresh), int(p.max_candidates))

    # -- stage 1: candidates ------------------------------------------------------------
    def _candidates(self, name: str, st: _ImageState, plan: "_Plan") -> _Candidates:
        cand = st.candidates.lookup(plan.cand_key)
        if cand is None:
            prob, _ = self._load(name, st)
            cand = build_candidates(prob, plan.params, st.window)
            st.candidates.store(plan.cand_key, cand)
            self._count("candidates_built")
        return cand

    # -- stage 2: unclip + size filter + mapping ----------------------------------------------
    def _unclipped(self, name: str, st: _ImageState, plan: "_Plan",
                   cand: _Candidates, idx: np.ndarray) -> _Unclipped:
        """The unclip memo at the plan's ratio, completed for the kept candidates ``idx``."""
        unc = st.unclipped.lookup(plan.geo_key)
        if unc is None:
            unc = _Unclipped(len(cand.scores))
            st.unclipped.store(plan.geo_key, unc)
        todo = unc.missing(idx)
        if len(todo):
            if st.matrix is None:
                self._load(name, st)
            coords, offs, valid, n_fallback = unclip_all(cand, todo, plan.ratio, st.matrix,
                                                          plan.params)
            unc.add(todo, coords, offs, valid)
            self._count("unclipped", len(todo))
            if n_fallback:
                self._count("fallback", n_fallback)
        return unc

    # -- public API ----------------------------------------------------------------------
    def decode(self, params: PostProcessParams, name: str) -> ImageWords:
        plan = self._plan(params)
        st = self._state[name]
        with st.lock:
            cand = self._candidates(name, st, plan)
            idx = cand.kept(plan.box_thresh, plan.max_candidates)
            coords, offs = self._unclipped(name, st, plan, cand, idx).select(idx)
        return _polygons_to_words([coords[offs[i]:offs[i + 1]] for i in range(len(offs) - 1)])

    def score_image(self, params: PostProcessParams, name: str) -> ImageScore:
        self._need_gt()
        return self._score(self._plan(params), name)

    def _image_scoring(self, params: PostProcessParams):
        plan = self._plan(params)  # the memo keys once for all images
        return lambda name: self._score(plan, name)

    def _score(self, plan: "_Plan", name: str) -> ImageScore:
        """One image's score under ``plan``: from the score memo when its kept set was
        scored before, else through the candidate and unclip memos."""
        st = self._state[name]
        with st.lock:
            cand = self._candidates(name, st, plan)
            idx = cand.kept(plan.box_thresh, plan.max_candidates)
            skey = (plan.geo_key, min(plan.max_candidates, cand.n_contours), len(idx))
            hit = st.scores.lookup(skey)
            if hit is not None:
                self._count("score_memo_hits")
                return hit
            unc = self._unclipped(name, st, plan, cand, idx)
            if self._pair_scorer is not None:
                score = self._pair_score(name, cand, unc, unc.survivors(idx))
            else:
                coords, offs = unc.select(idx)
                polys = [coords[offs[i]:offs[i + 1]] for i in range(len(offs) - 1)]
                score = self._scorer(name, _polygons_to_words(polys))
            st.scores.store(skey, score)
            self._count("scored")
            return score

    def _pair_score(self, name: str, cand: _Candidates, unc: _Unclipped,
                    dets: np.ndarray) -> ImageScore:
        """CLEval of the detections ``dets`` through the unclip memo's pair table.

        The pair data of a detection (its character centres inside, its area precision
        with each GT word) depends on its polygon alone, so it is computed the first time
        the detection is scored at this ratio; a later kept set at the same ratio is
        scored by the matching rules only.
        """
        scorer = self._pair_scorer
        if unc.pairs is None:
            unc.pairs = DetectionPairs(len(cand.scores))
        dets = dets[:scorer.max_polygons]
        new = dets[~unc.pairs.known[dets]]
        if len(new):
            coords, offs = unc.polygons(new)
            unc.pairs.add(new, scorer.detection_pairs(name, coords, offs))
        return scorer.score_selected(name, unc.pairs, dets, unc.coords, unc.start, unc.length)


class _Plan(NamedTuple):
    """The memo keys of one parameter set, computed once per call."""

    params: PostProcessParams
    cand_key: tuple      # what the candidates depend on (threshold bits, modes, min_size)
    ratio: float         # the unclip ratio of the mode in use
    geo_key: tuple       # cand_key and the ratio's bits: the unclip memo
    box_thresh: float
    max_candidates: int


from ..metrics.cleval import DetectionPairs  # noqa: E402
from .fast import (WINDOW_FLOOR, build_candidates, gather_polygons,  # noqa: E402  (kernels)
                   text_window, unclip_all)
