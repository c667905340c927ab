"""Seeded synthetic CLEval cases: receipt-like pages and edge cases.

Run from the repository root::

    python tests/data/cleval/make_cases.py      # writes tests/data/cleval/synthetic_cases.json

The reference scores next to it (``synthetic_reference.json``) are produced by running the
competition baseline's own ``CLEvalMetric`` in its pinned environment on that file; the
tests compare both of our implementations with them. The page generator is also imported
by ``tests/test_metrics_cleval.py`` to build randomized pages.

A case is ``{"name", "gt": [polygon, ...], "dont_care": [bool, ...] | null,
"det": [polygon, ...] | null}`` with polygons as lists of ``[x, y]``; ``det: null`` means
the image has no prediction entry at all.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

Poly = List[List[float]]

#: Cumulative probabilities of what happens to a word: matched, split, merged with the
#: next words, missed, shifted by half a height, loose (the rest).
HARSH = (0.68, 0.76, 0.83, 0.90, 0.95)
#: Closer to a trained detector on receipts.
REALISTIC = (0.92, 0.95, 0.97, 0.985, 0.995)

__all__ = ["receipt_page", "edge_case_pages", "unclip_like", "all_cases", "simulate_detections",
           "HARSH", "REALISTIC"]


def _rect(x: float, y: float, w: float, h: float) -> np.ndarray:
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64)


def _rotate(p: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    centre = p.mean(axis=0)
    return (p - centre) @ np.array([[c, s], [-s, c]]) + centre


def _offset(p: np.ndarray, delta: float) -> Optional[np.ndarray]:
    """Round-joined offset of an integer polygon (pyclipper), first path, or None."""
    import pyclipper

    pco = pyclipper.PyclipperOffset()
    pco.ArcTolerance = 0.25
    pco.AddPath([(int(x), int(y)) for x, y in p], pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    out = pco.Execute(delta)
    if not out:
        return None
    return np.array(out[0], dtype=np.float64)


def unclip_like(p: np.ndarray, rng: np.random.Generator,
                ratio: float = 1.5) -> Optional[np.ndarray]:
    """A DB-style detection of word polygon ``p``: shrink, jitter, round-joined unclip.

    The result has round corners (typically 20-40 vertices) and integer coordinates, like
    the baseline post-processor's polygon-mode output.
    """
    p = np.asarray(p, dtype=np.float64)
    x = p[:, 0]
    y = p[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    perim = np.sum(np.hypot(np.diff(np.r_[x, x[:1]]), np.diff(np.r_[y, y[:1]])))
    if perim <= 0 or area <= 0:
        return None
    shrink = area * (1 - 0.4 ** 2) / perim
    kernel = _offset(np.round(p), -shrink * rng.uniform(0.8, 1.1))
    if kernel is None or len(kernel) < 3:
        return None
    # a contour traced from a probability map is not a clean rectangle: densify the
    # kernel's edges and jitter the points by a pixel (more round joins after the unclip)
    dense = []
    for a, b in zip(kernel, np.roll(kernel, -1, axis=0)):
        steps = max(1, int(np.hypot(*(b - a)) // rng.uniform(6, 14)))
        for t in range(steps):
            dense.append(a + (b - a) * t / steps)
    kernel = np.round(np.array(dense)) + rng.integers(-1, 2, size=(len(dense), 2))
    kx, ky = kernel[:, 0], kernel[:, 1]
    k_area = 0.5 * abs(np.dot(kx, np.roll(ky, -1)) - np.dot(ky, np.roll(kx, -1)))
    k_perim = np.sum(np.hypot(np.diff(np.r_[kx, kx[:1]]), np.diff(np.r_[ky, ky[:1]])))
    if k_perim <= 0 or k_area <= 0:
        return None
    return _offset(kernel, k_area * ratio / k_perim)


def _as_list(p: np.ndarray, as_int: bool = True) -> Poly:
    if as_int:
        return [[int(v) for v in row] for row in np.asarray(p)]
    return [[float(v) for v in row] for row in np.asarray(p)]


def receipt_page(rng: np.random.Generator, n_words: int, *, width: int = 900,
                 rotate: float = 0.0, dont_care_rate: float = 0.0,
                 vertical_rate: float = 0.02, half_coords: bool = False,
                 fp_rate: float = 0.06, quads: bool = False, mix=HARSH) -> Dict:
    """A receipt-like page: rows of words, DB-like detections with misses, splits, merges.

    Parameters
    ----------
    rng : numpy.random.Generator
    n_words : int
        Approximate number of GT words.
    width : int
        Page width in pixels (rows are filled left to right).
    rotate : float
        Standard deviation of a per-word rotation (radians).
    dont_care_rate : float
        Share of GT words flagged don't-care.
    vertical_rate : float
        Share of tall (vertical) words.
    half_coords : bool
        Add .5 offsets to some GT coordinates (the metric rounds GT half to even).
    fp_rate : float
        False positives per GT word.
    quads : bool
        Detections as jittered quads instead of round-cornered polygons.
    mix : tuple of float
        Word outcome probabilities, see :func:`simulate_detections`.
    """
    gt: List[Poly] = []
    words: List[np.ndarray] = []
    y = float(rng.integers(5, 40))
    while len(words) < n_words:
        h = float(rng.integers(12, 34))
        x = float(rng.integers(5, 60))
        while x < width - 40 and len(words) < n_words:
            if rng.random() < vertical_rate:
                w, hh = float(rng.integers(10, 26)), float(rng.integers(40, 140))
            else:
                w, hh = float(rng.integers(int(h * 0.6), int(h * 9))), h
            if rng.random() < 0.05:
                w = hh = float(rng.integers(12, 30))                    # squares
            if rng.random() < 0.05:
                w = hh * int(rng.integers(2, 6))                        # exact integer ratios
            p = _rect(x, y, w, hh)
            if rotate:
                p = _rotate(p, rng.normal() * rotate)
            words.append(p)
            x += w + float(rng.integers(4, 30))
        y += h + float(rng.integers(3, 16))
    flags = [bool(rng.random() < dont_care_rate) for _ in words]
    for p in words:
        q = np.round(p)
        if half_coords:
            mask = rng.random(q.shape) < 0.3
            q = q + 0.5 * mask * rng.choice([-1, 1], size=q.shape)
            gt.append(_as_list(q, as_int=False))
        else:
            gt.append(_as_list(q))

    det = simulate_detections(words, rng, quads=quads, fp_rate=fp_rate, width=width, mix=mix)
    return {"gt": gt, "dont_care": flags if dont_care_rate > 0 else None, "det": det}


def simulate_detections(words: List[np.ndarray], rng: np.random.Generator, *,
                        quads: bool = False, fp_rate: float = 0.06,
                        width: Optional[float] = None, mix=HARSH) -> List[Poly]:
    """DB-like detections of word polygons: matches, splits, merges, misses, shifted and
    loose boxes, then false positives of many shapes; returned in a shuffled order.

    Parameters
    ----------
    words : list of ndarray
        GT word polygons (4-point words are split along their first and third edges).
    rng : numpy.random.Generator
    quads : bool
        Jittered quads instead of round-cornered unclip-like polygons.
    fp_rate : float
        False positives per word.
    width : float, optional
        Horizontal extent for false positives (default: the words' extent).
    mix : tuple of float
        Cumulative probabilities of the word outcomes (:data:`HARSH`, :data:`REALISTIC`).
    """
    p_match, p_split, p_merge, p_miss, p_shift = mix

    def detect(p: np.ndarray) -> Optional[np.ndarray]:
        if quads:
            return np.round(p + rng.integers(-3, 4, size=p.shape))
        return unclip_like(p, rng, ratio=float(rng.uniform(1.3, 2.2)))

    det: List[Poly] = []
    i = 0
    while i < len(words):
        p = words[i]
        r = rng.random()
        if r < p_match:
            d = detect(p)
            if d is not None:
                det.append(_as_list(d))
        elif r < p_split and len(p) == 4:                  # split in 2 or 3 pieces
            k = int(rng.integers(2, 4))
            a, b, c_, d_ = p
            for j in range(k):
                t0, t1 = j / k, (j + 1) / k - 0.02
                piece = np.array([a + (b - a) * t0, a + (b - a) * t1, d_ + (c_ - d_) * t1,
                                  d_ + (c_ - d_) * t0])
                dd = detect(piece)
                if dd is not None:
                    det.append(_as_list(dd))
        elif r < p_merge and i + 1 < len(words):           # merge with the next word(s)
            k = int(rng.integers(2, 4))
            group = words[i:i + k]
            allp = np.vstack(group)
            x0, y0 = allp.min(axis=0)
            x1, y1 = allp.max(axis=0)
            dd = detect(_rect(x0, y0, x1 - x0, y1 - y0))
            if dd is not None:
                det.append(_as_list(dd))
            i += len(group)
            continue
        elif r < p_miss:                                   # missed
            pass
        elif r < p_shift:                                  # shifted by about half a height
            hh = float(np.ptp(p[:, 1]))
            dd = detect(p + np.array([rng.uniform(-0.3, 0.3) * hh, rng.uniform(0.3, 0.7) * hh]))
            if dd is not None:
                det.append(_as_list(dd))
        else:                                              # loose box (low area precision)
            c = p.mean(axis=0)
            dd = detect((p - c) * rng.uniform(1.8, 3.0) + c)
            if dd is not None:
                det.append(_as_list(dd))
        i += 1
    n_fp = rng.poisson(fp_rate * len(words))
    ymax = max(float(np.max(w[:, 1])) for w in words) if words else 500.0
    if width is None:
        width = max(float(np.max(w[:, 0])) for w in words) if words else 500.0
    for _ in range(n_fp):
        kind = rng.random()
        x, yy = rng.uniform(-30, width + 30), rng.uniform(-30, ymax + 30)
        if kind < 0.3:
            p = _rect(x, yy, rng.uniform(30, 200), rng.uniform(10, 30))      # wide
        elif kind < 0.5:
            p = _rect(x, yy, rng.uniform(10, 30), rng.uniform(30, 200))      # tall
        elif kind < 0.65:
            s = rng.uniform(8, 40)
            p = _rect(x, yy, s, s)                                           # square
        else:
            p = _rotate(_rect(x, yy, rng.uniform(20, 150), rng.uniform(10, 40)),
                        rng.uniform(-np.pi, np.pi))
        dd = detect(np.round(p))
        if dd is not None:
            det.append(_as_list(dd))
    order = rng.permutation(len(det))
    det = [det[k] for k in order]
    return det


def edge_case_pages(rng: np.random.Generator) -> List[Dict]:
    """Small hand-made pages for the rules' corners."""
    pages: List[Dict] = []
    R = lambda *a: _as_list(_rect(*a))  # noqa: E731

    # no detections / no GT / both empty / missing prediction entry
    gt = [R(10, 10, 80, 20), R(10, 40, 60, 20)]
    pages.append({"name": "no_det", "gt": gt, "dont_care": None, "det": []})
    pages.append({"name": "no_gt", "gt": [], "dont_care": None, "det": [R(10, 10, 80, 20)]})
    pages.append({"name": "both_empty", "gt": [], "dont_care": None, "det": []})
    pages.append({"name": "missing_prediction", "gt": gt, "dont_care": None, "det": None})

    # exact matches of boxes of many aspect ratios (integer ratios hit the .5 rounding)
    boxes = []
    for k, (w, h) in enumerate([(10, 10), (20, 10), (30, 10), (40, 10), (50, 10), (25, 10),
                                (10, 30), (10, 50), (7, 21), (100, 20), (20, 100), (1, 1),
                                (3, 2), (15, 10), (35, 10), (45, 10)]):
        boxes.append(R(10 + 120 * (k % 6), 10 + 120 * (k // 6), w, h))
    pages.append({"name": "aspect_exact", "gt": boxes, "dont_care": None,
                  "det": [list(reversed(b)) for b in boxes]})
    # false positives of many aspect ratios (the asymmetric rule), in both vertex orders
    fps = []
    for k, (w, h) in enumerate([(100, 20), (20, 100), (30, 30), (50, 10), (10, 50), (7, 3),
                                (200, 9), (9, 200), (40, 13), (13, 40)]):
        b = R(1000 + 250 * (k % 4), 1000 + 250 * (k // 4), w, h)
        fps.append(b)
        fps.append(list(reversed(R(3000 + 250 * (k % 4), 1000 + 250 * (k // 4), w, h))))
        fps.append(b[2:] + b[:2])
    pages.append({"name": "fp_aspects", "gt": [R(10, 10, 50, 20)], "dont_care": None,
                  "det": [R(10, 10, 50, 20)] + fps})
    # rotated false positives (ties between perpendicular edges decided by hull order)
    rot = []
    for k in range(24):
        p = np.round(_rotate(_rect(500 + 200 * (k % 6), 500 + 200 * (k // 6), 60 + 10 * k, 20),
                             k * np.pi / 12))
        rot.append(_as_list(np.roll(p, k % 4, axis=0)))
    pages.append({"name": "fp_rotated", "gt": [R(10, 10, 50, 20)], "dont_care": None,
                  "det": rot})

    # degenerate polygons, GT and detections
    degenerate = [
        [[10, 10], [50, 10]],                                   # 2 points (skipped)
        [[10, 10], [50, 10], [50, 30]],                         # 3 points (skipped)
        [[60, 60], [60, 60], [60, 60], [60, 60]],               # one repeated point
        [[100, 100], [150, 100], [200, 100], [250, 100]],       # collinear
        [[300, 100], [340, 140], [340, 100], [300, 140]],       # symmetric bow-tie
        [[400, 100], [460, 160], [460, 100], [400, 130]],       # asymmetric bow-tie
        [[500, 100], [560, 100], [560, 100], [500, 100]],       # zero height
        [[600, 100], [640, 100], [640, 130], [620, 150], [600, 130]],   # 5 points
        [[700, 100], [760, 100], [760, 120], [740, 125], [720, 125], [700, 120], [690, 110]],
    ]
    pages.append({"name": "degenerate_gt", "gt": degenerate, "dont_care": None,
                  "det": [R(95, 95, 160, 10), R(295, 95, 50, 50), R(395, 95, 70, 70),
                          R(595, 95, 50, 60), R(695, 95, 70, 35), R(55, 55, 10, 10),
                          R(495, 95, 70, 10)]})
    pages.append({"name": "degenerate_det", "gt": [R(95, 95, 160, 10), R(295, 95, 50, 50),
                                                   R(395, 95, 70, 70), R(595, 95, 50, 60),
                                                   R(695, 95, 70, 35)],
                  "dont_care": None, "det": degenerate})

    # float coordinates: GT with .5 values (rounded half to even), detections truncated
    gt_f = [[[10.5, 10.5], [90.5, 10.5], [90.5, 30.5], [10.5, 30.5]],
            [[11.5, 40.5], [70.5, 40.5], [70.5, 61.5], [11.5, 61.5]],
            [[-2.5, 70.5], [40.5, 70.5], [40.5, 89.5], [-2.5, 89.5]]]
    det_f = [[[9.7, 9.2], [91.9, 10.1], [90.2, 31.8], [10.1, 30.9]],
             [[11.99, 40.01], [70.99, 40.5], [70.5, 61.99], [11.5, 61.5]],
             [[-3.7, 69.9], [40.9, 70.2], [41.9, 90.4], [-3.2, 89.8]],
             [[200.4, 200.6], [260.6, 200.4], [260.5, 215.5], [200.5, 215.5]]]
    pages.append({"name": "float_coords", "gt": gt_f, "dont_care": None, "det": det_f})

    # outside the image: negative and far coordinates
    gt_o = [R(-40, -10, 80, 20), R(5000, 7000, 120, 30), R(10, 10, 50, 20)]
    det_o = [R(-42, -12, 84, 24), R(4998, 6998, 124, 34), R(-500, -500, 40, 20),
             R(20000, 30000, 50, 50)]
    pages.append({"name": "outside", "gt": gt_o, "dont_care": None, "det": det_o})

    # don't care: a dc region overlapping cared words, detections inside, across, split
    gt_dc = [R(10, 10, 300, 40), R(20, 15, 60, 25), R(100, 15, 60, 25), R(10, 100, 80, 20),
             R(200, 100, 60, 20), R(150, 200, 100, 100)]
    flags = [True, False, False, False, True, True]
    det_dc = [R(18, 13, 64, 29), R(170, 15, 100, 25), R(10, 100, 40, 20), R(52, 100, 38, 20),
              R(190, 95, 80, 30), R(150, 200, 40, 40), R(200, 250, 60, 60),
              R(95, 12, 200, 30), R(140, 190, 120, 120)]
    pages.append({"name": "dont_care", "gt": gt_dc, "dont_care": flags, "det": det_dc})
    pages.append({"name": "dont_care_all", "gt": gt_dc, "dont_care": [True] * 6,
                  "det": det_dc})

    # more than 500 detections, invalid ones inside the first 500
    gt_many = [R(10 + 30 * (k % 20), 10 + 15 * (k // 20), 25, 10) for k in range(40)]
    det_many = [[[0, 0], [1, 1]] for _ in range(20)]
    det_many += [R(5000 + 3 * k, 5000, 2, 2) for k in range(470)]
    det_many += [R(10 + 30 * (k % 20), 10 + 15 * (k // 20), 25, 10) for k in range(40)]
    pages.append({"name": "over_500", "gt": gt_many, "dont_care": None, "det": det_many})
    det_first = [R(10 + 30 * (k % 20), 10 + 15 * (k // 20), 25, 10) for k in range(40)]
    pages.append({"name": "over_500_first", "gt": gt_many, "dont_care": None,
                  "det": det_first + det_many})

    # vertical words and many-vertex (curved) GT
    vert = [R(10 + 40 * k, 10, 20, 60 + 30 * k) for k in range(6)]
    curved = []
    for k in range(4):
        t = np.linspace(0, np.pi, 8)
        top = np.c_[400 + 150 * t / np.pi, 100 + 60 * k - 15 * np.sin(t)]
        bot = np.c_[400 + 150 * t[::-1] / np.pi, 125 + 60 * k - 15 * np.sin(t[::-1])]
        curved.append(_as_list(np.round(np.vstack([top, bot]))))
    dets = [_as_list(d) for d in (unclip_like(np.array(p, float), rng) for p in vert + curved)
            if d is not None]
    pages.append({"name": "vertical_curved", "gt": vert + curved, "dont_care": None,
                  "det": dets})
    # overlapping centres: two detections sharing centres of one word, and a word pair
    pages.append({"name": "overlap", "gt": [R(10, 10, 200, 20), R(220, 10, 100, 20)],
                  "dont_care": None,
                  "det": [R(8, 8, 130, 24), R(90, 8, 130, 24), R(150, 8, 175, 24)]})
    for i, p in enumerate(pages):
        p.setdefault("name", f"edge_{i}")
    return pages


def all_cases(seed: int = 20261125) -> List[Dict]:
    rng = np.random.default_rng(seed)
    cases: List[Dict] = []
    for p in edge_case_pages(rng):
        cases.append(p)
    for k in range(12):
        n = int(rng.integers(50, 251))
        page = receipt_page(rng, n, rotate=0.02 if k % 3 == 1 else 0.0,
                            half_coords=(k % 4 == 2), quads=(k % 6 == 5))
        page["name"] = f"receipt_{k:02d}"
        cases.append(page)
    for k in range(4):
        page = receipt_page(rng, int(rng.integers(20, 60)), width=1280, rotate=0.15,
                            dont_care_rate=0.35, vertical_rate=0.1, fp_rate=0.2)
        page["name"] = f"dont_care_{k:02d}"
        cases.append(page)
    for k in range(6):
        page = receipt_page(rng, int(rng.integers(5, 30)), rotate=0.3, vertical_rate=0.3,
                            fp_rate=0.5)
        page["name"] = f"small_{k:02d}"
        cases.append(page)
    for k in range(20):
        # small mixed pages with random (often self-intersecting or degenerate) polygons
        # inserted among the detections
        page = receipt_page(rng, int(rng.integers(3, 18)), rotate=0.4 * (k % 3),
                            dont_care_rate=0.4 if k % 2 else 0.0, vertical_rate=0.3,
                            half_coords=(k % 4 == 3), fp_rate=0.8, quads=(k % 5 == 1))
        for _ in range(int(rng.integers(1, 5))):
            junk = rng.integers(0, 600, size=(int(rng.integers(2, 8)), 2)).tolist()
            page["det"].insert(int(rng.integers(0, len(page["det"]) + 1)), junk)
        page["name"] = f"mixed_{k:02d}"
        cases.append(page)
    return cases


def main() -> None:
    default = Path(__file__).with_name("synthetic_cases.json")
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    cases = all_cases()
    with open(out, "w") as f:
        json.dump({"images": cases}, f, separators=(",", ":"))
    print(f"{out}: {len(cases)} cases, {out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
