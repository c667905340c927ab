"""First trial vs tuned parameters on real data: PP-OCRv4 maps of SROIE receipts and ICDAR 2015.

For each data set (``sroie_dev``, ``icdar2015_test`` under ``--data``, by default
``../shared/data`` beside the repository):

1. the probability maps of the PP-OCRv4 mobile detector (the ``rapidocr-onnxruntime``
   wheel's ONNX file, ``seed-ppocr`` preprocessing) are cached with ``unclip-tuner
   cache-maps --onnx``, or imported from a folder of ``.npz`` maps given with
   ``--maps-from NAME=DIR`` (``scripts/make_real_maps.py`` output);
2. the post-processing is tuned with ``tune-post`` (or, where this version has no
   ``tune-post`` command, a seeded Optuna loop over the same search space and the fast
   engine), a share of the images held out of the search (``--holdout``);
3. the first trial (the competition configuration: thresh 0.3, box_thresh 0.4,
   max_candidates 500, polygon mode, ratio 2.0) and the tuned parameters are compared on
   the searched and on the held-out images, with a paired bootstrap interval of the
   held-out difference.

With ``--second-maps NAME=DIR`` (maps of the same images from another model, or from the
same model at another input size) the set is also tuned on those maps alone and on their
weighted average with the first maps (``--ensemble-weight``, the first maps' share; maps on
another grid are warped into the first maps' grid), and each tuned variant is compared with
the first maps' tuned parameters on the same held-out images (paired bootstrap).

The result is a Markdown table, ``real_data.md`` (and ``real_data.json``), under ``--out``.
The ground truth comes from the data set's own ``gt/`` folder when it is there (ICDAR's
``###`` words are don't-care); otherwise from ``gt.json`` beside imported maps, where a
``###`` transcription marks a don't-care word as well.

Without the data, or without onnxruntime and the PP-OCRv4 model (and no ``--maps-from``),
the script prints why and exits with status 0.

Example::

    python benchmarks/real_data.py --maps-from sroie_dev=../realmaps/sroie_dev \\
        --maps-from icdar2015_test=../realmaps/icdar2015_test --trials 150
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional


REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))

from compare_ratios import clip_rounding_overshoot, load_gt  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data"
SETS = ("sroie_dev", "icdar2015_test")
#: The first trial: the competition configuration, polygon mode.
FIRST = {"thresh": 0.3, "box_thresh": 0.4, "max_candidates": 500, "use_polygon": True,
         "polygon_unclip_ratio": 2.0, "box_unclip_ratio": 2.0}


def detector_available() -> Optional[str]:
    """``None`` when onnxruntime and the PP-OCRv4 model are there, else the reason."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed"
    try:
        from unclip_tuner.models.onnx_detector import find_ppocr_v4_model

        find_ppocr_v4_model()
    except (FileNotFoundError, ImportError, ValueError) as exc:
        return f"no PP-OCRv4 model ({exc})"
    return None


def import_map_folder(name: str, maps_dir: Path, gt_dir: Path, cache_dir: Path, work: Path,
                      limit: Optional[int]):
    """Import a folder of ``.npz`` maps (GT from ``gt_dir`` when there, else its gt.json)."""
    from unclip_tuner.cache.importers import import_maps
    from unclip_tuner.io.types import Dataset

    if gt_dir.is_dir():
        gt = load_gt(gt_dir)
    elif (maps_dir / "gt.json").is_file():
        gt = load_gt(maps_dir / "gt.json")
    else:
        return None, f"{maps_dir}: no gt.json and no {gt_dir}"
    maps_stems = {p.stem for p in maps_dir.glob("*.npz")}
    # keep the GT images that have a map (a subset of the set may have been run)
    sub = Dataset((k, v) for k, v in gt.items() if Path(k).stem in maps_stems)
    if limit:
        sub = Dataset(list(sub.items())[:limit])
    if not sub:
        return None, f"{maps_dir}: no map matches the ground truth"
    tmp = cache_dir.parent / (cache_dir.name + "_src")
    src, fixed = clip_rounding_overshoot(maps_dir, tmp)
    if fixed:
        print(f"note: {name}: {len(fixed)} map(s) with values at most 1e-6 outside [0, 1] "
              f"(float rounding of the sigmoid) were clipped: {', '.join(fixed)}", flush=True)
    if limit:
        keep = {Path(k).stem for k in sub}
        subset = tmp / "subset"
        subset.mkdir(parents=True, exist_ok=True)
        for p in maps_dir.glob("*.npz"):
            if p.stem in keep and not (subset / p.name).exists():
                (subset / p.name).symlink_to((src / p.name).resolve())
        src = subset
    with warnings_quiet():
        cache = import_maps(src, cache_dir, gt=sub, overwrite=True,
                            meta={"params": dict(FIRST), "target": "karmakaryx"})
    return cache, f"imported {len(cache)} maps from {maps_dir}"


