"""Seconds per tuning trial: the seed's stack against the fast engine, side by side.

One run, one report. For each data set the same trials are run by

* the **seed's stack**: the baseline's own ``DBPostProcessor`` (juny79 HEAD, one
  ``unclip_ratio``) and its ``CLEvalMetric``, image by image, in a subprocess with the
  baseline's pinned interpreter (``--baseline DIR --baseline-python PY``); without
  ``--baseline`` our plain :class:`~unclip_tuner.postprocess.engine.ReferenceEngine`
  stands in for it and the report says so;
* our :class:`~unclip_tuner.postprocess.engine.FastEngine` (one thread unless ``--jobs``).

The trials follow what a search does to the fast engine's memo:

1. ``cold thresh``: a threshold never seen (bitmaps, contours, scores, unclip, metric);
2. ``new ratio, seen thresh``: another unclip ratio at that threshold (unclip, metric);
3. ``new box_thresh only``: another box threshold (a filter, then the metric where the
   kept set changed).

The seed's stack pays the same for every trial. It runs on the first ``--slow-images``
images (it is slow); its per-image cost is multiplied by the set size for the per-trial
figure (marked "extrapolated"), and its per-image H-Means are compared with the fast
engine's on those images. Data sets: the synthetic receipt-scale set (``--n-images`` pages
of 1024 x 1024 with about 115 words, default 404 like the competition's validation split)
and, with ``--real-maps DIR`` (repeatable), folders of real ``.npz`` maps with ``gt.json``.

Example::

    python benchmarks/speed.py --baseline ../baseline/baseline_code \\
        --baseline-python ../refenv/bin/python --real-maps ../realmaps/sroie_dev \\
        --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from unclip_tuner.cache.base import InMemoryMapStore, MapRecord  # noqa: E402
from unclip_tuner.io.types import Dataset, ImageWords  # noqa: E402
from unclip_tuner.postprocess.params import PostProcessParams  # noqa: E402

#: The competition's configuration, polygon mode, ratio 2.0: the first trial.
BASE = PostProcessParams(thresh=0.3, box_thresh=0.4, max_candidates=500, use_polygon=True,
                         box_unclip_ratio=2.0, polygon_unclip_ratio=2.0)
TRIALS: List[Tuple[str, PostProcessParams]] = [
    ("cold thresh", BASE),
    ("new ratio, seen thresh", BASE.replace(polygon_unclip_ratio=1.85, box_unclip_ratio=1.85)),
    ("new box_thresh only", BASE.replace(polygon_unclip_ratio=1.85, box_unclip_ratio=1.85,
                                         box_thresh=0.5)),
]

# Runs inside the baseline's environment: its decoder and metric, image by image, timed.
BASELINE_SCRIPT = r"""
import contextlib, importlib.machinery, importlib.util, io, json, sys, time
baseline, data_dir, out_path = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, baseline)
import numpy as np
import torch
try:
    import Polygon, ctypes, Polygon.cPolygon as _cp   # keep Polygon3 alive at exit (py3.11)
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(_cp.withNumPy))
except Exception:
    pass
torch.set_num_threads(1)
loader = importlib.machinery.SourceFileLoader(
    "seed_db_postprocess", baseline + "/ocr/models/head/db_postprocess.py")
spec = importlib.util.spec_from_loader("seed_db_postprocess", loader)
mod = importlib.util.module_from_spec(spec)
loader.exec_module(mod)
from ocr.metrics import CLEvalMetric
job = json.load(open(data_dir + "/job.json"))
maps = []
for item in job["images"]:
    z = np.load(data_dir + "/" + item["file"])
    maps.append((torch.from_numpy(z["prob"])[None, None], z["matrix"]))
metric = CLEvalMetric()


def score(item, boxes):
    det_quads = [[p for c in poly for p in c] for poly in boxes]
    gt = [np.array([np.round(np.asarray(g, dtype=np.float64))], dtype=np.int32)
          for g in item["gt"]]
    gt_quads = [g.squeeze().reshape(-1) for g in gt]
    with contextlib.redirect_stdout(io.StringIO()):
        if any(item["dc"]):
            metric(det_quads, gt_quads, gt_is_dcs=item["dc"])
        else:
            metric(det_quads, gt_quads)
        h = float(metric.compute()["det_h"])
        metric.reset()
    return h


def make(trial):
    return mod.DBPostProcessor(thresh=trial["thresh"], box_thresh=trial["box_thresh"],
                               max_candidates=trial["max_candidates"],
                               use_polygon=trial["use_polygon"],
                               unclip_ratio=trial["unclip_ratio"])


