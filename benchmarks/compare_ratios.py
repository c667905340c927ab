"""How much does the unclip ratio move H-Mean, and is the difference real?

For each ratio (default 1.85, 2.0, 2.15) the cached maps are decoded and scored with the
competition's CLEval; each ratio is compared with a reference ratio (default 2.0) image by
image: the paired bootstrap 95% interval of the H-Mean difference (images resampled with
replacement, the same draw for both ratios), and how many images win, lose or tie. A fine
ratio grid is scored too and drawn as a PNG with the intervals as bands.

The other parameters come from, later ones winning: the competition configuration
(``thresh 0.3, box_thresh 0.4, max_candidates 500``, polygon mode), the cache's recorded
``params``, ``--params FILE`` and ``--set KEY=VALUE``. With ``--tune-thresh`` thresh and
box_thresh are re-optimised for every ratio over a grid (the optimal ratio depends on the
thresholds), on the same images: the tuned differences are then slightly optimistic.

Examples::

    python benchmarks/compare_ratios.py --cache runs/val_cache --out benchmarks/results/val
    python benchmarks/compare_ratios.py --maps /data/maps/sroie_dev --tune-thresh \\
        --out benchmarks/results/sroie_dev

``--maps DIR`` takes a folder of ``.npz`` maps (``scripts/make_real_maps.py`` output, with
``gt.json``) and imports it into a temporary cache. Writes ``compare_ratios.md``,
``compare_ratios.json`` and ``ratio_grid.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: The competition's configuration (configs/preset/models/head/db_head.yaml).
COMPETITION = {"thresh": 0.3, "box_thresh": 0.4, "max_candidates": 500}


def parse_grid(text: str, what: str) -> List[float]:
    """``"1.2:2.6:0.05"`` -> the exact decimal grid ``[1.2, 1.25, ..., 2.6]`` as floats."""
    try:
        lo, hi, step = (Decimal(t) for t in text.split(":"))
    except (ValueError, InvalidOperation):
        raise SystemExit(f"error: {what} must be LOW:HIGH:STEP, got {text!r}") from None
    if step <= 0 or hi < lo:
        raise SystemExit(f"error: {what} needs LOW <= HIGH and STEP > 0, got {text!r}")
    n = int((hi - lo) / step) + 1
    if n > 2000:
        raise SystemExit(f"error: {what} has {n} values; use a coarser step")
    return [float(lo + i * step) for i in range(n)]


def load_gt(path):
    """Ground truth from a txt folder, zip or UFO JSON; ``###`` texts become don't-care
    when the format carried no flags (UFO JSON written by scripts/make_real_maps.py)."""
    from unclip_tuner.io import read_dataset
    from unclip_tuner.io.types import Dataset, ImageWords

    gt = read_dataset(str(path))
    out = Dataset()
    for name, w in gt.items():
        if w.dont_care is None and w.texts is not None and any(t == "###" for t in w.texts):
            w = ImageWords(w.polygons, np.array([t == "###" for t in w.texts]), w.texts)
        out[name] = w
    return out


def clip_rounding_overshoot(src: Path, tmp: Path, tol: float = 1e-6):
    """A folder of the same ``.npz`` maps where values within ``tol`` outside ``[0, 1]`` are
    clipped (the ONNX sigmoid of PP-OCRv4 gives 1.0000001 on a few pixels, which the map
    importer refuses). Returns ``(folder, names of the clipped files)``; ``src`` itself when
    nothing needed clipping."""
    files = sorted(src.glob("*.npz"))
    fixed = []
    out = tmp / "maps_clipped"
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        prob = arrays.get("prob")
        if prob is None or prob.dtype.kind != "f" or prob.size == 0:
            continue
        lo, hi = float(prob.min()), float(prob.max())
        if (lo < 0 or hi > 1) and lo >= -tol and hi <= 1 + tol:
            out.mkdir(parents=True, exist_ok=True)
            arrays["prob"] = np.clip(prob, 0, 1).astype(prob.dtype)
            np.savez(out / f.name, **arrays)
            fixed.append(f.name)
    if not fixed:
        return src, []
    for f in files:
        if f.name not in fixed:
            (out / f.name).symlink_to(f.resolve())
    return out, fixed


def open_store(args, tmp: Path):
    """The cache named by --cache, or --maps imported into a temporary cache."""
    import warnings

    from unclip_tuner.cache.importers import import_maps
    from unclip_tuner.cache.store import MapCache
    from unclip_tuner.io.types import Dataset

    if args.cache:
        return MapCache.open(args.cache, verify="sample")
    src = Path(args.maps)
    gt_path = Path(args.gt) if args.gt else src / "gt.json"
    if not gt_path.exists():
        raise SystemExit(f"error: {gt_path}: no ground truth (gt.json beside the maps, or --gt)")
    gt = load_gt(gt_path)
    # only the GT images that have a map (maps may cover a subset of the set)
    stems = {p.stem for p in src.glob("*.np[zy]")}
    gt = Dataset((k, v) for k, v in gt.items() if Path(k).stem in stems)
    src, fixed = clip_rounding_overshoot(src, tmp)
    if fixed:
        print(f"note: {len(fixed)} map(s) with values at most 1e-6 outside [0, 1] (float "
              f"rounding of the sigmoid) were clipped: {', '.join(fixed)}", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return import_maps(src, tmp / "cache", gt=gt, overwrite=True)


def base_params(store, mode: str, params_file: Optional[str], sets: Sequence[str]):
    from unclip_tuner.postprocess.params import (PostProcessParams, parse_assignments,
                                                 read_params_file)

    d: Dict[str, Any] = dict(COMPETITION)
    meta = (getattr(store, "meta", None) or {}).get("params")
    if isinstance(meta, dict):
        d.update(meta)
    if params_file:
        d.update(read_params_file(params_file))
    d.update(parse_assignments(list(sets)))
    d["use_polygon"] = mode == "polygon"
    return PostProcessParams.from_dict(d)


def with_ratio(p, ratio: float):
    key = "polygon_unclip_ratio" if p.use_polygon else "box_unclip_ratio"
    return p.replace(**{key: float(ratio)})


def per_image_h(score) -> np.ndarray:
    return np.array([s.hmean for s in score.per_image], dtype=np.float64)


def tune_thresholds(engine, p, thresh_grid: Sequence[float], box_grid: Sequence[float]):
    """Best (thresh, box_thresh) for fixed other parameters: exhaustive grid, first best wins."""
    best, best_score = None, None
    for t in thresh_grid:
        for b in box_grid:
            q = p.replace(thresh=float(t), box_thresh=float(b))
            s = engine.evaluate(q)
            if best_score is None or s.hmean > best_score.hmean:
                best, best_score = q, s
    return best, best_score


def plot_grid(path: Path, grid: Sequence[float], hs: Sequence[float], h_lo, h_hi, d_est, d_lo,
              d_hi, against: float, title: str, marks: Optional[List[tuple]] = None) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 6.4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(2, 1, 1)
    ax.fill_between(grid, h_lo, h_hi, color="tab:blue", alpha=0.18,
                    label="95% bootstrap interval of H-Mean")
    ax.plot(grid, hs, color="tab:blue", marker="o", markersize=3, label="H-Mean")
    if marks:
        ax.scatter([m[0] for m in marks], [m[1] for m in marks], color="tab:red", zorder=5,
                   label="thresholds re-tuned for the ratio")
    ax.axvline(against, color="gray", linestyle="--", linewidth=1)
    ax.set_ylabel("CLEval H-Mean")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower center")
    ax.grid(alpha=0.3)
    bx = fig.add_subplot(2, 1, 2, sharex=ax)
    bx.fill_between(grid, d_lo, d_hi, color="tab:orange", alpha=0.25,
                    label=f"paired 95% interval of the difference vs {against:g}")
    bx.plot(grid, d_est, color="tab:orange", marker="o", markersize=3,
            label=f"H-Mean(ratio) - H-Mean({against:g})")
    bx.axhline(0.0, color="black", linewidth=0.8)
    bx.set_xlabel("unclip ratio")
    bx.set_ylabel("difference")
    bx.legend(fontsize=8, loc="lower center")
    bx.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(path), format="png")


def fmt_params(p) -> str:
    return f"thresh {p.thresh:g}, box_thresh {p.box_thresh:g}"


def run(args) -> Dict[str, Any]:
    from unclip_tuner.postprocess.engine import FastEngine
    from unclip_tuner.search.bootstrap import bootstrap_mean, paired_bootstrap_diff

    ratios = [float(r) for r in args.ratios]
    against = float(args.against)
    if against not in ratios:
        ratios.append(against)
    ratios = sorted(set(ratios))
    grid = [] if args.no_grid else parse_grid(args.grid, "--grid")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="compare_ratios_") as tmp:
        store = open_store(args, Path(tmp))
        if store.gt is None:
            raise SystemExit("error: the cache has no ground truth")
        base = base_params(store, args.mode, args.params, args.set)
        engine = FastEngine(store, metric="cleval", jobs=args.jobs)
        n = len(engine.names)
        print(f"{n} images, {args.mode} mode, base parameters: "
              + ", ".join(f"{k}={v}" for k, v in base.to_dict().items()), flush=True)

        # -- the listed ratios (thresholds fixed or re-tuned per ratio) ---------------------
        tuned: Dict[float, Any] = {}
        scores: Dict[float, Any] = {}
        for r in ratios:
            p = with_ratio(base, r)
            if args.tune_thresh:
                p, s = tune_thresholds(engine, p, parse_grid(args.thresh_grid, "--thresh-grid"),
                                       parse_grid(args.box_grid, "--box-grid"))
            else:
                s = engine.evaluate(p)
            tuned[r], scores[r] = p, s
            print(f"  ratio {r:g}: H {s.hmean:.4f} ({fmt_params(p)})", flush=True)
        ref_h = per_image_h(scores[against])
        rows = []
        for r in ratios:
            s = scores[r]
            h = per_image_h(s)
            ci = bootstrap_mean(h, n_boot=args.n_boot, seed=args.seed)
            d = paired_bootstrap_diff(h, ref_h, n_boot=args.n_boot, seed=args.seed)
            rows.append({
                "ratio": r, "thresh": tuned[r].thresh, "box_thresh": tuned[r].box_thresh,
                "recall": s.recall, "precision": s.precision, "hmean": s.hmean,
                "hmean_ci": [ci.low, ci.high],
                "diff": d.estimate, "diff_ci": [d.low, d.high], "p_diff_le_0": d.p_le_zero,
                "wins": int((h > ref_h).sum()), "losses": int((h < ref_h).sum()),
                "ties": int((h == ref_h).sum()),
            })

        # -- the fine grid at one parameter set ----------------------------------------------
        grid_rows = []
        grid_base = tuned[against]
        if grid:
            for r in grid:
                s = engine.evaluate(with_ratio(grid_base, r))
                h = per_image_h(s)
                ci = bootstrap_mean(h, n_boot=args.n_boot, seed=args.seed)
                # grid_base is the reference ratio's parameter set: ref_h is its score
                d = paired_bootstrap_diff(h, ref_h, n_boot=args.n_boot, seed=args.seed)
                grid_rows.append({"ratio": r, "hmean": s.hmean, "hmean_ci": [ci.low, ci.high],
                                  "diff": d.estimate, "diff_ci": [d.low, d.high]})
        engine.close()
    seconds = time.perf_counter() - t_start

    best_grid = max(grid_rows, key=lambda g: g["hmean"]) if grid_rows else None
    result = {"images": n, "mode": args.mode, "against": against,
              "tune_thresh": bool(args.tune_thresh), "base_params": base.to_dict(),
              "n_boot": args.n_boot, "seed": args.seed, "ratios": rows, "grid": grid_rows,
              "grid_params": {"thresh": grid_base.thresh, "box_thresh": grid_base.box_thresh},
              "seconds": seconds, "source": args.cache or args.maps}
    write_outputs(out, result, args.title or (args.cache or args.maps), best_grid)
    return result


def markdown(result: Dict[str, Any], title: str, best_grid) -> str:
    a = result["against"]
    lines = [f"# Unclip ratio comparison: {title}", "",
             f"{result['images']} images, {result['mode']} mode, CLEval (competition), "
             f"paired bootstrap over images ({result['n_boot']} resamples, seed {result['seed']}); "
             + ("thresh and box_thresh re-tuned per ratio on the same images."
                if result["tune_thresh"] else
                f"thresh {result['base_params']['thresh']:g}, box_thresh "
                f"{result['base_params']['box_thresh']:g} for every ratio."), "",
             f"| ratio | thresh | box_thresh | R | P | H-Mean | H 95% CI | dH vs {a:g} | "
             f"dH 95% CI (paired) | wins / losses / ties |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["ratios"]:
        lines.append(
            f"| {r['ratio']:g} | {r['thresh']:g} | {r['box_thresh']:g} | {r['recall']:.4f} | "
            f"{r['precision']:.4f} | {r['hmean']:.4f} | [{r['hmean_ci'][0]:.4f}, "
            f"{r['hmean_ci'][1]:.4f}] | {r['diff']:+.4f} | [{r['diff_ci'][0]:+.4f}, "
            f"{r['diff_ci'][1]:+.4f}] | {r['wins']} / {r['losses']} / {r['ties']} |")
    if result["grid"]:
        g0 = result["grid"]
        gp = result["grid_params"]
        lines += ["", f"Fine grid ({g0[0]['ratio']:g} .. {g0[-1]['ratio']:g}, {len(g0)} ratios) at "
                      f"thresh {gp['thresh']:g}, box_thresh {gp['box_thresh']:g}: best ratio "
                      f"{best_grid['ratio']:g}, H-Mean {best_grid['hmean']:.4f} "
                      f"(dH vs {a:g} {best_grid['diff']:+.4f}, paired 95% CI "
                      f"[{best_grid['diff_ci'][0]:+.4f}, {best_grid['diff_ci'][1]:+.4f}]). "
                      f"Plot: ratio_grid.png.", "",
                  "| ratio | H-Mean | dH | dH 95% CI |", "|---|---|---|---|"]
        for g in g0:
            lines.append(f"| {g['ratio']:g} | {g['hmean']:.4f} | {g['diff']:+.4f} | "
                         f"[{g['diff_ci'][0]:+.4f}, {g['diff_ci'][1]:+.4f}] |")
    lines += ["", f"{result['seconds']:.0f} s in all."]
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, result: Dict[str, Any], title: str, best_grid) -> None:
    text = markdown(result, title, best_grid)
    (out / "compare_ratios.md").write_text(text, encoding="utf-8")
    (out / "compare_ratios.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    if result["grid"]:
        g = result["grid"]
        marks = ([(r["ratio"], r["hmean"]) for r in result["ratios"]]
                 if result["tune_thresh"] else None)
        gp = result["grid_params"]
        plot_grid(out / "ratio_grid.png", [x["ratio"] for x in g], [x["hmean"] for x in g],
                  [x["hmean_ci"][0] for x in g], [x["hmean_ci"][1] for x in g],
                  [x["diff"] for x in g], [x["diff_ci"][0] for x in g],
                  [x["diff_ci"][1] for x in g], result["against"],
                  f"{title}\n{result['images']} images, grid at thresh {gp['thresh']:g}, "
                  f"box_thresh {gp['box_thresh']:g}", marks)
    print(text)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--cache", help="map cache folder (with ground truth)")
    src.add_argument("--from-json", help="redraw the report and plot of a saved "
                                         "compare_ratios.json (no scoring)")
    src.add_argument("--maps", help="folder of .npz maps with gt.json (imported to a temp cache)")
    ap.add_argument("--gt", help="with --maps: ground truth to use instead of its gt.json "
                                 "(txt folder, zip or UFO JSON)")
    ap.add_argument("--ratios", nargs="+", type=float, default=[1.85, 2.0, 2.15])
    ap.add_argument("--against", type=float, default=2.0, help="reference ratio (default 2.0)")
    ap.add_argument("--mode", choices=["polygon", "box"], default="polygon")
    ap.add_argument("--params", help="parameter file (best.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--tune-thresh", action="store_true",
                    help="re-optimise thresh and box_thresh for every ratio (grid search)")
    ap.add_argument("--thresh-grid", default="0.10:0.40:0.02")
    ap.add_argument("--box-grid", default="0.30:0.80:0.05")
    ap.add_argument("--grid", default="1.2:2.6:0.05", help="fine ratio grid LOW:HIGH:STEP")
    ap.add_argument("--no-grid", action="store_true", help="skip the fine grid and its plot")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="threads over images")
    ap.add_argument("--title", help="title of the report (default: the source path)")
    ap.add_argument("--out", default="benchmarks/results/compare_ratios", help="output folder")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
        grid = result["grid"]
        best = max(grid, key=lambda g: g["hmean"]) if grid else None
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_outputs(out, result, args.title or result.get("source", ""), best)
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
