"""``unclip-tuner demo``: the whole job on an embedded example, on CPU, with nothing to download.

Renders synthetic receipt photos with line-level ground truth, caches the maps of the
PP-OCRv4 detector shipped in the ``rapidocr-onnxruntime`` wheel, runs ``tune-post`` on
them and compares polygon unclip ratios at the best thresholds (see :mod:`unclip_tuner.demo`).
"""

from __future__ import annotations

import os
import sys
from typing import List

from ..cli import CLIError


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole job on synthetic receipts with a real detector (CPU, no download)",
        description="Render synthetic receipts, cache the maps of the PP-OCRv4 detector (ONNX, "
                    "CPU) over them, search the post-processing parameters with tune-post and "
                    "compare polygon unclip ratios. Needs onnxruntime and "
                    "rapidocr-onnxruntime==1.4.4 (installed with --no-deps).")
    p.add_argument("--images", type=int, default=24, metavar="N",
                   help="synthetic receipts to render (default 24)")
    p.add_argument("--trials", type=int, default=100, metavar="N",
                   help="complete trials of the search, the seed's parameters first (default 100)")
    p.add_argument("--out", metavar="DIR",
                   help="keep everything (images, gt.json, cache, report) in DIR; default: a "
                        "temporary folder removed at the end. Running again with the same DIR "
                        "resumes it")
    p.add_argument("--holdout", type=float, default=0.0, metavar="FRACTION",
                   help="share of images kept out of the search to check the result "
                        "(e.g. 0.3; default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the receipts and of the search")
    p.add_argument("--jobs", type=int, default=None,
                   help="threads over images in the search (default: the CPU count, at most 8)")
    p.add_argument("--plots", action="store_true", help="write the report's PNG plots (with --out)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)


def _fmt(value) -> str:
    from ..report.export import format_number

    return format_number(value)


def format_result(res) -> str:
    """The demo's closing text: parameters, scores, paste line, unclip ratios, timings."""
    s = res.summary
    best, first = s["best"], s.get("first")
    bp, fp = best["params"], (first or {}).get("params") or {}
    out: List[str] = []
    n_search = s.get("search_images", res.n_images)
    out.append(f"Searched {n_search} of {res.n_images} synthetic receipts, "
               f"{s.get('n_complete', '?')} complete trials, metric {s.get('metric', 'cleval')} "
               f"(polygon mode).")
    out.append("")
    rows = [("parameter", "first trial (seed)", "best")]
    for name in ("thresh", "box_thresh", "polygon_unclip_ratio", "max_candidates", "use_polygon"):
        rows.append((name, _fmt(fp[name]) if name in fp else "-", _fmt(bp[name])))
    w0 = max(len(r[0]) for r in rows) + 2
    w1 = max(len(r[1]) for r in rows) + 2
    out += [f"  {r[0]:<{w0}}{r[1]:<{w1}}{r[2]}" for r in rows]
    out.append("")
    out.append(f"  {'':<{w0}}{'H-Mean':>8}{'recall':>9}{'precision':>11}")

    def score_row(label, d):
        return (f"  {label:<{w0}}{d['hmean']:>8.4f}{d.get('recall') or 0:>9.4f}"
                f"{d.get('precision') or 0:>11.4f}")

    if first is not None:
        out.append(score_row(f"first (trial {first['trial']})", first))
    out.append(score_row(f"best (trial {best['trial']})", best))
    if first is not None:
        out.append(f"  {'best - first':<{w0}}{best['hmean'] - first['hmean']:>+8.4f}")
    hold = s.get("holdout")
    if hold:
        d = hold["best_minus_first"]
        out.append(f"  held-out images ({hold['images']}): first {hold['first_hmean']:.4f}, "
                   f"best {hold['best_hmean']:.4f}; best - first {d['estimate']:+.4f} "
                   f"[{d['low']:+.4f}, {d['high']:+.4f}] (95% bootstrap)")
    out.append("")
    paste = s.get("paste") or {}
    out.append(f"Paste ({paste.get('target', '?')}):")
    out += [f"  {line}" for line in paste.get("lines", [])]
    out += [f"  note: {n}" for n in paste.get("notes", [])]
    out.append("")
    out.append(f"Polygon unclip ratio at the best thresh={_fmt(bp['thresh'])}, "
               f"box_thresh={_fmt(bp['box_thresh'])} (all {res.n_images} images):")
    out.append(f"  {'ratio':<8}{'H-Mean':>8}{'recall':>9}{'precision':>11}")
    for ratio, score in res.ratios:
        tags = []
        if ratio == fp.get("polygon_unclip_ratio"):
            tags.append("seed")
        if ratio == bp["polygon_unclip_ratio"]:
            tags.append("best")
        tag = f"  ({', '.join(tags)})" if tags else ""
        out.append(f"  {_fmt(ratio):<8}{score.hmean:>8.4f}{score.recall:>9.4f}"
                   f"{score.precision:>11.4f}{tag}")
    return "\n".join(out) + "\n"


def _cmd_demo(args) -> int:
    import shutil
    import tempfile
    import time

    from ..demo import DemoUnavailable, check_detector, run_demo

    if args.images < 1:
        raise CLIError("--images must be >= 1")
    if args.trials < 1:
        raise CLIError("--trials must be >= 1")
    if args.jobs is not None and args.jobs < 1:
        raise CLIError("--jobs must be >= 1")
    if not 0.0 <= args.holdout < 1.0:
        raise CLIError("--holdout must be in [0, 1)")
    try:
        check_detector()
    except DemoUnavailable as exc:
        raise CLIError(str(exc)) from None

    t_start = time.perf_counter()
    keep = args.out is not None
    work = args.out if keep else tempfile.mkdtemp(prefix="unclip-tuner-demo-")
    try:
        res = run_demo(work, n_images=args.images, trials=args.trials, seed=args.seed,
                       holdout=args.holdout, jobs=args.jobs, plots=args.plots and keep,
                       show_progress=not args.no_progress)
        print()
        print(format_result(res), end="")
        sec = res.seconds
        total = time.perf_counter() - t_start
        print()
        print(f"Time: {total:.0f} s (render {sec['render']:.1f} s, detector {sec['detect']:.1f} s, "
              f"search {sec['tune']:.1f} s, ratios {sec['compare']:.1f} s; {os.cpu_count()} CPU "
              f"core(s))")
        if keep:
            print(f"Kept in {res.work_dir}: images/, gt.json, cache/, report/ "
                  f"(report.md, best.yaml, trials.csv)")
        print("On your own model: unclip-tuner cache-maps --ckpt CKPT --images DIR --gt VAL.json "
              "--out CACHE, then unclip-tuner tune-post --cache CACHE")
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    sys.stdout.flush()
    return 0
