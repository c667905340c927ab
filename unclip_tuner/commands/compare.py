"""``unclip-tuner compare``: is checkpoint B really better than A, once each is tuned?

The command opens two or more map caches of the same images, tunes each one on the same
seeded search split (``tune-post``'s studies, resumed when they exist), scores every
model's best and current parameters on the held-out images, and writes:

``compare.md``
    the report (Markdown): per-model held-out H-Mean with bootstrap intervals, every
    pairwise difference with its paired interval and per-image wins/losses/ties, and the
    best parameters of each model;
``per_image.csv``
    one row per held-out image: ``image``, then per model ``<name>_H``, ``<name>_R``,
    ``<name>_P`` (best parameters) and ``<name>_H_current`` (current parameters);
``compare.json``
    the same figures for scripts.

The terminal gets the two main tables. It never imports torch.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

from ..cli import CLIError

#: Parameters always shown in the parameter table (the others only when they differ).
_SHOWN = ("thresh", "box_thresh", "use_polygon")


def register(sub) -> None:
    from ..metrics import METRICS
    from .tune_post import add_jobs_argument, add_space_arguments

    p = sub.add_parser(
        "compare", help="compare detectors fairly: tune each cache, score all on held-out images",
        description="Tune every cache on the same seeded search split (reusing each cache's "
                    "tune-post study when one with the same space, metric and split exists), "
                    "then compare the models' best parameters on images no search has seen: "
                    "held-out H-Mean with bootstrap intervals, paired intervals of every "
                    "pairwise difference, per-image wins/losses/ties.")
    p.add_argument("--cache", action="append", required=True, metavar="DIR",
                   help="map cache of one model (cache-maps --out); give two or more")
    p.add_argument("--names", metavar="A,B,...",
                   help="model names, one per --cache, in order (default: the folder names)")
    p.add_argument("--trials", type=int, default=300, metavar="N",
                   help="complete trials wanted in each model's study, the first included "
                        "(default 300)")
    p.add_argument("--holdout", type=float, default=0.3, metavar="FRACTION",
                   help="share of images kept out of every search and used to compare "
                        "(default 0.3)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the split, the samplers and the bootstrap (default 0)")
    p.add_argument("--metric", default="cleval", choices=list(METRICS),
                   help="objective and comparison metric (default cleval)")
    add_space_arguments(p)
    add_jobs_argument(p)
    p.add_argument("--bootstrap", type=int, default=2000, metavar="N",
                   help="bootstrap resamples (default 2000)")
    p.add_argument("--out", metavar="DIR",
                   help="report folder (default ./compare-<date>-<time>)")
    p.add_argument("--verify", default="sample", choices=["sample", "full", "none"],
                   help="cache check before the search (default sample)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_compare)


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------

def _table(header: List[str], rows: List[List[str]], markdown: bool) -> List[str]:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    if markdown:
        def line(r):
            return "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
        return ([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                + [line(r) for r in rows])

    def line(r):
        return "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    return [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]


def _model_rows(res, markdown: bool) -> List[List[str]]:
    rows = []
    for m in res.models:
        trials = f"{m.n_complete} ({m.ran_here} run now)" if markdown else str(m.n_complete)
        rows.append([m.label, trials, f"{m.search_best:.4f}", m.best_interval.format(),
                     f"{m.best.recall:.4f}", f"{m.best.precision:.4f}",
                     m.first_interval.format(), m.gain.format(signed=True)])
    return rows


_MODEL_HEADER = ["model", "trials", "search H", "held-out H [95%]", "R", "P",
                 "current params H [95%]", "tuning gain [95%]"]


def _pair_rows(res, first: bool = False) -> List[List[str]]:
    rows = []
    for p in res.pairs:
        d = p.diff_first if first else p.diff
        row = [f"{p.a} - {p.b}", d.format(signed=True), f"{d.p_le_zero:.3f}"]
        if not first:
            row += [f"{p.wins}/{p.losses}/{p.ties}", p.verdict]
        rows.append(row)
    return rows


def _level(res) -> str:
    return f"{res.level:.0%}"


def terminal_text(res) -> str:
    """The two main tables (models, pairs) as plain aligned text."""
    lines = [f"{res.metric} on {len(res.holdout_images)} held-out images "
             f"({len(res.search_images)} searched, seed {res.seed}); mean per-image H-Mean, "
             f"{_level(res)} bootstrap intervals"]
    lines += _table(_MODEL_HEADER, _model_rows(res, markdown=False), markdown=False)
    lines.append("")
    lines.append("pairwise, each model at its best parameters (paired bootstrap over images):")
    lines += _table(["pair", "difference [95%]", "P(<=0)", "wins/losses/ties", "verdict"],
                    _pair_rows(res), markdown=False)
    return "\n".join(lines) + "\n"


def _param_rows(res) -> List[List[str]]:
    from ..report.export import format_number
    from ..report.trials import PARAM_COLUMNS

    searched = set(res.space.names)
    rows = []
    for name in PARAM_COLUMNS:
        best = [getattr(m.best_params, name) for m in res.models]
        cur = [getattr(m.first_params, name) for m in res.models]
        if (name not in searched and name not in _SHOWN and name != res.space.ratio_name
                and len(set(map(repr, best + cur))) == 1):
            continue
        mark = ("searched" if name in searched else
                "fixed" if name in res.space.fixed_dict else "")
        rows.append([name] + [format_number(v) for v in best] + [mark])
    return rows


def markdown_text(res, out_dir: Optional[Path] = None, files: Optional[List[str]] = None) -> str:
    """The ``compare.md`` report."""
    lv = _level(res)
    lines = [f"# compare: {' vs '.join(res.labels)}", ""]
    lines.append(f"- metric: {res.metric}; every model tuned on the same "
                 f"{len(res.search_images)} images and compared on the same "
                 f"{len(res.holdout_images)} held-out images (--holdout "
                 f"{res.holdout_fraction:g}, --seed {res.seed})")
    lines.append(f"- trials per study: {res.trials} asked; {res.n_boot} bootstrap resamples "
                 f"of the held-out images, {lv} percentile intervals")
    lines.append(f"- search space ({res.space.n_points()} grid points):")
    lines += [f"    {s}" for s in res.space.describe()]
    lines.append("")
    lines.append("## Models")
    lines += _table(["model", "cache", "study", "current parameters from"],
                    [[m.label, m.path, m.study_name, m.params_source] for m in res.models],
                    markdown=True)
    lines.append("")
    lines.append("## Held-out scores")
    lines.append(f"Mean per-image H-Mean on the held-out images with {lv} bootstrap intervals. "
                 f"'search H' is the best trial's score on the searched images; 'current "
                 f"params' is the first trial (the model's current parameters); 'tuning gain' "
                 f"is best - current, paired.")
    lines += _table(_MODEL_HEADER, _model_rows(res, markdown=True), markdown=True)
    official = [[m.label, f"{m.best.hmean:.4f}", f"{m.first.hmean:.4f}"] for m in res.models]
    if res.metric != "cleval":
        lines.append("")
        lines += _table(["model", "official H (best)", "official H (current)"], official,
                        markdown=True)
    lines.append("")
    lines.append("## Pairwise differences (each model at its own best parameters)")
    lines.append(f"Mean per-image H-Mean of the first model minus the second; the {lv} "
                 f"interval is a paired bootstrap (each resample draws held-out images once "
                 f"for both models). P(<=0) is the share of resamples where the first model "
                 f"does not win. Wins/losses/ties count held-out images.")
    lines += _table(["pair", f"difference [{lv}]", "P(<=0)", "wins/losses/ties", "verdict"],
                    _pair_rows(res), markdown=True)
    lines.append("")
    lines.append("## The same pairs at each model's current parameters (untuned)")
    lines += _table(["pair", f"difference [{lv}]", "P(<=0)"], _pair_rows(res, first=True),
                    markdown=True)
    lines.append("")
    lines.append("## Best parameters")
    lines += _table(["parameter"] + res.labels + [""], _param_rows(res), markdown=True)
    lines.append("")
    notes = list(res.notes)
    notes.append("the intervals cover which images were held out, not the randomness of the "
                 "search (another --seed may find other parameters); more --trials narrows "
                 "that part")
    for m in res.models:
        if m.ran_here == 0:
            notes.append(f"{m.label}: reused the existing study {m.study_name} "
                         f"({m.n_complete} complete trials)")
    lines.append("## Notes")
    lines += [f"- {n}" for n in notes]
    lines.append("")
    if out_dir is not None and files:
        lines.append(f"Files in {out_dir}: " + ", ".join(files))
    return "\n".join(lines) + "\n"


def _csv_text(res) -> str:
    header, rows = res.per_image_table()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow([r[0]] + [repr(float(v)) for v in r[1:]])
    return buf.getvalue()


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_outputs(res, out_dir: Path) -> List[Path]:
    """Write ``compare.md``, ``per_image.csv`` and ``compare.json`` to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = ["compare.md", "per_image.csv", "compare.json"]
    _write(out_dir / "per_image.csv", _csv_text(res))
    _write(out_dir / "compare.json", json.dumps(res.as_dict(), indent=2) + "\n")
    _write(out_dir / "compare.md", markdown_text(res, out_dir, names))
    return [out_dir / n for n in names]