def build_cache(name: str, args, work: Path):
    """The set's cache: imported maps, or PP-OCRv4 run through ``cache-maps --onnx``."""
    from unclip_tuner.cache.store import MapCache

    data = Path(args.data) / name
    cache_dir = work / name / "cache"
    gt_dir = data / "gt"
    maps_dir = args.maps_from.get(name)
    if maps_dir is not None:
        return import_map_folder(name, Path(maps_dir), gt_dir, cache_dir, work, args.limit)
    images = data / "images"
    if not images.is_dir() or not gt_dir.is_dir():
        return None, f"{data}: no images/ and gt/ folders"
    why = detector_available()
    if why is not None:
        return None, why
    from unclip_tuner.cli import main as cli_main
    from unclip_tuner.models.onnx_detector import find_ppocr_v4_model

    argv = ["cache-maps", "--onnx", str(find_ppocr_v4_model()), "--profile", "seed-ppocr",
            "--images", str(images), "--gt", str(gt_dir), "--out", str(cache_dir),
            "--workers", "1", "--no-progress"]
    if args.limit:
        argv += ["--limit", str(args.limit)]
    t0 = time.perf_counter()
    rc = cli_main(argv)
    if rc != 0:
        return None, f"cache-maps failed with status {rc}"
    cache = MapCache.open(cache_dir, verify="none")
    return cache, f"PP-OCRv4 maps of {len(cache)} images in {time.perf_counter() - t0:.0f} s"


@contextlib.contextmanager
def warnings_quiet():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def tune_post_available() -> bool:
    """Whether this version of the package has the ``tune-post`` command."""
    return importlib.util.find_spec("unclip_tuner.commands.tune_post") is not None


def tune_with_cli(cache_dir: Path, out: Path, args) -> Dict[str, Any]:
    """Run ``tune-post`` and read its summary.json."""
    from unclip_tuner.cli import main as cli_main

    argv = ["tune-post", "--cache", str(cache_dir), "--trials", str(args.trials),
            "--holdout", str(args.holdout), "--seed", str(args.seed), "--mode", args.mode,
            "--out", str(out), "--jobs", str(args.jobs), "--no-progress"]
    for spec in args.param:
        argv += ["--param", spec]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli_main(argv)
    if rc != 0:
        raise SystemExit(f"error: tune-post failed with status {rc}")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    ho = summary.get("holdout") or {}
    return {
        "tuner": "tune-post",
        "first_params": summary["first"]["params"], "best_params": summary["best"]["params"],
        "search_images": summary["search_images"],
        "first_search": summary["first"]["hmean"], "best_search": summary["best"]["hmean"],
        "holdout_images": ho.get("images", 0),
        "first_holdout": ho.get("first_hmean"), "best_holdout": ho.get("best_hmean"),
        "holdout_diff": ho.get("best_minus_first"),
        "trials": summary["n_complete"],
    }


def tune_with_optuna(cache, args) -> Dict[str, Any]:
    """A seeded Optuna loop over the default search space (the fallback tuner)."""
    import optuna

    from unclip_tuner.postprocess.engine import FastEngine
    from unclip_tuner.postprocess.params import PostProcessParams
    from unclip_tuner.search.bootstrap import paired_bootstrap_diff
    from unclip_tuner.search.holdout import split_holdout
    from unclip_tuner.search.space import build_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = build_space(args.mode, params=args.param)
    first = PostProcessParams.from_dict(FIRST)
    search, held = split_holdout(cache.names(), args.holdout, seed=args.seed)
    with FastEngine(cache, metric="cleval", jobs=args.jobs) as eng:
        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=args.seed))
        coords, _ = space.indices_of(first)
        study.enqueue_trial(coords)
        params_of = {}

        def objective(trial):
            p = space.params_for(first, space.suggest(trial))
            params_of[trial.number] = p
            return eng.evaluate(p, images=search).hmean

        study.optimize(objective, n_trials=args.trials)
        best_p = params_of[study.best_trial.number]
        first_s = eng.evaluate(first, images=search)
        best_s = eng.evaluate(best_p, images=search)
        out = {"tuner": "optuna TPE over FastEngine (no tune-post command)",
               "first_params": first.to_dict(), "best_params": best_p.to_dict(),
               "search_images": len(search), "first_search": first_s.hmean,
               "best_search": best_s.hmean, "holdout_images": len(held),
               "first_holdout": None, "best_holdout": None, "holdout_diff": None,
               "trials": len(study.trials)}
        if held:
            fh = eng.evaluate(first, images=held)
            bh = eng.evaluate(best_p, images=held)
            d = paired_bootstrap_diff([s.hmean for s in bh.per_image],
                                      [s.hmean for s in fh.per_image], seed=args.seed)
            out.update(first_holdout=fh.hmean, best_holdout=bh.hmean, holdout_diff=d.as_dict())
    return out


