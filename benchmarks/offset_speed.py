"""Microseconds per polygon of the unclip offset: our exact kernel against pyclipper.

The candidates of seeded receipt-scale synthetic pages (the ``postprocess_speed.py`` set,
1024 x 1024 maps, approximated polygons at ``--thresh``) are offset at the distance of
``--ratio`` by

* **pyclipper** (Clipper 6.4.2 in C++, what the seed calls): ``PyclipperOffset`` with round
  joins, ``Execute(distance)``, first path;
* **our kernel** (:func:`unclip_tuner.postprocess.offset.offset_polygon`), and separately its
  first stage alone (the raw offset path, before Clipper's union clean-up).

Both run one after the other on one core, kernels warm; every output of the kernel is
compared with pyclipper's (same vertices, same order). The shape of the inputs is printed
too: how many candidates are convex (their raw offset path needs no clean-up in principle),
how many concave vertices the others have (each makes the raw path loop over itself), and how
the edges of the raw paths meet: already simple, proper crossings only, or touching (a vertex
on another edge, or overlapping collinear edges, which Clipper's joins resolve).

Usage::

    python benchmarks/offset_speed.py [--pages 20] [--thresh 0.3] [--ratio 2.0] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from postprocess_speed import build_store  # noqa: E402
from unclip_tuner.postprocess import offset as O  # noqa: E402
from unclip_tuner.postprocess.fast import build_candidates  # noqa: E402
from unclip_tuner.postprocess.params import PostProcessParams  # noqa: E402


def concave_vertices(xs: np.ndarray, ys: np.ndarray) -> int:
    """Vertices turning against the ring's orientation (0 for a convex ring)."""
    ex, ey = np.roll(xs, -1) - xs, np.roll(ys, -1) - ys
    cross = ex * np.roll(ey, -1) - ey * np.roll(ex, -1)
    return int(np.sum(cross * np.sign(cross.sum()) < 0))


def contacts(xs: np.ndarray, ys: np.ndarray) -> str:
    """How the edges of a closed integer path meet, other than neighbours at their shared
    vertex: "simple" (never), "touching" (a vertex on another edge, or collinear edges that
    overlap: Clipper's joins resolve these) or "crossing" (proper crossings only)."""
    m = xs.shape[0]
    x0, y0 = xs, ys
    x1, y1 = np.roll(xs, -1), np.roll(ys, -1)

    def orient(ax, ay, bx, by, cx, cy):
        return np.sign((bx - ax) * (cy - ay) - (by - ay) * (cx - ax))

    # o[i, j]: side of edge i on which the end points of edge j lie
    oa = orient(x0[:, None], y0[:, None], x1[:, None], y1[:, None], x0[None, :], y0[None, :])
    ob = orient(x0[:, None], y0[:, None], x1[:, None], y1[:, None], x1[None, :], y1[None, :])
    i, j = np.triu_indices(m, 2)
    keep = ~((i == 0) & (j == m - 1))
    i, j = i[keep], j[keep]
    a1, a2, b1, b2 = oa[i, j], ob[i, j], oa[j, i], ob[j, i]
    boxes = ((np.maximum(x0[i], x1[i]) >= np.minimum(x0[j], x1[j]))
             & (np.maximum(x0[j], x1[j]) >= np.minimum(x0[i], x1[i]))
             & (np.maximum(y0[i], y1[i]) >= np.minimum(y0[j], y1[j]))
             & (np.maximum(y0[j], y1[j]) >= np.minimum(y0[i], y1[i])))
    meet = boxes & (a1 * a2 <= 0) & (b1 * b2 <= 0)
    if not meet.any():
        return "simple"
    proper = (a1 * a2 < 0) & (b1 * b2 < 0)
    return "crossing" if np.all(proper[meet]) else "touching"


