"""How much storing maps as float16 (``cache-maps --dtype float16``) changes the results.

Reads real probability maps (``scripts/make_real_maps.py`` output: one ``.npz`` per image and
``gt.json``), decodes every map as stored (float32) and after a float16 round trip, with a
few parameter sets, and prints per set: the share of images whose detections change, the
share of detections that differ, and the dataset H-Mean of both (CLEval, fast engine).

Usage::

    python benchmarks/float16_drift.py --maps ../realmaps/sroie_dev [--limit 200]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from unclip_tuner.cache import InMemoryMapStore, MapRecord  # noqa: E402
from unclip_tuner.io import Dataset, read_dataset  # noqa: E402
from unclip_tuner.postprocess.engine import FastEngine  # noqa: E402
from unclip_tuner.postprocess.params import PostProcessParams  # noqa: E402

SETS = [
    PostProcessParams(thresh=0.3, box_thresh=0.4, max_candidates=500, use_polygon=True),
    PostProcessParams(thresh=0.2, box_thresh=0.6, max_candidates=500, use_polygon=True,
                      polygon_unclip_ratio=1.8),
    PostProcessParams(thresh=0.3, box_thresh=0.4, max_candidates=500, use_polygon=False),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--maps", type=Path, required=True, help="folder of .npz maps with gt.json")
    ap.add_argument("--gt", type=Path, help="ground truth (default: MAPS/gt.json)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    files = sorted(args.maps.glob("*.npz"))[: args.limit]
    if not files:
        print(f"no .npz maps in {args.maps}; nothing to measure")
        return 0
    gt_all = read_dataset(args.gt or args.maps / "gt.json")
    recs32, recs16, gt = [], [], Dataset()
    max_err = 0.0
    for f in files:
        d = np.load(f)
        name = str(d["filename"]) if "filename" in d else f.stem
        prob = np.clip(np.asarray(d["prob"], np.float32), 0, 1)
        half = prob.astype(np.float16).astype(np.float32)
        max_err = max(max_err, float(np.abs(half - prob).max()))
        m, w, h = d["inverse_matrix"], int(d["width"]), int(d["height"])
        recs32.append(MapRecord(name, prob, m, w, h))
        recs16.append(MapRecord(name, half, m, w, h))
        gt[name] = gt_all[name]
    e32 = FastEngine(InMemoryMapStore(recs32, gt), jobs=args.jobs)
    e16 = FastEngine(InMemoryMapStore(recs16, gt), jobs=args.jobs)
    print(f"{len(files)} maps from {args.maps}; largest |float16 - float32| in a map: {max_err:.2e}")
    print(f"{'parameters':<44}{'images changed':>16}{'dets changed':>14}{'H float32':>11}{'H float16':>11}{'dH':>10}")
    for p in SETS:
        img_changed = det_changed = n_det = 0
        for name in e32.names:
            a = e32.decode(p, name).polygons
            b = e16.decode(p, name).polygons
            n_det += len(a)
            same = len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
            if not same:
                img_changed += 1
                bset = {x.tobytes() for x in b}
                det_changed += sum(1 for x in a if x.tobytes() not in bset) + max(0, len(b) - len(a))
        h32, h16 = e32.evaluate(p).hmean, e16.evaluate(p).hmean
        label = f"{'poly' if p.use_polygon else 'box'} t={p.thresh} b={p.box_thresh} r={p.unclip_ratio}"
        print(f"{label:<44}{img_changed:>9}/{len(files):<6}{det_changed / max(1, n_det):>13.2%}"
              f"{h32:>11.6f}{h16:>11.6f}{h16 - h32:>+10.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