def fmt_params(d: Dict[str, Any], mode: str) -> str:
    ratio = d["polygon_unclip_ratio"] if mode == "polygon" else d["box_unclip_ratio"]
    return f"thresh {d['thresh']:g}, box_thresh {d['box_thresh']:g}, ratio {ratio:g}"


def second_variants(name: str, first, args, work: Path) -> List[tuple]:
    """The second map folder of a set, and the weighted average of both (an ensemble)."""
    from unclip_tuner.cache.ensemble import write_ensemble

    maps_dir = Path(args.second_maps[name])
    gt_dir = Path(args.data) / name / "gt"
    second, how = import_map_folder(name, maps_dir, gt_dir, work / name / "cache_second", work,
                                    args.limit)
    if second is None:
        raise SystemExit(f"error: --second-maps {name}: {how}")
    w = float(args.ensemble_weight)
    ens = write_ensemble([first, second], [w, 1.0 - w], work / name / "cache_ensemble",
                         overwrite=True)
    return [(f"{name} [second maps]", second, how),
            (f"{name} [ensemble {w:g}/{1 - w:g}]", ens,
             "weighted average of the first and second maps, aligned to the first's grid")]


def compare_variants(set_rows: List[Dict[str, Any]], args) -> None:
    """Each variant's tuned parameters against the first maps' tuned parameters, on the
    held-out images (paired bootstrap over the same images)."""
    from unclip_tuner.postprocess.engine import FastEngine
    from unclip_tuner.postprocess.params import PostProcessParams
    from unclip_tuner.search.bootstrap import paired_bootstrap_diff
    from unclip_tuner.search.holdout import split_holdout

    def holdout_h(row):
        cache = row["_cache"]
        _, held = split_holdout(cache.names(), args.holdout, seed=args.seed)
        if not held:
            return held, None
        with FastEngine(cache, metric="cleval", jobs=args.jobs) as eng:
            s = eng.evaluate(PostProcessParams.from_dict(row["best_params"]), images=held)
        return held, [x.hmean for x in s.per_image]

    held0, h0 = holdout_h(set_rows[0])
    for r in set_rows[1:]:
        held, h = holdout_h(r)
        if h is None or held != held0:
            continue
        d = paired_bootstrap_diff(h, h0, seed=args.seed)
        r["vs_first_maps_holdout"] = d.as_dict()


