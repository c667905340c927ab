"""Decode + competition CLEval per full pass: reference path vs fast engine, one run.

A receipt-scale synthetic set (by default 404 maps of 1024x1024 with about 115 text blobs
each, like the competition's validation split) is decoded and scored three ways per
parameter change, the way a search visits them:

* **cold thresh**: a threshold never seen (contours, approximation, scores, unclip, metric),
  on a fresh engine (so it also reads every map for the first time: a NaN check and the
  map's text window, once per map); **cold, maps read** is a second new threshold, as a
  search meets it;
* **new ratio**: a new unclip ratio at a seen threshold (unclip, metric);
* **new box_thresh**: only the box threshold changes (a filter, then the metric where the
  kept set changed), by +0.05 and then by one grid step (+0.01); then by -0.05 below every
  box_thresh seen so far, where the candidates kept for the first time are also unclipped
  (the engine unclips a candidate the first time a box_thresh keeps it).

The reference path (our plain reference decoder + plain reference CLEval, both proven
identical to the baseline) is timed on a sample of images and scaled to the full set; the
output says so. Dataset H-Means of both paths are printed side by side; they must agree.

Usage::

    python benchmarks/postprocess_speed.py [--n-images 404] [--jobs 2] [--ref-sample 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from unclip_tuner.cache import InMemoryMapStore, MapRecord  # noqa: E402
from unclip_tuner.io.types import Dataset, ImageWords  # noqa: E402
from unclip_tuner.postprocess.engine import FastEngine, ReferenceEngine  # noqa: E402
from unclip_tuner.postprocess.params import PostProcessParams  # noqa: E402
from unclip_tuner.synthetic import synthetic_page  # noqa: E402


def build_store(n: int, size: int, words: int, seed: int) -> InMemoryMapStore:
    rng = np.random.default_rng(seed)
    recs, gt = [], Dataset()
    for i in range(n):
        w, h = int(rng.integers(700, 1300)), int(rng.integers(900, 1600))
        prob, polys, m = synthetic_page(rng, size=size, n_words=int(rng.integers(words * 2 // 5, words * 8 // 5)),
                                        image_size=(w, h), gt_unclip=1.8)
        name = f"receipt_{i:04d}.jpg"
        recs.append(MapRecord(name, prob, m, w, h))
        gt[name] = ImageWords([np.round((np.c_[p, np.ones(len(p))] @ m.T)[:, :2]) for p in polys])
    return InMemoryMapStore(recs, gt)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-images", type=int, default=404)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--words", type=int, default=115, help="mean text blobs per page")
    ap.add_argument("--jobs", type=int, default=2, help="threads over images (fast path)")
    ap.add_argument("--ref-sample", type=int, default=16, help="images timed on the reference path")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    store = build_store(args.n_images, args.size, args.words, args.seed)
    n_words = store.gt.n_words()
    print(f"synthetic set: {args.n_images} maps of {args.size}x{args.size}, "
          f"{n_words / args.n_images:.0f} GT words per page ({time.perf_counter() - t0:.1f} s to build)")

    base = PostProcessParams(thresh=0.30, box_thresh=0.50, use_polygon=True, polygon_unclip_ratio=2.0,
                             max_candidates=1000)
    steps = [
        ("cold thresh", base.replace(thresh=0.25)),
        ("new ratio", base.replace(thresh=0.25, polygon_unclip_ratio=1.85)),
        ("new box_thresh", base.replace(thresh=0.25, polygon_unclip_ratio=1.85, box_thresh=0.55)),
        ("box_thresh +.01", base.replace(thresh=0.25, polygon_unclip_ratio=1.85, box_thresh=0.56)),
        # lower than any box_thresh seen at this (thresh, ratio): the newly kept candidates
        # are unclipped now (a candidate is unclipped the first time one is kept)
        ("box_thresh -.05", base.replace(thresh=0.25, polygon_unclip_ratio=1.85, box_thresh=0.45)),
        # a second new threshold: as in a search, the engine has read every map before (the
        # first pass also checks each map for NaN and finds its text window, once)
        ("cold, maps read", base.replace(thresh=0.27)),
    ]

    fast = FastEngine(store, jobs=args.jobs)
    # warm-up: compile (or load) the kernels and fill nothing that the timed steps reuse
    warm = InMemoryMapStore([store.get(n) for n in store.names()[:2]],
                            Dataset({n: store.gt[n] for n in store.names()[:2]}))
    FastEngine(warm).evaluate(base.replace(thresh=0.33))
    fast_times, fast_scores, rescored = [], [], []
    for label, p in steps:
        before = fast.stats["scored"]
        dt, s = timed(lambda: fast.evaluate(p))
        fast_times.append(dt)
        fast_scores.append(s)
        rescored.append(fast.stats["scored"] - before)
    print(f"fast engine: {fast.stats['fallback']} of {fast.stats['unclipped']} unclips "
          f"({100.0 * fast.stats['fallback'] / max(1, fast.stats['unclipped']):.2f}%) used the library fallback")

    sample = store.names()[:: max(1, args.n_images // args.ref_sample)][: args.ref_sample]
    ref = ReferenceEngine(store, jobs=1)
    ref_times, ref_scores, fast_sample = [], [], []
    for label, p in steps:
        dt, s = timed(lambda: ref.evaluate(p, images=sample))
        ref_times.append(dt * args.n_images / len(sample))
        ref_scores.append(s)
        fast_sample.append(fast.evaluate(p, images=sample))

    print()
    print(f"{'per full pass':<16}{'reference (s)':>15}{'fast (s)':>11}{'ratio':>9}{'re-scored':>11}"
          "   H-Mean on the sample (ref / fast)")
    for (label, _), rt, ft, rs, fs, k in zip(steps, ref_times, fast_times, ref_scores, fast_sample,
                                             rescored):
        print(f"{label:<16}{rt:>15.2f}{ft:>11.3f}{rt / ft:>8.0f}x{k:>11d}   {rs.hmean:.6f} / {fs.hmean:.6f}")
    print(f"\nreference times: {len(sample)} images timed on one core, scaled to {args.n_images}; "
          f"fast: {args.jobs} threads over images, kernels warm; re-scored: images whose kept "
          "set the step changed (the others come from the score memo).")
    print("full-set H-Mean (fast): " + ", ".join(f"{label} {s.hmean:.6f}" for (label, _), s in zip(steps, fast_scores)))
    ok = all(abs(a.hmean - b.hmean) <= 1e-6 for a, b in zip(ref_scores, fast_sample))
    print("identical H-Mean on the sample:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