def main(argv=None) -> int:
    import pyclipper

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--thresh", type=float, default=0.3)
    ap.add_argument("--ratio", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=5, help="timed passes over all polygons")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    store = build_store(args.pages, 1024, 115, args.seed)
    params = PostProcessParams(thresh=args.thresh, use_polygon=True)
    inputs = []
    for name in store.names():
        cand = build_candidates(store.get(name).prob, params)
        for i in range(len(cand.scores)):
            q = cand.points[cand.offsets[i]:cand.offsets[i + 1]]
            xs, ys = q[:, 0].astype(np.float64), q[:, 1].astype(np.float64)
            d = O.unclip_distance(xs, ys, args.ratio)
            if not np.isnan(d):
                inputs.append((xs.astype(np.int64), ys.astype(np.int64), d))
    paths = [(np.c_[xs, ys].tolist(), d) for xs, ys, d in inputs]

    def run_pyclipper():
        out = []
        for pts, d in paths:
            off = pyclipper.PyclipperOffset()
            off.AddPath(pts, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
            res = off.Execute(d)
            out.append(np.array(res[0], dtype=np.int64) if res else None)
        return out

    def run_kernel():
        return [O.offset_polygon(xs, ys, d) for xs, ys, d in inputs]

    def run_raw_stage():
        for xs, ys, d in inputs:
            cx, cy, _ = O._offset_input(xs, ys)
            O._raw_offset(cx, cy, d)

    # warm-up (compile or load the kernels), then the identity check
    ours, ref = run_kernel(), run_pyclipper()
    run_raw_stage()
    same = sum(1 for (o, st), r in zip(ours, ref)
               if (r is None and st == O.OFFSET_EMPTY)
               or (r is not None and st == O.OFFSET_OK and np.array_equal(o, r)))
    fallback = sum(1 for _, st in ours if st == O.OFFSET_FALLBACK)

    def per_polygon_us(fn) -> float:
        t = time.perf_counter()
        for _ in range(args.repeat):
            fn()
        return (time.perf_counter() - t) / args.repeat / len(inputs) * 1e6

    t_ref = per_polygon_us(run_pyclipper)
    t_ours = per_polygon_us(run_kernel)
    t_raw = per_polygon_us(run_raw_stage)

    concave = np.array([concave_vertices(xs.astype(np.float64), ys.astype(np.float64))
                        for xs, ys, _ in inputs])
    kinds = {"simple": 0, "touching": 0, "crossing": 0}
    for xs, ys, d in inputs:
        cx, cy, n = O._offset_input(xs, ys)
        if n:
            px, py = O._union_input(*O._raw_offset(cx, cy, d))
            if px.shape[0]:
                kinds[contacts(px, py)] += 1
    print(f"{len(inputs)} candidate polygons of {args.pages} synthetic pages "
          f"(thresh {args.thresh}, ratio {args.ratio}), "
          f"{np.mean([len(x) for x, _, _ in inputs]):.1f} vertices on average")
    print(f"  convex: {int(np.sum(concave == 0))}; the others have "
          f"{concave[concave > 0].mean():.1f} concave vertices on average")
    print(f"  raw offset paths (as the union sees them): {kinds['simple']} already simple, "
          f"{kinds['crossing']} with proper crossings only, {kinds['touching']} with a vertex on "
          "another edge or overlapping collinear edges")
    print(f"  identical to pyclipper (vertices and order): {same}/{len(inputs)}, "
          f"kernel fallbacks {fallback}")
    print()
    print(f"{'per polygon, one core':<36}{'us':>8}")
    print(f"{'pyclipper (Clipper 6.4.2, C++)':<36}{t_ref:>8.1f}")
    print(f"{'our kernel (offset + union)':<36}{t_ours:>8.1f}   ratio {t_ref / t_ours:.2f}x")
    print(f"{'  of which the raw offset stage':<36}{t_raw:>8.1f}")
    print(f"{'  and the union clean-up':<36}{t_ours - t_raw:>8.1f}")
    print("(times include one Python call per polygon on both sides)")
    return 0 if same == len(inputs) else 1


if __name__ == "__main__":
    sys.exit(main())