def markdown(rows: List[Dict[str, Any]], args) -> str:
    lines = ["# First trial vs tuned post-processing on real PP-OCRv4 maps", "",
             f"CLEval (competition) H-Mean. First trial: the cache's recorded parameters "
             f"(for imported maps the competition configuration: {fmt_params(FIRST, 'polygon')}, "
             f"max_candidates 500, polygon mode). Tuned: "
             f"{args.trials} trials, {args.mode} mode"
             + (f" (search space overrides: {', '.join(args.param)})" if args.param else
                " (tune-post's default search space)")
             + f", {args.holdout:.0%} of the images held "
             f"out of the search (seed {args.seed}); the held-out difference has a paired "
             f"bootstrap 95% interval over images.", "",
             "| data set | images (search + holdout) | tuner | first-trial parameters | "
             "tuned parameters | first H (search) | tuned H (search) | first H (holdout) | "
             "tuned H (holdout) | holdout dH [95% CI] |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r.get("holdout_diff")
        dtext = "-" if not d else f"{d['estimate']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"

        def f4(v):
            return "-" if v is None else f"{v:.4f}"

        lines.append(f"| {r['set']} | {r['search_images']} + {r['holdout_images']} | "
                     f"{r['tuner']} | {fmt_params(r['first_params'], args.mode)} | "
                     f"{fmt_params(r['best_params'], args.mode)} | "
                     f"{f4(r['first_search'])} | {f4(r['best_search'])} | "
                     f"{f4(r['first_holdout'])} | {f4(r['best_holdout'])} | {dtext} |")
    lines.append("")
    for r in rows:
        d = r.get("vs_first_maps_holdout")
        if d:
            base = r["set"].split(" [")[0]
            lines.append(f"- {r['set']}, tuned, vs {base} (first maps), tuned, on the same "
                         f"held-out images: dH {d['estimate']:+.4f} [{d['low']:+.4f}, "
                         f"{d['high']:+.4f}] (paired bootstrap 95%).")
    for r in rows:
        lines.append(f"- {r['set']}: {r['source']}; tuning {r['seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


def parse_maps_from(items: List[str]) -> Dict[str, str]:
    out = {}
    for it in items:
        if "=" not in it:
            raise SystemExit(f"error: expected NAME=DIR, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder holding the data sets")
    ap.add_argument("--sets", nargs="+", default=list(SETS), help="data sets to run")
    ap.add_argument("--maps-from", action="append", default=[], metavar="NAME=DIR",
                    help="import the set's maps from a folder of .npz instead of running PP-OCRv4")
    ap.add_argument("--second-maps", action="append", default=[], metavar="NAME=DIR",
                    help="a second folder of .npz maps of the same set (another model or input "
                         "size): tuned alone and averaged with the first (an ensemble)")
    ap.add_argument("--ensemble-weight", type=float, default=0.5,
                    help="weight of the first maps in the ensemble (default 0.5)")
    ap.add_argument("--work", help="folder for the caches and tuning outputs (default: temporary)")
    ap.add_argument("--limit", type=int, help="first N images of each set only")
    ap.add_argument("--trials", type=int, default=150)
    ap.add_argument("--holdout", type=float, default=0.25)
    ap.add_argument("--mode", choices=["polygon", "box"], default="polygon")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=LOW:HIGH:STEP",
                    help="search-space override passed to tune-post (e.g. thresh=0.04:0.40:0.01)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--tuner", choices=["auto", "tune-post", "optuna"], default="auto",
                    help="auto: tune-post when this version has it, else the Optuna loop")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"),
                    help="folder for real_data.md and real_data.json")
    args = ap.parse_args(argv)
    args.maps_from = parse_maps_from(args.maps_from)
    args.second_maps = parse_maps_from(args.second_maps)
    if not 0.0 <= args.ensemble_weight <= 1.0:
        ap.error("--ensemble-weight must be in [0, 1]")
    if args.trials < 1:
        ap.error("--trials must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="real_data_") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        rows, skipped = [], []
        use_cli = args.tuner == "tune-post" or (args.tuner == "auto" and tune_post_available())
        for name in args.sets:
            cache, how = build_cache(name, args, work)
            if cache is None:
                skipped.append(f"{name}: {how}")
                print(f"skipped {name}: {how}", flush=True)
                continue
            print(f"{name}: {how}", flush=True)
            variants = [(name, cache, how)]
            if name in args.second_maps:
                variants += second_variants(name, cache, args, work)
            set_rows = []
            for label, c, source in variants:
                t0 = time.perf_counter()
                tag = label.replace(" ", "_").replace("/", "-")
                if use_cli:
                    res = tune_with_cli(Path(c.path), work / name / f"tune_{tag}", args)
                else:
                    res = tune_with_optuna(c, args)
                res.update(set=label, source=source, seconds=time.perf_counter() - t0)
                res["_cache"] = c
                set_rows.append(res)
            if len(set_rows) > 1:
                compare_variants(set_rows, args)
            for r in set_rows:
                r.pop("_cache")
            rows += set_rows
        if not rows:
            print("real_data: nothing to run (" + "; ".join(skipped) + "); skipped.")
            return 0
        text = markdown(rows, args)
        if skipped:
            text += "\nSkipped: " + "; ".join(skipped) + "\n"
        print(text)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "real_data.md").write_text(text, encoding="utf-8")
        (out / "real_data.json").write_text(json.dumps(rows, indent=2, default=str),
                                            encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
