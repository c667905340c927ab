"""Where a full pass of the fast engine spends its time, stage by stage, on one core.

The set and the parameters are those of ``postprocess_speed.py`` (seeded receipt-scale
synthetic pages, 1024 x 1024 maps held in memory, thresh 0.25, box_thresh 0.5, polygon
mode, ratio 2.0 then 1.85). Each stage of the engine is timed alone over every page, kernels
warm, one thread:

* cold pass: threshold and contours (OpenCV), both inside the map's text window as the
  engine runs them, approximation + box score, unclip, CLEval pair geometry, CLEval
  matching;
* new-ratio pass: unclip, pair geometry, matching.

The unclip is split into its first stage (the offset distance, the raw offset path and
the clean-up of its vertices, run alone by a small kernel here) and the rest (Clipper's
union sweep, the size filter and the mapping). The whole engine is then timed on the same
pass (a fresh engine, one thread); what it spends beyond the stages is the Python around
them ("glue"). The glue can come out slightly negative: the engine runs the stages of one
page back to back while that page's map is in the processor cache, the stages timed alone
each read every map again.

The last lines project a pass over ``--project`` pages on ``--jobs`` threads from the
per-page costs, assuming perfect scaling over threads, once as measured and once with the
union sweep at zero cost: how far the issue's goals are from each stage.

Usage::

    python benchmarks/stage_costs.py [--n-images 404] [--project 404] [--jobs 2]
    python benchmarks/stage_costs.py --real-maps ../realmaps/sroie_dev --project 200
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from postprocess_speed import build_store  # noqa: E402
from unclip_tuner.postprocess import offset as O  # noqa: E402
from unclip_tuner.postprocess.engine import FastEngine, _Candidates  # noqa: E402
from unclip_tuner.metrics.cleval import DetectionPairs  # noqa: E402
from unclip_tuner.metrics.cleval import count_via_qhull  # noqa: E402
from unclip_tuner.postprocess.fast import (WINDOW_FLOOR, arc_lengths,  # noqa: E402
                                           gather_polygons, polygon_candidates, text_window,
                                           threshold_box, unclip_all)
from unclip_tuner.postprocess.params import PostProcessParams  # noqa: E402
from unclip_tuner.postprocess.reference import find_contours_packed  # noqa: E402

GOALS = {"cold": 0.7, "ratio": 0.2}


@njit(cache=True)
def raw_offset_stage(pts, offs, todo, ratio):
    """The unclip's first stage alone for candidates ``todo``: distance, truncation, raw
    offset path, vertex clean-up (what runs before the union sweep). Returns a checksum so
    that nothing is optimised away."""
    acc = 0
    for t in range(todo.shape[0]):
        c = todo[t]
        xs = pts[offs[c]:offs[c + 1], 0].astype(np.float64)
        ys = pts[offs[c]:offs[c + 1], 1].astype(np.float64)
        d = O.unclip_distance(xs, ys, ratio)
        if np.isnan(d):
            continue
        cx, cy, n = O._offset_input(xs.astype(np.int64), ys.astype(np.int64))
        if n == 0:
            continue
        rx, ry = O._raw_offset(cx, cy, d)
        px, _ = O._union_input(rx, ry)
        acc += px.shape[0]
    return acc


def per_page_ms(fn, items) -> float:
    t = time.perf_counter()
    for it in items:
        fn(it)
    return (time.perf_counter() - t) / len(items) * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-images", type=int, default=404)
    ap.add_argument("--project", type=int, default=404, help="pages of the projected pass")
    ap.add_argument("--jobs", type=int, default=2, help="threads of the projected pass")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real-maps", type=Path,
                    help="a folder of real .npz maps with gt.json (as speed.py takes) instead "
                         "of the synthetic set")
    args = ap.parse_args(argv)

    if args.real_maps is not None:
        from speed import real_store

        store = real_store(args.real_maps)
        args.n_images = len(store.names())
        what = f"{args.n_images} real maps of {args.real_maps.name}"
    else:
        store = build_store(args.n_images, 1024, 115, args.seed)
        what = f"{args.n_images} synthetic pages (postprocess_speed.py's set)"
    names = store.names()
    base = PostProcessParams(thresh=0.25, box_thresh=0.50, use_polygon=True,
                             polygon_unclip_ratio=2.0, max_candidates=1000)
    ratio2 = 1.85
    probs = {n: store.get(n).prob for n in names}
    matrix = {n: np.ascontiguousarray(store.get(n).inverse_matrix, dtype=np.float64) for n in names}

    # warm every kernel on one page
    FastEngine(store, jobs=1).evaluate(base, images=names[:1])

    # the intermediate results of every stage, kept so that each stage is timed alone
    binary, contours, cands, todo, unc = {}, {}, {}, {}, {}
    scorer = FastEngine(store, jobs=1)._pair_scorer

    # the engine finds each map's text window once, when it first reads the map
    windows = {n: text_window(probs[n], WINDOW_FLOOR)[0] for n in names}

    def s_threshold(n):
        binary[n] = threshold_box(probs[n], np.float32(base.thresh), *windows[n])

    def s_contours(n):
        cxy, coffs = find_contours_packed(binary[n])
        cxy[:, 0] += windows[n][2]
        cxy[:, 1] += windows[n][0]
        contours[n] = (cxy, coffs)

    def s_candidates(n):
        cxy, coffs = contours[n]
        pts, offs, idx, scores = polygon_candidates(probs[n], cxy, coffs,
                                                    0.002 * arc_lengths(cxy, coffs), False)
        cands[n] = _Candidates(pts, offs, idx, scores, coffs.shape[0] - 1)
        todo[n] = cands[n].kept(base.box_thresh, base.max_candidates)

    def unclip_pass(ratio):
        def s_raw(n):
            c = cands[n]
            raw_offset_stage(c.points, c.offsets, todo[n], ratio)

        def s_unclip(n):
            unc[n] = unclip_all(cands[n], todo[n], ratio, matrix[n], base)

        return s_raw, s_unclip

    def pack(n):
        # untimed: the surviving polygons packed as the engine hands them to the metric
        coords, offs, valid, _ = unc[n]
        keep = np.flatnonzero(valid)
        start, length = offs[:-1][keep], np.diff(offs)[keep]
        flat, o = gather_polygons(coords, start, length)
        unc[n] = (coords, start, length, flat, o)

    def s_pairs(n):
        unc[n] = unc[n] + (scorer.detection_pairs(n, unc[n][3], unc[n][4]),)

    def s_match(n):
        coords, start, length, _, _, pairs = unc[n]
        k = len(start)
        table = DetectionPairs(k)
        table.add(np.arange(k), pairs)
        scorer.score_selected(n, table, np.arange(k), coords, start, length)

    def engine_pass(params, prime=None) -> float:
        eng = FastEngine(store, jobs=1)
        if prime is not None:
            eng.evaluate(prime)
        t = time.perf_counter()
        eng.evaluate(params)
        return (time.perf_counter() - t) / len(names) * 1e3

    # warm-up: every stage once on two pages (compiles or loads every specialisation), and
    # scipy's Qhull (imported on first use by the false-positive count of rare detections)
    count_via_qhull(np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 3.0]]), fp=True)
    warm = names[:2]
    s_warm_raw, s_warm_unclip = unclip_pass(base.polygon_unclip_ratio)
    for stage in (s_threshold, s_contours, s_candidates, s_warm_raw, s_warm_unclip, pack,
                  s_pairs, s_match):
        for n in warm:
            stage(n)

    def after_candidates(ratio) -> dict:
        """The unclip and metric stages at ``ratio``, over the candidates in ``cands``."""
        s_raw, s_unclip = unclip_pass(ratio)
        out = {"unclip: raw offset": per_page_ms(s_raw, names)}
        out["unclip: union + rest"] = per_page_ms(s_unclip, names) - out["unclip: raw offset"]
        for n in names:
            pack(n)
        out["CLEval pair geometry"] = per_page_ms(s_pairs, names)
        out["CLEval matching"] = per_page_ms(s_match, names)
        return out

    rows = {"threshold": per_page_ms(s_threshold, names),
            "contours (OpenCV)": per_page_ms(s_contours, names),
            "approximation + score": per_page_ms(s_candidates, names)}
    rows.update(after_candidates(base.polygon_unclip_ratio))
    # primed at another threshold: a search's cold pass finds the maps already read once
    # (their NaN check and text window done)
    cold_total = engine_pass(base, prime=base.replace(thresh=0.33))
    ratio_rows = after_candidates(ratio2)
    ratio_total = engine_pass(base.replace(polygon_unclip_ratio=ratio2), prime=base)

    n_unclipped = sum(len(t) for t in todo.values())
    print(f"{what}, thresh {base.thresh}, "
          f"box_thresh {base.box_thresh}, {n_unclipped / args.n_images:.0f} candidates "
          f"unclipped per page; one thread, ms per page")
    print()
    scale = args.project / args.jobs / 1e3
    for label, stages, total in (("cold thresh", rows, cold_total),
                                 ("new ratio", ratio_rows, ratio_total)):
        key = "cold" if label == "cold thresh" else "ratio"
        print(f"{label} pass{'':<24}{'ms/page':>9}{'share':>8}")
        for k, v in stages.items():
            print(f"  {k:<34}{v:>9.3f}{100 * v / total:>7.0f}%")
        glue = total - sum(stages.values())
        print(f"  {'glue (Python around the kernels)':<34}{glue:>9.3f}{100 * glue / total:>7.0f}%")
        print(f"  {'whole engine':<34}{total:>9.3f}")
        union = stages["unclip: union + rest"]
        goal = f" (goal {GOALS[key]} s)" if args.real_maps is None else ""
        print(f"  projected {args.project} pages on {args.jobs} threads: {total * scale:.3f} s; "
              f"with a zero-cost union sweep: {(total - union) * scale:.3f} s{goal}")
        print()
    print("projection: per-page cost x pages / threads (perfect scaling assumed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