# warm-up (imports, numba compilation inside the metric), not timed
pred, matrix = maps[0]
batch = {"images": torch.zeros((1, 3, 1, 1)), "inverse_matrix": [matrix]}
score(job["images"][0], make(job["trials"][0]).represent(batch, {"prob_maps": pred})[0][0])
results = []
for trial in job["trials"]:
    pp = make(trial)
    t_dec = t_met = 0.0
    hmeans = []
    for item, (pred, matrix) in zip(job["images"], maps):
        batch = {"images": torch.zeros((1, 3, 1, 1)), "inverse_matrix": [matrix]}
        t0 = time.perf_counter()
        boxes, _ = pp.represent(batch, {"prob_maps": pred})
        t1 = time.perf_counter()
        h = score(item, boxes[0])
        t2 = time.perf_counter()
        t_dec += t1 - t0
        t_met += t2 - t1
        hmeans.append(h)
    results.append({"decode": t_dec, "metric": t_met, "hmeans": hmeans})
json.dump(results, open(out_path, "w"))
"""


# ------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------
def synthetic_store(n: int, seed: int = 0, size: int = 1024, words: int = 115) -> InMemoryMapStore:
    """``n`` seeded receipt-scale pages in memory, ground truth in image coordinates."""
    from unclip_tuner.synthetic import synthetic_page

    rng = np.random.default_rng(seed)
    records, gt = [], Dataset()
    for i in range(n):
        height = int(rng.integers(900, 2000))
        width = int(height * rng.uniform(0.45, 1.1))
        prob, polys, m = synthetic_page(rng, size=size, n_words=words, image_size=(width, height))
        name = f"synth_{i:04d}.jpg"
        records.append(MapRecord(name, prob, m, width, height))
        gt[name] = ImageWords([(np.c_[p, np.ones(len(p))] @ m.T)[:, :2] for p in polys])
    return InMemoryMapStore(records, gt, meta={"source": f"synthetic seed {seed}"})


def real_store(folder: Path, limit: Optional[int] = None) -> InMemoryMapStore:
    """A folder of ``.npz`` maps with ``gt.json`` (scripts/make_real_maps.py), in memory."""
    from compare_ratios import load_gt

    from unclip_tuner.cache.importers import read_map_file

    gt_path = folder / "gt.json"
    if not gt_path.is_file():
        raise SystemExit(f"error: {folder}: no gt.json beside the maps")
    gt = load_gt(gt_path)
    by_name = {}
    clipped = 0
    for f in sorted(folder.glob("*.npz")):
        with np.load(f, allow_pickle=False) as z:
            prob = z["prob"]
        lo, hi = float(prob.min()), float(prob.max())
        if (lo < 0 or hi > 1) and lo >= -1e-6 and hi <= 1 + 1e-6:
            # float rounding of an ONNX sigmoid (1.0000001 on a few pixels): clip it
            with np.load(f, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            name = str(arrays["filename"]) if "filename" in arrays else f.stem
            rec = MapRecord(name, np.clip(arrays["prob"], 0, 1).astype(np.float32),
                            arrays["inverse_matrix"], int(arrays["width"]), int(arrays["height"]))
            clipped += 1
        else:
            rec = read_map_file(f)
        by_name[rec.name] = rec
    if clipped:
        print(f"note: {folder}: {clipped} map(s) with values at most 1e-6 above 1 were clipped",
              flush=True)
    names = [n for n in gt.keys() if n in by_name]
    if limit:
        names = names[:limit]
    if not names:
        raise SystemExit(f"error: {folder}: no map matches an image of gt.json")
    sub = Dataset((n, gt[n]) for n in names)
    return InMemoryMapStore([by_name[n] for n in names], sub, meta={"source": str(folder)})


def describe(store) -> str:
    n = len(store)
    words = store.gt.n_words() / max(n, 1)
    shapes = {tuple(store.get(x).prob.shape) for x in store.names()}
    shape = "x".join(map(str, next(iter(shapes)))) if len(shapes) == 1 else "mixed"
    return f"{n} maps {shape}, {words:.0f} GT words per image"


# ------------------------------------------------------------------------------------
# Runners
# ------------------------------------------------------------------------------------
def warm_up(jobs: int) -> float:
    """Load (or compile) every kernel once on a small page, outside the timings."""
    from unclip_tuner.postprocess.engine import FastEngine

    t0 = time.perf_counter()
    store = synthetic_store(1, seed=12345, size=256, words=20)
    with FastEngine(store, jobs=jobs) as eng:
        for _, p in TRIALS:
            eng.evaluate(p)
            eng.evaluate(p.replace(use_polygon=False))
    return time.perf_counter() - t0


def run_fast(store, jobs: int) -> Dict[str, Any]:
    from unclip_tuner.postprocess.engine import FastEngine

    t0 = time.perf_counter()
    eng = FastEngine(store, metric="cleval", jobs=jobs)
    setup = time.perf_counter() - t0
    trials = []
    with eng:
        for label, p in TRIALS:
            t0 = time.perf_counter()
            s = eng.evaluate(p)
            trials.append({"label": label, "seconds": time.perf_counter() - t0, "hmean": s.hmean,
                           "per_image": [x.hmean for x in s.per_image]})
    return {"setup": setup, "trials": trials}


def run_reference(store, names: List[str]) -> Dict[str, Any]:
    from unclip_tuner.postprocess.engine import ReferenceEngine

    eng = ReferenceEngine(store, metric="cleval")
    trials = []
    for label, p in TRIALS:
        t0 = time.perf_counter()
        s = eng.evaluate(p, images=names)
        trials.append({"label": label, "seconds": time.perf_counter() - t0,
                       "per_image": [x.hmean for x in s.per_image]})
    return {"name": "our plain ReferenceEngine (standing in for the seed's stack)",
            "trials": trials}


def run_baseline(store, names: List[str], baseline: str, python: str) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="speed_baseline_") as tmp:
        items = []
        for i, n in enumerate(names):
            rec = store.get(n)
            f = f"m{i:05d}.npz"
            np.savez(os.path.join(tmp, f), prob=np.ascontiguousarray(rec.prob, dtype=np.float32),
                     matrix=np.asarray(rec.inverse_matrix, dtype=np.float64))
            words = store.gt[n]
            items.append({"file": f, "gt": [p.tolist() for p in words.polygons],
                          "dc": [bool(x) for x in words.dont_care_flags]})
        trials = [{"thresh": p.thresh, "box_thresh": p.box_thresh,
                   "max_candidates": p.max_candidates, "use_polygon": p.use_polygon,
                   "unclip_ratio": p.unclip_ratio} for _, p in TRIALS]
        with open(os.path.join(tmp, "job.json"), "w") as fh:
            json.dump({"images": items, "trials": trials}, fh)
        script = os.path.join(tmp, "run_baseline.py")
        with open(script, "w") as fh:
            fh.write(BASELINE_SCRIPT)
        out = os.path.join(tmp, "out.json")
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        proc = subprocess.run([python, script, baseline, tmp, out], capture_output=True,
                              text=True, env=env)
        if proc.returncode != 0 or not os.path.exists(out):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            raise SystemExit(f"error: the baseline run failed: {tail[0]}")
        with open(out) as fh:
            res = json.load(fh)
    trials = [{"label": label, "seconds": r["decode"] + r["metric"], "decode": r["decode"],
               "metric": r["metric"], "per_image": r["hmeans"]}
              for (label, _), r in zip(TRIALS, res)]
    return {"name": "seed's DBPostProcessor + baseline CLEvalMetric (pinned env)",
            "trials": trials}


def bench(label: str, store, args) -> Dict[str, Any]:
    names = store.names()
    k = len(names) if args.slow_images <= 0 else min(args.slow_images, len(names))
    slow_names = names[:k]
    print(f"[{label}] {describe(store)}; seed's stack on {k} image(s)", flush=True)
    fast = run_fast(store, args.jobs)
    if args.baseline:
        slow = run_baseline(store, slow_names, args.baseline, args.baseline_python)
    else:
        slow = run_reference(store, slow_names)
    n = len(names)
    rows = []
    for f, s in zip(fast["trials"], slow["trials"]):
        per_img_slow = s["seconds"] / k
        fast_sub = f["per_image"][:k]
        same = sum(a == b for a, b in zip(fast_sub, s["per_image"]))
        max_abs = max((abs(a - b) for a, b in zip(fast_sub, s["per_image"])), default=0.0)
        rows.append({
            "trial": f["label"], "slow_ms_per_image": per_img_slow * 1e3,
            "slow_decode_ms": s.get("decode", float("nan")) / k * 1e3,
            "slow_metric_ms": s.get("metric", float("nan")) / k * 1e3,
            "slow_trial_s": per_img_slow * n, "slow_extrapolated": k < n,
            "fast_trial_s": f["seconds"], "fast_ms_per_image": f["seconds"] / n * 1e3,
            "speedup": per_img_slow * n / f["seconds"] if f["seconds"] > 0 else float("inf"),
            "identical_h": same, "compared": k, "max_abs_h_diff": max_abs,
            "fast_hmean": f["hmean"],
        })
    return {"dataset": label, "description": describe(store), "images": n, "slow_images": k,
            "slow_name": slow["name"], "fast_setup_s": fast["setup"], "rows": rows}


def markdown(results: List[Dict[str, Any]], meta: Dict[str, Any]) -> str:
    lines = ["# Seconds per tuning trial: the seed's stack vs the fast engine", "",
             f"Machine: {meta['machine']}; fast engine with {meta['jobs']} thread(s); kernel "
             f"warm-up (load/compile, once per process) {meta['warmup_s']:.1f} s, not counted.",
             "Trials: polygon mode, thresh 0.3, box_thresh 0.4, max_candidates 500; "
             "ratio 2.0 -> 1.85 -> box_thresh 0.5.", ""]
    for r in results:
        ext = " (extrapolated from the first %d images)" % r["slow_images"] \
            if r["slow_images"] < r["images"] else ""
        lines += [f"## {r['dataset']}: {r['description']}", "",
                  f"Slow side: {r['slow_name']}{ext}. Fast engine setup (GT preparation) "
                  f"{r['fast_setup_s']:.2f} s once per set.", "",
                  "| trial | seed decode ms/img | seed metric ms/img | seed s/trial | "
                  "fast s/trial | fast ms/img | speed-up | per-image H identical |",
                  "|---|---|---|---|---|---|---|---|"]
        for x in r["rows"]:
            dec = "-" if x["slow_decode_ms"] != x["slow_decode_ms"] else f"{x['slow_decode_ms']:.1f}"
            met = "-" if x["slow_metric_ms"] != x["slow_metric_ms"] else f"{x['slow_metric_ms']:.1f}"
            lines.append(f"| {x['trial']} | {dec} | {met} | {x['slow_trial_s']:.1f} | "
                         f"{x['fast_trial_s']:.2f} | {x['fast_ms_per_image']:.2f} | "
                         f"{x['speedup']:.0f}x | {x['identical_h']}/{x['compared']} |")
        lines.append("")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-images", type=int, default=404,
                    help="synthetic receipt-scale pages (0: none; default 404)")
    ap.add_argument("--size", type=int, default=1024, help="synthetic map size (default 1024)")
    ap.add_argument("--words", type=int, default=115, help="words per synthetic page")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real-maps", action="append", default=[], type=Path,
                    help="folder of real .npz maps with gt.json (repeatable)")
    ap.add_argument("--real-limit", type=int, help="only the first N images of each real set")
    ap.add_argument("--slow-images", type=int, default=40,
                    help="images the seed's stack runs on (0: all; default 40)")
    ap.add_argument("--baseline", help="folder of the public baseline (ocr/ inside)")
    ap.add_argument("--baseline-python", default=sys.executable,
                    help="interpreter with the baseline's pinned dependencies")
    ap.add_argument("--jobs", type=int, default=1, help="fast engine threads (default 1)")
    ap.add_argument("--out", help="folder for speed.md and speed.json")
    args = ap.parse_args(argv)
    if args.n_images < 0:
        ap.error("--n-images must be >= 0")
    if args.n_images == 0 and not args.real_maps:
        ap.error("nothing to run: --n-images 0 and no --real-maps")
    if args.baseline and not (Path(args.baseline) / "ocr").is_dir():
        ap.error(f"--baseline {args.baseline}: no ocr/ folder inside")
    return args


def main(argv=None) -> int:
    import platform

    args = parse_args(argv)
    warm = warm_up(args.jobs)
    results = []
    if args.n_images:
        t0 = time.perf_counter()
        store = synthetic_store(args.n_images, args.seed, args.size, args.words)
        print(f"synthetic set generated in {time.perf_counter() - t0:.1f} s", flush=True)
        results.append(bench("synthetic receipt-scale", store, args))
        del store
    for folder in args.real_maps:
        store = real_store(folder, args.real_limit)
        results.append(bench(f"real maps {folder.name}", store, args))
        del store
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                       f"{platform.python_version()}", "jobs": args.jobs, "warmup_s": warm,
            "baseline": bool(args.baseline)}
    text = markdown(results, meta)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "speed.md").write_text(text + "\n", encoding="utf-8")
        (out / "speed.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2),
                                        encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
