"""Compare detectors after tuning each one: is checkpoint B really better than A?

Scoring two checkpoints at one fixed post-processing favours whichever the parameters were
tuned for. The fair question is: *once each model has its own best parameters, which one
scores higher on images that neither search has seen?* :func:`compare_caches` answers it:

1. The caches must hold the same images (same names, same original sizes) with the same
   ground truth (same polygons and don't-care flags); anything else is refused with one
   line, because the per-image pairing below would be meaningless.
2. One seeded split (:func:`~unclip_tuner.search.holdout.split_holdout`, a function of the
   names only) gives the same search and held-out images for every cache.
3. Each cache is tuned on the search images exactly as ``tune-post`` would tune it with the
   same space, metric, split and seed: same study name, same journal beside the maps. A
   study that ``tune-post`` (or an earlier comparison) already ran is resumed, so its
   trials are reused and only the missing ones run.
4. Every model's best parameters, and its first-trial (current) parameters, are scored on
   the held-out images.
5. Per model: the mean per-image H-Mean with its percentile bootstrap interval. Per pair of
   models: the paired bootstrap interval of the mean per-image H difference (each resample
   draws held-out images once for both models) and the count of images each model wins,
   loses or ties.

The intervals resample images, so they show the noise of *which* images were held out;
they do not cover the randomness of the search itself (another seed may find other
parameters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..metrics.base import DatasetScore
from ..postprocess.params import PostProcessParams
from .bootstrap import Interval, bootstrap_mean, paired_bootstrap_diff
from .holdout import split_holdout
from .space import SearchSpace, build_space

__all__ = ["CompareError", "ModelResult", "PairResult", "ComparisonResult", "compare_caches",
           "check_same_images", "default_labels", "parse_labels"]


class CompareError(ValueError):
    """Caches that cannot be compared, or bad comparison options; the message is one line."""


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

@dataclass
class ModelResult:
    """One model (cache): its study and its scores on the held-out images.

    Attributes
    ----------
    label : str
        Name shown in the report (``--names``, else the cache folder's name).
    path : str
        The cache folder.
    study_name, storage : str
        The ``tune-post`` study (name and where it lives).
    n_complete, ran_here : int
        Complete trials in the study, and how many of them this comparison ran.
    best_trial, first_trial : int or None
        Numbers of the best trial and of the first (current parameters) trial.
    search_best, search_first : float or None
        Their objective on the search images.
    best_params, first_params : PostProcessParams
        The parameters scored on the held-out images.
    params_source : str
        Where the current parameters came from (cache manifest or defaults).
    best, first : DatasetScore
        Scores of ``best_params`` and ``first_params`` on the held-out images (per image
        in :attr:`ComparisonResult.holdout_images` order).
    best_interval, first_interval : Interval
        Mean per-image H-Mean on the held-out images with its bootstrap interval.
    gain : Interval
        ``best - first`` (paired bootstrap) on the held-out images.
    """

    label: str
    path: str
    study_name: str
    storage: str
    n_complete: int
    ran_here: int
    best_trial: int
    first_trial: Optional[int]
    search_best: float
    search_first: Optional[float]
    best_params: PostProcessParams
    first_params: PostProcessParams
    params_source: str
    best: DatasetScore
    first: DatasetScore
    best_interval: Interval
    first_interval: Interval
    gain: Interval

    def hmeans(self, which: str = "best") -> np.ndarray:
        """Per-image H-Mean on the held-out images (``which``: ``"best"`` or ``"first"``)."""
        score = self.best if which == "best" else self.first
        return np.array([s.hmean for s in score.per_image], dtype=np.float64)

    def as_dict(self) -> Dict[str, Any]:
        return {
            "label": self.label, "cache": self.path, "study": self.study_name,
            "storage": self.storage, "n_complete": self.n_complete, "ran_here": self.ran_here,
            "best_trial": self.best_trial, "first_trial": self.first_trial,
            "search_best": self.search_best, "search_first": self.search_first,
            "best_params": self.best_params.to_dict(),
            "first_params": self.first_params.to_dict(), "params_source": self.params_source,
            "holdout": {
                "best": {"hmean": self.best.hmean, "recall": self.best.recall,
                         "precision": self.best.precision,
                         "mean_image_hmean": self.best_interval.as_dict()},
                "first": {"hmean": self.first.hmean, "recall": self.first.recall,
                          "precision": self.first.precision,
                          "mean_image_hmean": self.first_interval.as_dict()},
                "best_minus_first": self.gain.as_dict(),
            },
        }


@dataclass
class PairResult:
    """Model ``a`` against model ``b`` on the held-out images.

    Attributes
    ----------
    a, b : str
        Labels of the two models.
    diff : Interval
        Mean per-image H-Mean of ``a`` minus ``b``, each at its own best parameters (paired
        bootstrap over the held-out images).
    wins, losses, ties : int
        Held-out images where ``a``'s H-Mean is higher than, lower than, equal to ``b``'s.
    diff_first : Interval
        The same difference at each model's first-trial (current) parameters: the
        comparison without tuning.
    """

    a: str
    b: str
    diff: Interval
    wins: int
    losses: int
    ties: int
    diff_first: Interval

    @property
    def verdict(self) -> str:
        """A short reading of :attr:`diff`."""
        level = f"{self.diff.level:.0%}"
        if self.ties == self.diff.n:
            return "identical on every held-out image"
        if self.diff.low > 0:
            return f"{self.a} better ({level} interval above 0)"
        if self.diff.high < 0:
            return f"{self.b} better ({level} interval below 0)"
        return f"no clear difference ({level} interval contains 0)"

    def as_dict(self) -> Dict[str, Any]:
        return {"a": self.a, "b": self.b, "a_minus_b": self.diff.as_dict(), "wins": self.wins,
                "losses": self.losses, "ties": self.ties,
                "a_minus_b_first_params": self.diff_first.as_dict(), "verdict": self.verdict}


@dataclass
class ComparisonResult:
    """Everything :func:`compare_caches` found (see the module docstring).

    Attributes
    ----------
    models : list of ModelResult
        In the order the caches were given.
    pairs : list of PairResult
        Every pair ``(i, j)`` with ``i < j``, in that order: ``models[i] - models[j]``.
    search_images, holdout_images : list of str
        The split, in the first cache's image order (the same sets for every cache).
    metric : str
    space : SearchSpace
    trials : int
        Complete trials asked for per study.
    holdout_fraction : float
    seed : int
    n_boot : int
    level : float
    notes : list of str
    """

    models: List[ModelResult]
    pairs: List[PairResult]
    search_images: List[str]
    holdout_images: List[str]
    metric: str
    space: SearchSpace
    trials: int
    holdout_fraction: float
    seed: int
    n_boot: int
    level: float
    notes: List[str] = field(default_factory=list)

    @property
    def labels(self) -> List[str]:
        return [m.label for m in self.models]

    def model(self, label: str) -> ModelResult:
        for m in self.models:
            if m.label == label:
                return m
        raise KeyError(label)

    def pair(self, a: str, b: str) -> PairResult:
        """The pair ``a - b``, in either order (the sign follows the order asked)."""
        for p in self.pairs:
            if (p.a, p.b) == (a, b):
                return p
            if (p.a, p.b) == (b, a):
                return _pair(self.model(a), self.model(b), self.n_boot, self.level, self.seed)
        raise KeyError((a, b))

    def per_image_table(self) -> Tuple[List[str], List[List[Any]]]:
        """Header and rows of ``per_image.csv``: the image, then per model its H-Mean,
        recall and precision at its best parameters, and its H-Mean at its current ones."""
        header = ["image"]
        for m in self.models:
            header += [f"{m.label}_H", f"{m.label}_R", f"{m.label}_P", f"{m.label}_H_current"]
        rows = []
        for i, name in enumerate(self.holdout_images):
            row: List[Any] = [name]
            for m in self.models:
                s, f = m.best.per_image[i], m.first.per_image[i]
                row += [float(s.hmean), float(s.recall), float(s.precision), float(f.hmean)]
            rows.append(row)
        return header, rows

    def as_dict(self) -> Dict[str, Any]:
        return {
            "metric": self.metric, "space": self.space.to_dict(), "trials": self.trials,
            "holdout_fraction": self.holdout_fraction, "seed": self.seed,
            "bootstrap": {"n_boot": self.n_boot, "level": self.level},
            "search_images": len(self.search_images), "holdout_images": list(self.holdout_images),
            "models": [m.as_dict() for m in self.models],
            "pairs": [p.as_dict() for p in self.pairs], "notes": list(self.notes),
        }


def _pair(a: ModelResult, b: ModelResult, n_boot: int, level: float, seed: int) -> PairResult:
    """``a`` against ``b`` on the held-out images (see :class:`PairResult`)."""
    ha, hb = a.hmeans("best"), b.hmeans("best")
    return PairResult(
        a=a.label, b=b.label,
        diff=paired_bootstrap_diff(ha, hb, n_boot=n_boot, level=level, seed=seed),
        wins=int(np.sum(ha > hb)), losses=int(np.sum(ha < hb)), ties=int(np.sum(ha == hb)),
        diff_first=paired_bootstrap_diff(a.hmeans("first"), b.hmeans("first"), n_boot=n_boot,
                                         level=level, seed=seed))


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------

def parse_labels(text: Optional[str], n: int) -> Optional[List[str]]:
    """``--names a,b,c`` as a list of ``n`` unique, non-empty labels (``None`` if not given)."""
    if text is None:
        return None
    labels = [t.strip() for t in text.split(",")]
    if len(labels) != n:
        raise CompareError(f"--names gives {len(labels)} name(s) for {n} cache(s)")
    check_labels(labels)
    return labels


def check_labels(labels: Sequence[str]) -> None:
    """Labels must be non-empty, unique and free of characters that break the CSV header."""
    for s in labels:
        if not s:
            raise CompareError("--names: a model name is empty")
        if any(c in s for c in ',"\n\r'):
            raise CompareError(f"--names: {s!r} contains a comma, a quote or a line break")
    dup = sorted({s for s in labels if list(labels).count(s) > 1})
    if dup:
        raise CompareError(f"--names: {dup[0]!r} names two models; give each a distinct name")


def default_labels(paths: Sequence[Path]) -> List[str]:
    """Cache folder names; parent folders are added until the labels are distinct, and a
    number as the last resort."""
    paths = [Path(p).resolve() for p in paths]
    for depth in range(1, 4):
        labels = ["/".join(p.parts[-depth:]) if len(p.parts) >= depth else str(p) for p in paths]
        labels = [s.replace(",", "_") for s in labels]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{i + 1}:{p.name}" for i, p in enumerate(paths)]


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------

def _sizes(store) -> Dict[str, Tuple[int, int]]:
    """Original ``(width, height)`` of every image (from a cache's index, no map read)."""
    entries = getattr(store, "_entries", None)
    if isinstance(entries, dict):
        return {n: (int(e.width), int(e.height)) for n, e in entries.items()}
    out = {}
    for n in store.names():
        r = store.get(n)
        out[n] = (int(r.width), int(r.height))
    return out


def _same_polygons(a, b) -> Optional[str]:
    """Why two images' ground truths differ, or ``None`` when they are the same."""
    if len(a.polygons) != len(b.polygons):
        return f"{len(a.polygons)} vs {len(b.polygons)} words"
    for k, (p, q) in enumerate(zip(a.polygons, b.polygons)):
        if p.shape != q.shape or not np.array_equal(p, q):
            return f"word {k + 1}'s polygon differs"
    if not np.array_equal(a.dont_care_flags, b.dont_care_flags):
        return "the don't-care flags differ"
    return None


def check_same_images(stores: Sequence, labels: Sequence[str]) -> None:
    """Refuse stores that do not hold the same images with the same ground truth.

    Checks, against the first store: the image names (as sets), each image's original
    size, and each image's ground-truth polygons (count, order, coordinates) and
    don't-care flags.

    Raises
    ------
    CompareError
        One line naming the two models and the first image at fault.
    """
    ref, ref_label = stores[0], labels[0]
    ref_names = list(ref.names())
    ref_set = set(ref_names)
    ref_sizes = _sizes(ref)
    ref_gt = ref.gt
    for store, label in zip(stores[1:], labels[1:]):
        names = list(store.names())
        name_set = set(names)
        only_ref = [n for n in ref_names if n not in name_set]
        only_here = [n for n in names if n not in ref_set]
        if only_ref or only_here:
            parts = []
            if only_ref:
                parts.append(f"{len(only_ref)} only in {ref_label} (e.g. {only_ref[0]!r})")
            if only_here:
                parts.append(f"{len(only_here)} only in {label} (e.g. {only_here[0]!r})")
            raise CompareError(f"{ref_label} and {label} do not hold the same images: "
                               f"{', '.join(parts)}; compare caches of the same image set")
        sizes = _sizes(store)
        for n in ref_names:
            if sizes[n] != ref_sizes[n]:
                (w0, h0), (w1, h1) = ref_sizes[n], sizes[n]
                raise CompareError(f"{ref_label} and {label} do not hold the same images: "
                                   f"{n!r} is {w0}x{h0} in {ref_label} and {w1}x{h1} in {label}")
        gt = store.gt
        if (ref_gt is None) != (gt is None):
            missing = label if gt is None else ref_label
            raise CompareError(f"{missing} has no ground truth; comparing needs it in every cache")
        if gt is None:
            continue
        for n in ref_names:
            a, b = ref_gt.get(n), gt.get(n)
            if a is None or b is None:
                raise CompareError(f"{ref_label if a is None else label} has no ground truth "
                                   f"for {n!r}")
            why = _same_polygons(a, b)
            if why is not None:
                raise CompareError(f"{ref_label} and {label} have different ground truth: "
                                   f"{n!r}: {why}; the models must be scored against the "
                                   f"same annotations")


# --------------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------------

def _current_params(store, mode: str) -> Tuple[PostProcessParams, str]:
    """The first trial's parameters, derived exactly as ``tune-post`` derives them."""
    from ..cli import CLIError
    from ..commands.tune_post import current_params

    meta = store.meta if isinstance(store.meta, dict) else {}
    target = meta.get("target") or "karmakaryx"
    try:
        return current_params(meta, mode, target)
    except CLIError as exc:
        raise CompareError(str(exc)) from None


def _progress(on_trial: Callable, label: str, wanted: int) -> Callable:
    """A ``run_trials`` callback reporting ``(label, complete, wanted, best)``."""
    from ..report.writer import best_and_first

    def callback(study, trial, done) -> None:
        best, _ = best_and_first(done)
        on_trial(label, len(done), wanted, best.value if best is not None else None)
    return callback


def compare_caches(caches: Sequence, labels: Optional[Sequence[str]] = None, trials: int = 300,
                   holdout: float = 0.3, seed: int = 0, metric: str = "cleval",
                   mode: Optional[str] = None, space: Optional[SearchSpace] = None,
                   jobs: int = 2, n_boot: int = 2000, level: float = 0.95,
                   on_trial: Optional[Callable[[str, int, int, Optional[float]], None]] = None,
                   on_model: Optional[Callable[[ModelResult], None]] = None,
                   on_start: Optional[Callable[[], None]] = None) -> ComparisonResult:
    """Tune every cache on one shared split and compare the models on the held-out images.

    Parameters
    ----------
    caches : sequence of MapCache
        Two or more opened caches (with ground truth) of the same images. Each cache's
        study journal lives in its folder, as with ``tune-post``.
    labels : sequence of str, optional
        Model names (default: the cache folders' names).
    trials : int
        Complete trials wanted in each study, the first (current parameters) included.
        Trials already in a matching study count.
    holdout : float
        Share of the images held out of every search, in ``(0, 1)``.
    seed : int
        Seed of the split, of the samplers and of the bootstrap.
    metric : str
        The objective (its dataset H-Mean) and the held-out scores.
    mode : {"polygon", "box"}, optional
        Decoder mode searched (ignored when ``space`` is given; default polygon).
    space : SearchSpace, optional
        The search space (default: ``tune-post``'s default space for ``mode``).
    jobs : int
        Threads over images inside a trial.
    n_boot : int
        Bootstrap resamples.
    level : float
        Coverage of the intervals.
    on_trial : callable, optional
        ``on_trial(label, n_complete, n_wanted, best_so_far)`` after every trial run.
    on_model : callable, optional
        ``on_model(result)`` once a model is tuned and scored.
    on_start : callable, optional
        ``on_start()`` once the caches and options are checked, before any tuning.

    Returns
    -------
    ComparisonResult

    Raises
    ------
    CompareError
        Fewer than two caches, caches of different images or ground truth, bad options.
    """
    from ..report.trials import trial_params
    from ..report.writer import best_and_first
    from .study import Tuner, open_study, run_trials, study_name

    caches = list(caches)
    if len(caches) < 2:
        raise CompareError("compare needs at least two caches (--cache A --cache B)")
    if labels is None:
        labels = default_labels([Path(c.path) for c in caches])
    labels = list(labels)
    if len(labels) != len(caches):
        raise CompareError(f"{len(labels)} name(s) for {len(caches)} cache(s)")
    check_labels(labels)
    if trials < 1:
        raise CompareError("--trials must be >= 1")
    if jobs < 1:
        raise CompareError("--jobs must be >= 1")
    if n_boot < 1:
        raise CompareError("--bootstrap must be >= 1")
    try:
        fraction = float(holdout)
    except (TypeError, ValueError):
        raise CompareError(f"--holdout must be a number in (0, 1), got {holdout!r}") from None
    if not 0.0 < fraction < 1.0:
        raise CompareError(f"--holdout must be in (0, 1): the models are compared on held-out "
                           f"images, got {holdout}")
    paths = [str(Path(c.path).resolve()) for c in caches]
    for i, p in enumerate(paths):
        if p in paths[:i]:
            raise CompareError(f"the cache {p} is given twice")
    for c, label in zip(caches, labels):
        if c.gt is None:
            raise CompareError(f"{label}: the cache has no ground truth; comparing needs it "
                               f"(cache-maps --gt FILE)")
    check_same_images(caches, labels)
    if space is None:
        space = build_space(mode)

    # One split for all: a function of the names only, so the sets agree across caches.
    # Each study is named from its own cache's image order, exactly as tune-post names it.
    ref_search, ref_holdout = split_holdout(caches[0].names(), fraction, seed)
    if on_start is not None:
        on_start()
    notes: List[str] = []
    if metric != "cleval":
        notes.append(f"the intervals resample per-image H-Mean; {metric}'s official figure "
                     f"pools counts over images (shown as 'official H')")

    from ..postprocess.engine import FastEngine

    models: List[ModelResult] = []
    for cache, label in zip(caches, labels):
        baseline, source = _current_params(cache, space.mode)
        search, _ = split_holdout(cache.names(), fraction, seed)
        name = study_name(space, metric, baseline, search, cache.fingerprint)
        engine = FastEngine(cache, metric=metric, jobs=jobs)
        try:
            with open_study(name, cache_dir=Path(cache.path), seed=seed) as handle:
                tuner = Tuner(engine, space, baseline, search)
                callback = None if on_trial is None else _progress(on_trial, label, trials)
                ran = run_trials(handle, tuner, trials, on_trial=callback)
                all_trials = handle.study.get_trials(deepcopy=False)
                storage_desc = handle.storage_desc
            best, first = best_and_first(all_trials)
            if best is None:
                raise CompareError(f"{label}: the study {name} has no complete trial")
            best_p = PostProcessParams.from_dict(trial_params(best, space, baseline))
            first_p = (PostProcessParams.from_dict(trial_params(first, space, baseline))
                       if first is not None else baseline)
            s_best = engine.evaluate(best_p, images=ref_holdout)
            s_first = engine.evaluate(first_p, images=ref_holdout)
        finally:
            engine.close()
        h_best = [s.hmean for s in s_best.per_image]
        h_first = [s.hmean for s in s_first.per_image]
        result = ModelResult(
            label=label, path=str(cache.path), study_name=name, storage=storage_desc,
            n_complete=sum(1 for t in all_trials if t.state.name == "COMPLETE"), ran_here=ran,
            best_trial=best.number, first_trial=first.number if first is not None else None,
            search_best=float(best.value),
            search_first=float(first.value) if first is not None else None,
            best_params=best_p, first_params=first_p, params_source=source,
            best=s_best, first=s_first,
            best_interval=bootstrap_mean(h_best, n_boot=n_boot, level=level, seed=seed),
            first_interval=bootstrap_mean(h_first, n_boot=n_boot, level=level, seed=seed),
            gain=paired_bootstrap_diff(h_best, h_first, n_boot=n_boot, level=level, seed=seed))
        models.append(result)
        if on_model is not None:
            on_model(result)

    pairs = [_pair(a, b, n_boot, level, seed) for a, b in combinations(models, 2)]
    return ComparisonResult(models=models, pairs=pairs, search_images=ref_search,
                            holdout_images=ref_holdout, metric=metric, space=space,
                            trials=int(trials), holdout_fraction=fraction, seed=int(seed),
                            n_boot=int(n_boot), level=float(level), notes=notes)
