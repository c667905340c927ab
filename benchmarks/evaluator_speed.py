"""Milliseconds per page of the competition CLEval: fast path, plain reference, the baseline.

All three score the same seeded receipt-scale synthetic pages (about 120 GT words and 120
DB-like detections of 20-40 vertices per page, see ``tests/data/cleval/make_cases.py``)
on one core::

    python benchmarks/evaluator_speed.py                      # fast vs plain reference
    python benchmarks/evaluator_speed.py --baseline ~/ocr/baseline_code \\
        --baseline-python ~/venvs/pinned/bin/python           # + the baseline's CLEvalMetric

The baseline runs in a subprocess with ``--baseline-python`` (default: this interpreter),
which must be able to import its ``ocr.metrics`` (Polygon3, torch, torchmetrics). Without
``--baseline`` the plain reference stands in for it and the output says so. The per-image
H-Means of the three are compared as well.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from unclip_tuner.io.types import Dataset, ImageWords  # noqa: E402
from unclip_tuner.metrics import cleval as fast  # noqa: E402
from unclip_tuner.metrics import cleval_reference as ref  # noqa: E402

# Runs inside the baseline's environment: its own per-image loop (ocr_pl), timed.
BASELINE_SCRIPT = r"""
import contextlib, io, json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
try:
    import Polygon, ctypes, Polygon.cPolygon as _cp   # keep Polygon3 alive at exit (py3.11)
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(_cp.withNumPy))
except Exception:
    pass
import torch
torch.set_num_threads(1)                                 # one core, like the others
from ocr.metrics import CLEvalMetric
pages = json.load(open(sys.argv[2]))["images"]
metric = CLEvalMetric()
hmeans, seconds, cpu = [], 0.0, 0.0
for page in pages:
    gt = [np.array([np.round(p)], dtype=np.int32) for p in page["gt"] if len(p)]
    gt_quads = [item.squeeze().reshape(-1) for item in gt]
    det_quads = [[c for pt in poly for c in pt] for poly in page["det"]]
    t0, c0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        metric(det_quads, gt_quads)
        h = float(metric.compute()["det_h"])
        metric.reset()
    seconds += time.perf_counter() - t0
    cpu += time.process_time() - c0
    hmeans.append(h)