def _default_out() -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(f"compare-{stamp}")
    k = 2
    while out.exists():
        out = Path(f"compare-{stamp}-{k}")
        k += 1
    return out


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------

class _Bars:
    """One tqdm bar per model over its complete trials, or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None
        self.label = None

    def __call__(self, label: str, done: int, total: int, best) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if label != self.label:
            self.close()
            self.label = label
            self.bar = tqdm(total=total, desc=f"compare {label}", unit="trial", file=sys.stderr,
                            dynamic_ncols=True)
        self.bar.n = min(done, total)
        if best is not None:
            self.bar.set_postfix({"best": f"{best:.4f}"}, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _cmd_compare(args) -> int:
    from ..search.compare import compare_caches, default_labels, parse_labels
    from ..search.space import build_space
    from .tune_post import _open_cache, announce_compiling

    t_start = time.perf_counter()
    if len(args.cache) < 2:
        raise CLIError("compare needs at least two caches (--cache A --cache B)")
    labels = parse_labels(args.names, len(args.cache)) or default_labels(args.cache)
    space = build_space(args.mode, args.space, args.param, args.fix)
    caches = [_open_cache(c, args.verify) for c in args.cache]
    out_dir = Path(args.out) if args.out else _default_out()

    bars = _Bars(not args.no_progress and sys.stderr.isatty())

    def on_model(m) -> None:
        bars.close()
        how = (f"{m.ran_here} trial(s) run now" if m.ran_here else "study reused")
        print(f"{m.label}: study {m.study_name}, {m.n_complete} complete ({how}); best "
              f"{m.search_best:.4f} on the searched images, {m.best_interval.estimate:.4f} "
              f"held out", file=sys.stderr)

    try:
        res = compare_caches(caches, labels, trials=args.trials, holdout=args.holdout,
                             seed=args.seed, metric=args.metric, space=space, jobs=args.jobs,
                             n_boot=args.bootstrap, on_trial=bars, on_model=on_model,
                             on_start=announce_compiling)
    finally:
        bars.close()
    write_outputs(res, out_dir)
    print(terminal_text(res), end="")
    print(f"compare: wrote compare.md, per_image.csv and compare.json to {out_dir} "
          f"({time.perf_counter() - t_start:.1f} s)", file=sys.stderr)
    return 0
