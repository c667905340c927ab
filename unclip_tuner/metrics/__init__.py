"""H-Mean evaluators ("metric profiles").

========================  ==============================================================
``cleval`` (default)      the competition's CLEval exactly as the baseline computes it:
                          detection only, POLY boxes, mean of per-image R/P/H
``iou``                   the ICDAR 2015 IoU protocol (IoU > 0.5, one-to-one, don't-care)
``cleval-upstream``       the rules of the PyPI ``cleval`` 0.1.1 package (QUAD boxes,
                          counts pooled over images)
========================  ==============================================================

Use :func:`evaluate` for a whole data set. Nothing here imports torch or optuna.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional

from ..io.types import Dataset, ImageWords
from .base import DatasetScore, ImageScore, aggregate, harmonic_mean

METRICS = ("cleval", "iou", "cleval-upstream")
ENGINES = ("fast", "reference")

__all__ = ["METRICS", "ENGINES", "DatasetScore", "ImageScore", "aggregate", "evaluate",
           "harmonic_mean", "image_scorer"]


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")


def official_figure(metric: str) -> str:
    """``"macro"`` (mean of per-image scores) or ``"micro"`` (pooled counts)."""
    _check_metric(metric)
    if metric == "cleval":
        return "macro"
    if metric == "iou":
        from .iou import OFFICIAL
    else:
        from .cleval_upstream import OFFICIAL
    return OFFICIAL


def image_scorer(gt: Dataset, metric: str = "cleval",
                 engine: str = "fast") -> Callable[[str, ImageWords], ImageScore]:
    """A function ``(gt image name, detections) -> ImageScore`` for one metric profile.

    For ``cleval`` with the fast engine, the GT-side work (aspect ratios, pseudo character
    centres, bounding boxes) is prepared once here and reused for every call, which is what
    makes repeated evaluation during a search cheap.
    """
    _check_metric(metric)
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    if metric == "cleval":
        if engine == "fast":
            from .cleval import CLEvalScorer

            return CLEvalScorer(gt)  # callable; also scores packed arrays and pair tables
        from .cleval_reference import cleval_image

        return lambda name, det: cleval_image(gt[name], det)
    if metric == "iou":
        from .iou import evaluate_image
    else:
        from .cleval_upstream import evaluate_image
    return lambda name, det: evaluate_image(gt[name], det)


def evaluate(gt: Dataset, pred: Dataset, metric: str = "cleval", engine: str = "fast",
             jobs: int = 1, progress: Optional[Callable] = None) -> DatasetScore:
    """Score predictions against ground truth.

    Parameters
    ----------
    gt, pred : Dataset
        Ground truth and predictions. Predictions are matched to GT images by name, then by
        file stem (:func:`unclip_tuner.io.align`); a predicted image that GT lacks is an
        error. A GT image without predictions is scored as an image with no detections
        (0 under CLEval, as in the competition).
    metric : str
        One of :data:`METRICS`.
    engine : {"fast", "reference"}
        The Numba engine or the plain reference implementation (same numbers).
    jobs : int
        Threads over images (the kernels release the GIL).
    progress : callable, optional
        Wraps the image iterator (e.g. ``tqdm``).

    Returns
    -------
    DatasetScore
    """
    from ..io import align

    names, pairs = align(gt, pred)
    pred_of = {g: p for g, p in pairs}
    score = image_scorer(gt, metric, engine)
    empty = ImageWords()

    def one(name: str) -> ImageScore:
        return score(name, pred[pred_of[name]] if name in pred_of else empty)

    it = names if progress is None else progress(names)
    if jobs > 1:
        with ThreadPoolExecutor(jobs) as pool:
            scores: List[ImageScore] = list(pool.map(one, it))
    else:
        scores = [one(n) for n in it]
    return aggregate(metric, names, scores, official_figure(metric))
