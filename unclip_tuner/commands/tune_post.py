"""``unclip-tuner tune-post``: search post-processing parameters over a map cache.

The command opens the cache, builds the search space, creates or resumes the Optuna study,
runs trials one at a time (each trial scores every searched image, ``--jobs`` threads over
images), then writes the report. It never imports torch.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

from ..cli import CLIError

#: Where the seed's configuration differs from the decoder class's defaults
#: (``configs/preset/models/head/db_head.yaml``); used when the cache does not say.
SEED_CONFIG = {"thresh": 0.3, "box_thresh": 0.4, "max_candidates": 500, "use_polygon": True}
#: PaddleOCR's DBPostProcess defaults (``tools/infer/utility.py``).
PADDLE_DEFAULTS = {"thresh": 0.3, "box_thresh": 0.6, "max_candidates": 1000,
                   "box_unclip_ratio": 1.5, "polygon_unclip_ratio": 1.5}
#: Modules holding cached Numba kernels used by a trial.
_KERNEL_MODULES = ("unclip_tuner.postprocess.fast", "unclip_tuner.postprocess.raster",
                   "unclip_tuner.postprocess.offset", "unclip_tuner.metrics._cleval_kernels",
                   "unclip_tuner.metrics.geometry")


def add_space_arguments(p) -> None:
    """The search-space options shared by ``tune-post`` and ``compare``."""
    p.add_argument("--mode", choices=["polygon", "box"],
                   help="decoder mode searched; only its unclip ratio is searched (default polygon)")
    p.add_argument("--space", metavar="YAML", help="search space file (see the documentation)")
    p.add_argument("--param", action="append", default=[], metavar="NAME[=LOW:HIGH:STEP]",
                   help="search NAME over a grid (or choices a,b); repeatable. Opt-in: "
                        "max_candidates, use_dilation, score_mode")
    p.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                   help="hold NAME at VALUE in every searched trial; repeatable")


def add_jobs_argument(p) -> None:
    """``--jobs``: threads over images inside a trial (one level of parallelism)."""
    p.add_argument("--jobs", type=int, default=max(1, min(8, os.cpu_count() or 1)),
                   help="threads over images inside a trial (default: the CPU count, at most 8)")


def register(sub) -> None:
    from ..metrics import METRICS
    from ..report.export import TARGETS

    p = sub.add_parser(
        "tune-post", help="search post-processing parameters over a map cache",
        description="Search thresh, box_thresh and the unclip ratio (Optuna TPE over grids) "
                    "against the metric, on cached maps. The first trial is your current "
                    "parameters; running the same command again resumes the study.")
    p.add_argument("--cache", required=True, metavar="DIR", help="map cache folder (cache-maps --out)")
    p.add_argument("--trials", type=int, default=300, metavar="N",
                   help="complete trials wanted in the study, the first included (default 300)")
    p.add_argument("--metric", default="cleval", choices=list(METRICS),
                   help="objective: this metric's dataset H-Mean (default cleval)")
    add_space_arguments(p)
    p.add_argument("--target", choices=list(TARGETS),
                   help="code version for the paste line (default: the cache's, else karmakaryx)")
    p.add_argument("--holdout", type=float, default=0.0, metavar="FRACTION",
                   help="share of images kept out of the search and used to check the result "
                        "with bootstrap intervals (e.g. 0.3; default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler and the holdout split")
    add_jobs_argument(p)
    p.add_argument("--storage", metavar="URL",
                   help="database shared by several tune-post workers (postgresql://...); "
                        "default: a journal file in the cache folder")
    p.add_argument("--heartbeat", type=int, default=10, metavar="SECONDS",
                   help="worker heartbeat with --storage (a silent worker's trial is redone "
                        "after 3 intervals; default 10)")
    p.add_argument("--out", metavar="DIR", help="report folder (default CACHE/tune/<study>/)")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="N",
                   help="bootstrap resamples for the holdout intervals (default 2000)")
    p.add_argument("--verify", default="sample", choices=["sample", "full", "none"],
                   help="cache check before the search (default sample)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_tune_post)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def announce_compiling() -> bool:
    """Say on stderr when this run will compile the Numba kernels; returns whether it will."""
    cold = kernels_cache_cold()
    if cold:
        print("compiling the Numba kernels (first run only; cached afterwards, "
              "about a minute)...", file=sys.stderr)
    return cold


def kernels_cache_cold() -> bool:
    """Whether Numba will compile kernels on this run (no cache index newer than a source).

    Best effort: looks for ``<module>.*.nbi`` index files beside each kernel module (or
    under ``NUMBA_CACHE_DIR`` when set), newer than the module's source.
    """
    import importlib.util

    extra = os.environ.get("NUMBA_CACHE_DIR")
    for mod in _KERNEL_MODULES:
        try:
            spec = importlib.util.find_spec(mod)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.origin:
            continue
        src = Path(spec.origin)
        # NUMBA_CACHE_DIR replaces the __pycache__ folders beside the sources
        dirs = [Path(extra)] if extra else [src.parent / "__pycache__"]
        try:
            mtime = src.stat().st_mtime
        except OSError:
            continue
        fresh = False
        for d in dirs:
            if not d.is_dir():
                continue
            for f in d.rglob(f"{src.stem}.*.nbi"):
                try:
                    if f.stat().st_mtime >= mtime:
                        fresh = True
                        break
                except OSError:
                    pass
            if fresh:
                break
        if not fresh:
            return True
    return False


def _open_cache(path: str, verify: str):
    from ..cache import CacheError, MapCache

    p = Path(path)
    if not p.exists():
        raise CacheError(f"{p}: no such cache folder (build it with cache-maps --out {p})")
    if not p.is_dir():
        raise CacheError(f"{p}: not a folder")
    if not (p / "manifest.json").exists():
        raise CacheError(f"{p}: not a map cache (no manifest.json); build it with cache-maps")
    cache = MapCache.open(p, verify=verify, mmap=True)
    if cache.pending:
        raise CacheError(f"{p}: the cache is incomplete ({cache.pending} map(s) written since "
                         f"its index; a cache-maps run was interrupted or is still writing): "
                         f"run cache-maps again to finish it")
    if len(cache) == 0:
        raise CacheError(f"{p}: the cache holds no maps")
    gt = cache.gt
    if gt is None:
        raise CacheError(f"{p}: the cache has no ground truth; tuning needs it "
                         f"(cache-maps --gt FILE)")
    missing = [n for n in cache.names() if n not in gt]
    if missing:
        raise CacheError(f"{p}: {len(missing)} cached image(s) have no ground truth "
                         f"(e.g. {missing[0]!r}); rebuild the cache with the matching --gt")
    return cache


def manifest_params(meta: dict):
    """The parameters a cache manifest records (``meta["params"]``), or None.

    Raises a CLIError naming the problem when they are recorded but invalid.
    """
    from ..postprocess.params import PostProcessParams

    raw = meta.get("params") if isinstance(meta, dict) else None
    if not (isinstance(raw, dict) and raw):
        return None
    clean = {k: v for k, v in raw.items() if v is not None}
    try:
        return PostProcessParams.from_dict(clean)
    except ValueError as exc:
        raise CLIError(f"the cache manifest's current parameters are invalid ({exc}); "
                       f"fix meta.params in manifest.json") from None


def current_params(meta: dict, mode: str, target: str) -> Tuple[object, str]:
    """The user's current parameters and where they came from.

    From the cache manifest's ``meta["params"]`` when present; else the seed's defaults for
    the target's code version (``use_polygon`` from ``mode``).
    """
    from ..postprocess.params import PostProcessParams, preset

    recorded = manifest_params(meta)
    if recorded is not None:
        return recorded, "the cache manifest"
    use_polygon = mode == "polygon"
    if target == "paddleocr":
        return (PostProcessParams(use_polygon=use_polygon, **PADDLE_DEFAULTS),
                "PaddleOCR's defaults (the cache does not record your parameters)")
    version = target if target in ("seed-original", "seed-head", "karmakaryx") else "karmakaryx"
    params = preset(version).defaults.replace(**{**SEED_CONFIG, "use_polygon": use_polygon})
    return params, f"the seed's defaults for {version} (the cache does not record your parameters)"


class _Progress:
    """tqdm bar over COMPLETE trials with the best H-Mean so far, or one line per new best."""

    def __init__(self, enabled: bool, total: int, done: int, first_value: Optional[float]) -> None:
        self.bar = None
        self.best = None
        self.first = first_value
        self.total = total
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=min(done, total), desc="tune-post", unit="trial",
                            file=sys.stderr, dynamic_ncols=True)

    def __call__(self, study, trial, done) -> None:
        from ..report.writer import best_and_first

        best, first = best_and_first(done)
        if first is not None:
            self.first = first.value
        improved = best is not None and (self.best is None or best.value > self.best)
        if best is not None:
            self.best = best.value
        if self.bar is not None:
            self.bar.n = min(len(done), self.total)
            post = {"best": f"{self.best:.4f}" if self.best is not None else "-"}
            if self.first is not None:
                post["first"] = f"{self.first:.4f}"
            self.bar.set_postfix(post, refresh=False)
            self.bar.refresh()
        elif improved:
            gain = f" ({self.best - self.first:+.4f} vs first)" if self.first is not None else ""
            print(f"trial {best.number}: best H-Mean {self.best:.4f}{gain} "
                  f"[{len(done)}/{self.total} complete]", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _holdout(engine, first_p, best_p, images: List[str], n_boot: int, seed: int):
    from ..report.writer import HoldoutResult
    from ..search.bootstrap import bootstrap_mean, paired_bootstrap_diff

    s_first = engine.evaluate(first_p, images=images)
    s_best = engine.evaluate(best_p, images=images)
    h_first = [s.hmean for s in s_first.per_image]
    h_best = [s.hmean for s in s_best.per_image]
    return HoldoutResult(
        n_images=len(images),
        first=bootstrap_mean(h_first, n_boot=n_boot, seed=seed),
        best=bootstrap_mean(h_best, n_boot=n_boot, seed=seed),
        diff=paired_bootstrap_diff(h_best, h_first, n_boot=n_boot, seed=seed),
        first_hmean=float(s_first.hmean), best_hmean=float(s_best.hmean))


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------

def _cmd_tune_post(args) -> int:
    from ..postprocess.params import PostProcessParams
    from ..report.export import TARGETS
    from ..report.trials import trial_params
    from ..report.writer import TuneReport, best_and_first, write_report
    from ..search.holdout import split_holdout
    from ..search.space import build_space
    from ..search.study import Tuner, open_study, run_trials, study_name

    t_start = time.perf_counter()
    if args.trials < 1:
        raise CLIError("--trials must be >= 1")
    if args.jobs < 1:
        raise CLIError("--jobs must be >= 1")
    if args.bootstrap < 1:
        raise CLIError("--bootstrap must be >= 1")

    space = build_space(args.mode, args.space, args.param, args.fix)
    cache = _open_cache(args.cache, args.verify)
    meta = cache.meta if isinstance(cache.meta, dict) else {}
    target = args.target or meta.get("target") or "karmakaryx"
    if target not in TARGETS:
        raise CLIError(f"the cache's code version {target!r} is unknown; pass --target "
                       f"({', '.join(TARGETS)})")
    baseline, source = current_params(meta, space.mode, target)
    search_images, holdout_images = split_holdout(cache.names(), args.holdout, args.seed)
    name = study_name(space, args.metric, baseline, search_images, cache.fingerprint)
    out_dir = Path(args.out) if args.out else Path(args.cache) / "tune" / name

    notes: List[str] = [f"first trial = current parameters, from {source}"]
    if baseline.use_polygon != (space.mode == "polygon"):
        notes.append(f"your current parameters run {'polygon' if baseline.use_polygon else 'box'} "
                     f"mode; the search runs {space.mode} mode (--mode)")
    print(f"study {name}: {len(search_images)} images searched"
          + (f", {len(holdout_images)} held out" if holdout_images else ""), file=sys.stderr)
    for line in space.describe():
        print(f"  {line}", file=sys.stderr)

    from ..postprocess.engine import FastEngine

    cold = announce_compiling()
    engine = FastEngine(cache, metric=args.metric, jobs=args.jobs)
    try:
        with open_study(name, cache_dir=Path(args.cache), storage=args.storage, seed=args.seed,
                        heartbeat=args.heartbeat) as handle:
            if handle.redone:
                print(f"resuming: trial(s) {', '.join(map(str, handle.redone))} of a stopped run "
                      f"marked failed and queued again", file=sys.stderr)
            tuner = Tuner(engine, space, baseline, search_images)
            done_before = [t for t in handle.study.get_trials(deepcopy=False)
                           if t.state.name == "COMPLETE"]
            if done_before and not handle.redone:
                print(f"resuming: {len(done_before)} complete trial(s) in the study",
                      file=sys.stderr)
            _, first0 = best_and_first(done_before)
            show = not args.no_progress and sys.stderr.isatty()
            bar = _Progress(show, args.trials, len(done_before),
                            first0.value if first0 is not None else None)
            try:
                ran = run_trials(handle, tuner, args.trials, on_trial=bar)
            finally:
                bar.close()
            trials = handle.study.get_trials(deepcopy=False)
            best, first = best_and_first(trials)
            holdout = None
            if holdout_images and best is not None:
                best_p = PostProcessParams.from_dict(trial_params(best, space, baseline))
                first_p = (PostProcessParams.from_dict(trial_params(first, space, baseline))
                           if first is not None else baseline)
                holdout = _holdout(engine, first_p, best_p, holdout_images, args.bootstrap,
                                   args.seed)
                if args.metric != "cleval":
                    notes.append(f"holdout intervals resample per-image H-Mean; {args.metric}'s "
                                 f"official figure pools counts over images")
            if cold:
                notes.append("this run compiled the Numba kernels; later runs start faster")
            rep = TuneReport(study_name=name, storage=handle.storage_desc, metric=args.metric,
                             target=target, space=space, base=baseline, trials=trials,
                             n_search_images=len(search_images), holdout=holdout, ran_here=ran,
                             notes=notes, study=handle.study)
            text = write_report(out_dir, rep, plots=not args.no_plots)
    finally:
        engine.close()
    print(text, end="")
    print(f"tune-post: {ran} trial(s) in {time.perf_counter() - t_start:.1f} s", file=sys.stderr)
    return 0