json.dump({"seconds": seconds, "cpu": cpu, "hmeans": hmeans}, open(sys.argv[3], "w"))
"""


def _generator():
    path = REPO / "tests" / "data" / "cleval" / "make_cases.py"
    spec = importlib.util.spec_from_file_location("cleval_make_cases", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_pages(n: int, words: int, seed: int, mix: str):
    gen = _generator()
    rng = np.random.default_rng(seed)
    outcomes = gen.REALISTIC if mix == "realistic" else gen.HARSH
    fp_rate = 0.02 if mix == "realistic" else 0.06
    pages = []
    for k in range(n):
        page = gen.receipt_page(rng, words, rotate=0.01 if k % 2 else 0.0, mix=outcomes,
                                fp_rate=fp_rate)
        page["name"] = f"page_{k:03d}"
        pages.append(page)
    return pages


REAL_SETS = {"sroie_poly": ("sroie_dev_ppocr_poly", "sroie_dev/gt"),
             "sroie_box": ("sroie_dev_ppocr_box", "sroie_dev/gt"),
             "icdar15_poly": ("icdar2015_ppocr_poly", "icdar2015_test/gt")}


def real_pages(name: str):
    """Real PP-OCRv4 detections (tests/data/real) with the GT of ../shared/data."""
    from unclip_tuner.io import align, read_dataset

    det_file, gt_dir = REAL_SETS[name]
    shared = REPO.parent / "shared" / "data" / gt_dir
    det_path = REPO / "tests" / "data" / "real" / f"{det_file}.json"
    if not shared.is_dir() or not det_path.is_file():
        raise SystemExit(f"--real {name} needs {shared} and {det_path}")
    gt = read_dataset(shared)
    det = read_dataset(det_path)
    _, pairs = align(gt, det)
    return [{"name": g, "gt": [q.tolist() for q in gt[g].polygons], "dont_care": None,
             "det": [[[int(v) for v in pt] for pt in q] for q in det[p].polygons]}
            for g, p in pairs]


def _clock():
    return time.perf_counter(), time.process_time()


def _since(start):
    wall, cpu = start
    return time.perf_counter() - wall, time.process_time() - cpu


def time_fast(pages, repeats: int):
    """Best of ``repeats`` (wall, cpu) seconds per page, GT preparation per page, H values."""
    gt = Dataset((p["name"], ImageWords(p["gt"])) for p in pages)
    fast.CLEvalScorer(Dataset([next(iter(gt.items()))]))    # load the compiled kernels
    start = _clock()
    scorer = fast.CLEvalScorer(gt)
    prep = _since(start)[1]
    dets = [(p["name"], fast.pack_polygons(ImageWords(p["det"]))) for p in pages]
    scorer.score_packed(dets[0][0], *dets[0][1])
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        scorer._fp_cache.clear()                         # no help from earlier repeats
        start = _clock()
        scores = [scorer.score_packed(name, *packed) for name, packed in dets]
        best = min(best, _since(start), key=lambda t: t[1])
    n = len(pages)
    return (best[0] / n, best[1] / n), prep / n, [s.hmean for s in scores]


def time_reference(pages):
    start = _clock()
    scores = [ref.cleval_image(ImageWords(p["gt"]), ImageWords(p["det"])) for p in pages]
    wall, cpu = _since(start)
    return (wall / len(pages), cpu / len(pages)), [s.hmean for s in scores]


def time_baseline(pages, baseline: str, python: str):
    with tempfile.TemporaryDirectory() as tmp:
        cases = os.path.join(tmp, "pages.json")
        out = os.path.join(tmp, "out.json")
        script = os.path.join(tmp, "run_baseline.py")
        with open(cases, "w") as f:
            json.dump({"images": pages}, f)
        with open(script, "w") as f:
            f.write(BASELINE_SCRIPT)
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   MKL_NUM_THREADS="1")
        proc = subprocess.run([python, script, baseline, cases, out], capture_output=True,
                              text=True, env=env)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            raise SystemExit(f"the baseline run failed: {tail[0]}")
        with open(out) as f:
            res = json.load(f)
    return (res["seconds"] / len(pages), res["cpu"] / len(pages)), res["hmeans"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=20, help="pages for the fast path")
    ap.add_argument("--slow-pages", type=int, default=3,
                    help="pages for the plain reference and the baseline (they are slow)")
    ap.add_argument("--words", type=int, default=120, help="GT words per page")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mix", choices=("realistic", "harsh"), default="realistic",
                    help="synthetic detections: close to a trained detector, or many splits, "
                         "merges, misses and loose boxes (the test vectors' mix)")
    ap.add_argument("--real", choices=sorted(REAL_SETS),
                    help="time real PP-OCRv4 detections instead of synthetic pages")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline", help="folder of the public baseline (holds ocr/metrics)")
    ap.add_argument("--baseline-python", default=sys.executable,
                    help="interpreter that can import the baseline (Polygon3, torch)")
    args = ap.parse_args()

    if args.real:
        pages = real_pages(args.real)[:max(args.pages, args.slow_pages)]
    else:
        pages = make_pages(max(args.pages, args.slow_pages), args.words, args.seed, args.mix)
    slow = pages[:args.slow_pages]
    n_gt = np.mean([len(p["gt"]) for p in pages])
    n_det = np.mean([len(p["det"]) for p in pages])
    n_vert = np.mean([len(d) for p in pages for d in p["det"]])
    kind = f"real {args.real}" if args.real else f"synthetic ({args.mix})"
    print(f"{kind} pages: {len(pages)} (slow paths: {len(slow)}), {n_gt:.0f} GT words and "
          f"{n_det:.0f} detections per page, {n_vert:.1f} vertices per detection")

    fast_s, prep_s, fast_h = time_fast(pages[:args.pages], args.repeats)
    fast_slow_h = fast_h[:len(slow)]
    ref_s, ref_h = time_reference(slow)
    rows = [("fast (numba)", fast_s), ("plain reference", ref_s)]
    if args.baseline:
        base_s, base_h = time_baseline(slow, args.baseline, args.baseline_python)
        rows.append(("baseline CLEvalMetric", base_s))
        against, against_name = base_s, "baseline"
        same = sum(a == b for a, b in zip(fast_slow_h, base_h))
        print(f"per-image H identical to the baseline: {same}/{len(slow)}")
    else:
        against, against_name = ref_s, "plain reference (standing in for the baseline)"
        print("no --baseline given: the plain reference stands in for the baseline")
    same = sum(a == b for a, b in zip(fast_slow_h, ref_h))
    print(f"per-image H identical fast vs plain reference: {same}/{len(slow)}")
    print(f"fast path GT preparation (once per data set): {prep_s * 1e3:.3f} ms/page (CPU)")
    print("ms/page; CPU = process time (the honest single-core figure on a busy machine)")
    print(f"{'engine':<24}{'wall':>10}{'CPU':>10}{'CPU vs fast':>14}")
    for name, (wall, cpu) in rows:
        print(f"{name:<24}{wall * 1e3:>10.3f}{cpu * 1e3:>10.3f}{cpu / fast_s[1]:>13.1f}x")
    print(f"speed-up of the fast path over the {against_name}: {against[1] / fast_s[1]:.0f}x (CPU)")


if __name__ == "__main__":
    main()
