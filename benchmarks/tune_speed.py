"""How long the default ``tune-post --trials 300`` takes on a receipt-scale cache.

The cache (404 synthetic receipt pages, 1024 x 1024 float32 maps, about 115 words each, the
competition's validation-set size) is built once into ``benchmarks/_work/`` (git-ignored,
about 1.7 GB). Then tune-post runs as a user runs it, in a child process, report included,
from an empty study; its wall time and peak resident memory (``getrusage`` of the child)
are printed beside the reference engine's time for a sample of the same trials (the plain
decoder and the plain CLEval; extrapolated to 300 trials), with the H-Mean of both engines
on those trials (they must be equal).

Usage::

    python benchmarks/tune_speed.py                   # build if needed, run, compare
    python benchmarks/tune_speed.py --ref-trials 3 --ref-images 404
    python benchmarks/tune_speed.py --images 100 --trials 100   # a smaller run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "_work"
CURRENT = {"thresh": 0.3, "box_thresh": 0.4, "max_candidates": 500, "use_polygon": True,
           "box_unclip_ratio": 1.5, "polygon_unclip_ratio": 2.0}


def build_cache(path: Path, n_images: int, seed: int) -> Path:
    """Write the synthetic cache unless a complete one with the same recipe is there."""
    sys.path.insert(0, str(REPO))
    from unclip_tuner.cache import MapCache, MapRecord
    from unclip_tuner.io.types import Dataset, ImageWords
    from unclip_tuner.synthetic import synthetic_page

    recipe = {"generator": "unclip_tuner.synthetic.synthetic_page", "size": 1024,
              "n_words": 115, "n_images": n_images, "seed": seed, "gt_unclip": 1.8}
    try:
        cache = MapCache.open(path, verify="none")
        if cache.fingerprint_parts == recipe and len(cache) == n_images:
            return path
    except Exception:
        pass
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    gt = {}
    meta = {"params": CURRENT, "target": "karmakaryx"}
    # maps are written as they are made (memory stays small); the ground truth is added by
    # reopening the cache with the same recipe once every page exists
    with MapCache.create(path, recipe, meta=meta, overwrite=True, fsync=False) as writer:
        for i in range(n_images):
            height = int(rng.integers(900, 2000))
            width = int(height * rng.uniform(0.45, 1.1))
            prob, polys, matrix = synthetic_page(rng, size=1024, n_words=115,
                                                 image_size=(width, height), gt_unclip=1.8)
            name = f"receipt_{i:03d}.jpg"
            writer.add(MapRecord(name, prob, matrix, width, height))
            gt[name] = ImageWords([np.round(p @ matrix[:2, :2].T + matrix[:2, 2]) for p in polys])
    MapCache.create(path, recipe, meta=meta, gt=Dataset(gt), fsync=False).close()
    print(f"built {path} ({n_images} maps) in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def run_tune(cache: Path, trials: int, jobs: int, extra) -> dict:
    """Run tune-post in a child process from an empty study; wall time and peak RSS."""
    for j in cache.glob("tune-*.journal"):
        j.unlink()
    shutil.rmtree(cache / "tune", ignore_errors=True)
    cmd = [sys.executable, "-m", "unclip_tuner", "tune-post", "--cache", str(cache),
           "--trials", str(trials), "--no-progress", "--jobs", str(jobs), *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    # the child's own resource usage (ru_maxrss in KiB on Linux)
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"tune-post failed ({proc.returncode}):\n{err.decode()}")
    out_dir = sorted((cache / "tune").iterdir())[0]
    return {"wall_s": wall, "peak_rss_mb": ru.ru_maxrss / 1024, "cpu_s": ru.ru_utime + ru.ru_stime,
            "out_dir": out_dir, "stderr": err.decode(), "stdout": out.decode()}


def reference_sample(cache: Path, out_dir: Path, n_trials: int, n_images: int, jobs: int) -> dict:
    """Time the reference engine on ``n_trials`` of the study's trials (first, best, spread)."""
    import polars as pl

    from unclip_tuner.cache import MapCache
    from unclip_tuner.postprocess.engine import ReferenceEngine
    from unclip_tuner.postprocess.params import PostProcessParams

    df = pl.read_parquet(out_dir / "trials.parquet").filter(pl.col("state") == "COMPLETE")
    picks = [0, int(df["hmean"].arg_max())]
    picks += [int(i) for i in np.linspace(1, df.height - 1, max(n_trials, 2))[1:-1]]
    picks = list(dict.fromkeys(picks))[:n_trials]
    store = MapCache.open(cache, verify="none")
    names = store.names()[:n_images]
    fields = ["thresh", "box_thresh", "max_candidates", "use_polygon", "box_unclip_ratio",
              "polygon_unclip_ratio", "min_size", "use_dilation", "score_mode"]
    rows = []
    with ReferenceEngine(store, jobs=jobs) as ref:
        for i in picks:
            row = df.row(i, named=True)
            params = PostProcessParams.from_dict({k: row[k] for k in fields})
            t0 = time.perf_counter()
            score = ref.evaluate(params, images=names)
            rows.append({"trial": row["number"], "seconds": time.perf_counter() - t0,
                         "ref_hmean": score.hmean,
                         "fast_hmean": row["hmean"] if n_images == len(store) else None})
            print(f"  reference trial {row['number']}: {rows[-1]['seconds']:.1f} s, "
                  f"H {score.hmean:.6f}" + (f" (fast {row['hmean']:.6f})"
                                             if rows[-1]["fast_hmean"] is not None else ""),
                  flush=True)
    per_trial = float(np.mean([r["seconds"] for r in rows])) * len(store) / len(names)
    return {"rows": rows, "per_trial_s": per_trial, "images": len(names)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=404)
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ref-trials", type=int, default=3, help="reference trials timed (0: none)")
    ap.add_argument("--ref-images", type=int, default=404,
                    help="images per reference trial (extrapolated to all)")
    ap.add_argument("--cache", type=Path, help="cache folder (default benchmarks/_work/...)")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()

    cache = args.cache or WORK / f"receipts_{args.images}_seed{args.seed}"
    cache.parent.mkdir(parents=True, exist_ok=True)
    build_cache(cache, args.images, args.seed)

    print(f"tune-post --trials {args.trials} --jobs {args.jobs} on {args.images} maps ...",
          flush=True)
    r = run_tune(cache, args.trials, args.jobs, [])
    summary = json.loads((r["out_dir"] / "summary.json").read_text())
    print(f"  wall {r['wall_s']:.1f} s, cpu {r['cpu_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB, "
          f"best H {summary['best']['hmean']:.4f} vs first {summary['first']['hmean']:.4f}")
    result = {"images": args.images, "trials": args.trials, "jobs": args.jobs,
              "wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "peak_rss_mb": r["peak_rss_mb"],
              "best_hmean": summary["best"]["hmean"], "first_hmean": summary["first"]["hmean"],
              "goal": {"wall_s": 60, "peak_rss_mb": 2048}}
    if args.ref_trials > 0:
        print(f"reference engine: {args.ref_trials} trial(s) on {min(args.ref_images, args.images)} "
              f"images ...", flush=True)
        ref = reference_sample(cache, r["out_dir"], args.ref_trials,
                               min(args.ref_images, args.images), args.jobs)
        total = ref["per_trial_s"] * args.trials
        result.update({"reference_per_trial_s": ref["per_trial_s"],
                       "reference_total_s": total, "speedup": total / r["wall_s"],
                       "reference_rows": ref["rows"]})
        print(f"  reference {ref['per_trial_s']:.1f} s per trial -> {total / 3600:.2f} h for "
              f"{args.trials} trials; tune-post {r['wall_s']:.1f} s: {total / r['wall_s']:.0f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "reference_rows"}, indent=2))


if __name__ == "__main__":
    main()
