"""Per-word outcomes of the competition CLEval and overlay pictures of them.

:func:`word_outcomes` tells, for one image, what the competition's CLEval made of every
ground-truth word (matched, split over several detections, merged with others into one
detection, missed, don't-care) and of every detection (matched, part of a split, merging
several words, false positive, inside a don't-care region, ignored). The metric's own
:class:`~unclip_tuner.metrics.base.ImageScore` carries the counts of splits and merges but
not which words they concern, nor how many words were missed: the matching is rebuilt
here from the metric's own matching (:func:`unclip_tuner.metrics.cleval_reference.
match_image`), so the counts it derives (``tp``, ``det_chars``, false-positive characters,
splits, merges, don't-care detections) are the metric's own; the tests check them against
both metric paths on random pages.

:func:`draw_overlay` draws the outcome on the image (or on the probability map): ground
truth in green (missed words filled), detections in red (false positives filled),
don't-care words in grey.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..io.types import ImageWords
from ..metrics.cleval_reference import MAX_POLYGONS, aspect_ratio, fp_char_count, match_image

__all__ = ["WordOutcomes", "word_outcomes", "draw_overlay", "GT_STATES", "DET_STATES"]

#: What a ground-truth word can end as.
GT_STATES = ("matched", "split", "merged", "missed", "dont_care", "invalid")
#: What a detection can end as.
DET_STATES = ("matched", "split", "merged", "false_positive", "dont_care", "ignored")



@dataclass
class WordOutcomes:
    """The fate of every word of one image under the competition CLEval.

    Attributes
    ----------
    gt : list of str
        One state of :data:`GT_STATES` per ground-truth word, in file order. ``split``: the
        word was matched by several detections; ``merged``: its detection also covers other
        words; ``missed``: a cared word without any matched detection; ``invalid``: fewer
        than 4 points (takes no part).
    det : list of str
        One state of :data:`DET_STATES` per detection, in output order. ``split``: one of
        several detections of one word; ``merged``: it covers several words;
        ``false_positive``: a kept detection without a match; ``ignored``: beyond the first
        500 or fewer than 4 points.
    counts : dict
        ``tp``, ``det_chars``, ``fp_chars``, ``num_splitted`` (split words),
        ``num_merged`` (merging detections), ``n_det_dont_care``, ``gt_cared``,
        ``gt_matched`` (cared words with at least one matched detection), ``gt_missed``,
        ``det_kept``, ``det_matched``, ``det_false_positive``.
    """

    gt: List[str] = field(default_factory=list)
    det: List[str] = field(default_factory=list)
    counts: Dict[str, int] = field(default_factory=dict)


def word_outcomes(gt: ImageWords, det: ImageWords, max_polygons: int = MAX_POLYGONS,
                  round_gt: bool = True) -> WordOutcomes:
    """Per-word outcome of one image under the competition CLEval (detection, POLY boxes).

    Parameters
    ----------
    gt : ImageWords
        Ground truth (don't-care flags included).
    det : ImageWords
        Detections in output order.
    max_polygons : int
        The metric's cut on detections per image.
    round_gt : bool
        Round GT points half to even first (the baseline's data loader).

    Returns
    -------
    WordOutcomes
    """
    m = match_image(gt, det, max_polygons, round_gt)
    matched = m.matched
    gt_valid, det_valid = m.gt_valid, m.det_valid
    dets_per_gt = matched.sum(axis=1)
    gts_per_det = matched.sum(axis=0)

    gt_state = ["invalid"] * len(gt)
    for g, i in enumerate(m.gt_index):
        if g in m.gt_dont_care:
            gt_state[i] = "dont_care"
        elif dets_per_gt[g] == 0:
            gt_state[i] = "missed"
        elif dets_per_gt[g] > 1:
            gt_state[i] = "split"
        else:
            d = int(np.flatnonzero(matched[g])[0])
            gt_state[i] = "merged" if gts_per_det[d] > 1 else "matched"
    det_state = ["ignored"] * len(det)
    fp_chars = 0
    for d, i in enumerate(m.det_index):
        if d in m.det_dont_care:
            det_state[i] = "dont_care"
        elif gts_per_det[d] == 0:
            det_state[i] = "false_positive"
            fp_chars += fp_char_count(aspect_ratio(m.det_raw[d]))
        elif gts_per_det[d] > 1:
            det_state[i] = "merged"
        else:
            g = int(np.flatnonzero(matched[:, d])[0])
            det_state[i] = "split" if dets_per_gt[g] > 1 else "matched"

    counts = {
        "tp": int(sum(int(f.sum()) for f in m.found)),
        "det_chars": int(m.centres_in[matched].sum()),
        "fp_chars": fp_chars,
        "num_splitted": int(sum(1 for g in gt_valid if dets_per_gt[g] > 1)),
        "num_merged": int(sum(1 for d in det_valid if gts_per_det[d] > 1)),
        "n_det_dont_care": len(m.det_dont_care),
        "gt_cared": len(gt_valid),
        "gt_matched": int(sum(1 for g in gt_valid if dets_per_gt[g] > 0)),
        "gt_missed": int(sum(1 for g in gt_valid if dets_per_gt[g] == 0)),
        "det_kept": len(m.det_index),
        "det_matched": int(sum(1 for d in det_valid if gts_per_det[d] > 0)),
        "det_false_positive": int(sum(1 for d in det_valid if gts_per_det[d] == 0)),
    }
    return WordOutcomes(gt_state, det_state, counts)


# ------------------------------------------------------------------------------------
# Drawing
# ------------------------------------------------------------------------------------
_GREEN = (40, 200, 40)
_RED = (40, 40, 230)
_GREY = (160, 160, 160)
_ORANGE = (0, 150, 255)
_MAGENTA = (220, 60, 220)


def _to_pixels(poly: np.ndarray, to_canvas: Optional[np.ndarray]) -> np.ndarray:
    p = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    if to_canvas is not None and len(p):
        q = np.c_[p, np.ones(len(p))] @ to_canvas.T
        p = q[:, :2] / q[:, 2:3]
    return np.round(p).astype(np.int32).reshape(-1, 1, 2)


def draw_overlay(background: np.ndarray, gt: ImageWords, det: ImageWords,
                 outcomes: Optional[WordOutcomes] = None, to_canvas: Optional[np.ndarray] = None,
                 title: Optional[str] = None, lines: Sequence[str] = ()) -> np.ndarray:
    """Draw ground truth and detections on a picture.

    Parameters
    ----------
    background : ndarray
        ``(H, W, 3)`` uint8 BGR image, ``(H, W)`` uint8 grey image, or ``(H, W)`` float
        probability map in ``[0, 1]`` (drawn in grey).
    gt, det : ImageWords
        Polygons in image coordinates.
    outcomes : WordOutcomes, optional
        Word states (:func:`word_outcomes`): missed GT words and false-positive detections
        are filled, split detections drawn in orange, merging ones in magenta.
    to_canvas : ndarray, shape (3, 3), optional
        Matrix from image coordinates to the background's pixels (the inverse of a map's
        inverse matrix when drawing on a probability map).
    title : str, optional
        First line of the caption strip above the picture.
    lines : sequence of str
        Further caption lines.

    Returns
    -------
    ndarray
        ``(H + caption, W, 3)`` uint8 BGR picture.
    """
    import cv2

    bg = np.asarray(background)
    if bg.dtype != np.uint8:
        bg = np.clip(np.round(np.asarray(bg, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
    if bg.ndim == 2:
        bg = cv2.cvtColor(bg, cv2.COLOR_GRAY2BGR)
    canvas = np.ascontiguousarray(bg.copy())
    fill = canvas.copy()
    thick = max(1, int(round(max(canvas.shape[:2]) / 900)))

    gt_states = outcomes.gt if outcomes is not None else ["matched"] * len(gt)
    det_states = outcomes.det if outcomes is not None else ["matched"] * len(det)
    gt_items = [(_to_pixels(p, to_canvas), s) for p, s in zip(gt.polygons, gt_states) if len(p) >= 2]
    det_items = [(_to_pixels(p, to_canvas), s) for p, s in zip(det.polygons, det_states)
                 if len(p) >= 2 and s != "ignored"]
    # translucent fills first (missed words, false positives), then crisp outlines on top
    for pts, state in gt_items:
        if state == "missed":
            cv2.fillPoly(fill, [pts], _GREEN)
    for pts, state in det_items:
        if state == "false_positive":
            cv2.fillPoly(fill, [pts], _RED)
    canvas = cv2.addWeighted(fill, 0.35, canvas, 0.65, 0.0)
    for pts, state in gt_items:
        colour = _GREY if state == "dont_care" else _GREEN
        cv2.polylines(canvas, [pts], True, colour, thick + (1 if state == "missed" else 0),
                      lineType=cv2.LINE_AA)
    for pts, state in det_items:
        colour = {"split": _ORANGE, "merged": _MAGENTA, "dont_care": _GREY}.get(state, _RED)
        cv2.polylines(canvas, [pts], True, colour, thick, lineType=cv2.LINE_AA)

    text = ([title] if title else []) + list(lines)
    text.append("GT green (missed: filled), detections red (false positive: filled), "
                "split orange, merge magenta, don't-care grey")
    scale = max(0.4, min(1.0, canvas.shape[1] / 1600))
    line_h = int(26 * scale) + 4
    strip = np.full((line_h * len(text) + 6, canvas.shape[1], 3), 255, dtype=np.uint8)
    for k, t in enumerate(text):
        cv2.putText(strip, t, (6, line_h * (k + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.6,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([strip, canvas])
