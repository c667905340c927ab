"""Paste lines: the tuned parameters in the form the user's own code version reads.

A Hydra override for a key the user's code does not have makes the run fail, so each code
version gets exactly its own keys (REFERENCE section 5):

``seed-original``
    no ratio key: ``thresh``, ``box_thresh``, ``max_candidates``, ``use_polygon``; a tuned
    ratio needs a one-line code change, which is spelled out.
``seed-head``
    one ``unclip_ratio`` driving both modes.
``karmakaryx``
    ``box_unclip_ratio`` and ``polygon_unclip_ratio``.
``paddleocr``
    ``tools/infer/predict_det.py`` flags and a ``PostProcess:`` block for a YAML config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from ..postprocess.params import PRESETS, PostProcessParams

__all__ = ["TARGETS", "Export", "export_lines", "format_number"]

TARGETS = ("seed-original", "seed-head", "karmakaryx", "paddleocr")
_PREFIX = "models.head.postprocess."
_DECODER_FILE = "ocr/models/head/db_postprocess.py"


def format_number(value) -> str:
    """Shortest text of a number (``0.22``, ``1.85``, ``500``); booleans in lower case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


@dataclass
class Export:
    """What to paste for one code version.

    Attributes
    ----------
    target : str
    lines : list of str
        The text to paste (one Hydra override line; or flags then a YAML block).
    notes : list of str
        Warnings and instructions (a code change, a ratio the version cannot carry...).
    """

    target: str
    lines: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def text(self) -> str:
        out = list(self.lines)
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)


def _hydra(params: PostProcessParams, extra: List[str]) -> str:
    items = [f"{_PREFIX}thresh={format_number(params.thresh)}",
             f"{_PREFIX}box_thresh={format_number(params.box_thresh)}",
             f"{_PREFIX}max_candidates={params.max_candidates}",
             f"{_PREFIX}use_polygon={format_number(params.use_polygon)}"]
    return " ".join(items + extra)


def _decoder_notes(params: PostProcessParams) -> List[str]:
    notes = []
    if params.use_dilation:
        notes.append("use_dilation=true is a PaddleOCR option: the baseline's decoder has no "
                     "dilation (add cv2.dilate of the bitmap with a 2x2 kernel before "
                     "findContours, or export for paddleocr)")
    if params.score_mode != "fast":
        notes.append(f"score_mode={params.score_mode} is a PaddleOCR option: the baseline's "
                     f"decoder scores the approximated polygon or box only")
    if params.min_size != 3:
        notes.append(f"min_size={format_number(params.min_size)}: the baseline hard-codes "
                     f"min_size = 3 in {_DECODER_FILE}")
    return notes


def export_lines(params: PostProcessParams, target: str) -> Export:
    """The paste lines and notes for ``target`` (one of :data:`TARGETS`)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    ex = Export(target)
    mode = "polygon" if params.use_polygon else "box"
    ratio = params.unclip_ratio
    if target == "karmakaryx":
        ex.lines.append(_hydra(params, [
            f"{_PREFIX}box_unclip_ratio={format_number(params.box_unclip_ratio)}",
            f"{_PREFIX}polygon_unclip_ratio={format_number(params.polygon_unclip_ratio)}"]))
        ex.notes += _decoder_notes(params)
    elif target == "seed-head":
        ex.lines.append(_hydra(params, [f"{_PREFIX}unclip_ratio={format_number(ratio)}"]))
        if params.box_unclip_ratio != params.polygon_unclip_ratio:
            other = "box" if params.use_polygon else "polygon"
            other_ratio = params.polygon_unclip_ratio if other == "polygon" else params.box_unclip_ratio
            ex.notes.append(
                f"this code version has one unclip_ratio for box AND polygon mode: the line "
                f"carries the {mode} ratio {format_number(ratio)}; the {other} ratio "
                f"{format_number(other_ratio)} cannot be set alongside it (switching use_polygon "
                f"would run {other} mode with {format_number(ratio)})")
        ex.notes += _decoder_notes(params)
    elif target == "seed-original":
        ex.lines.append(_hydra(params, []))
        fixed = PRESETS["seed-original"].defaults
        fixed_ratio = fixed.polygon_unclip_ratio if params.use_polygon else fixed.box_unclip_ratio
        if ratio != fixed_ratio:
            if params.use_polygon:
                where = "polygons_from_bitmap calls self.unclip(points, unclip_ratio=2.0)"
                change = f"change 2.0 to {format_number(ratio)}"
            else:
                where = "boxes_from_bitmap calls self.unclip(points) (unclip's default ratio 1.5)"
                change = f"make it self.unclip(points, unclip_ratio={format_number(ratio)})"
            ex.notes.append(
                f"the original baseline has no unclip ratio key: in {_DECODER_FILE}, {where}: "
                f"{change} (one line; or move to a code version with a ratio key, "
                f"--target seed-head or karmakaryx)")
        else:
            ex.notes.append(f"the tuned {mode} unclip ratio is the code's fixed "
                            f"{format_number(fixed_ratio)}: no code change needed")
        ex.notes += _decoder_notes(params)
    else:  # paddleocr
        box_type = "poly" if params.use_polygon else "quad"
        ex.lines.append(
            f"--det_db_thresh {format_number(params.thresh)} "
            f"--det_db_box_thresh {format_number(params.box_thresh)} "
            f"--det_db_unclip_ratio {format_number(ratio)} "
            f"--use_dilation {'True' if params.use_dilation else 'False'} "
            f"--det_db_score_mode {params.score_mode} "
            f"--det_box_type {box_type}")
        ex.lines += [
            "PostProcess:",
            "  name: DBPostProcess",
            f"  thresh: {format_number(params.thresh)}",
            f"  box_thresh: {format_number(params.box_thresh)}",
            f"  max_candidates: {params.max_candidates}",
            f"  unclip_ratio: {format_number(ratio)}",
            f"  use_dilation: {format_number(params.use_dilation)}",
            f"  score_mode: {params.score_mode}",
            f"  box_type: {box_type}",
        ]
        ex.notes.append(f"PaddleOCR's command line has no max_candidates flag (it uses 1000): "
                        f"set max_candidates: {params.max_candidates} in the YAML block")
        ex.notes.append("PaddleOCR's decoder clips boxes to the image and filters small boxes "
                        "differently from the baseline's: expect small differences in scores")
    return ex
