"""The ``tune-post`` report: what was found, how sure we are, and what to paste.

Files written to the output folder:

``report.md``
    the text printed at the end of a run (Markdown: it pastes well into an issue);
``best.yaml``
    the best parameters (``PostProcessParams.from_dict(yaml.safe_load(...))`` loads them);
``summary.json``
    the same figures for scripts;
``trials.parquet``, ``trials.csv``
    every trial (see :mod:`.trials`);
``history.png``, ``importance.png``, ``thresh_ratio.png``
    plots (see :mod:`.plots`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..postprocess.params import PostProcessParams
from ..search.bootstrap import Interval
from ..search.space import SearchSpace
from .export import export_lines, format_number
from .trials import PARAM_COLUMNS, trial_params, trials_frame

__all__ = ["HoldoutResult", "TuneReport", "write_report", "best_and_first"]


@dataclass
class HoldoutResult:
    """Scores of the first and the best trial's parameters on the held-out images.

    Attributes
    ----------
    n_images : int
        Held-out images.
    first, best : Interval
        Mean per-image H-Mean with its bootstrap interval.
    diff : Interval
        ``best - first``, paired bootstrap.
    first_hmean, best_hmean : float
        The metric's own dataset H-Mean on the held-out images.
    """

    n_images: int
    first: Interval
    best: Interval
    diff: Interval
    first_hmean: float
    best_hmean: float

    def as_dict(self) -> Dict[str, Any]:
        return {"images": self.n_images, "first": self.first.as_dict(),
                "best": self.best.as_dict(), "best_minus_first": self.diff.as_dict(),
                "first_hmean": self.first_hmean, "best_hmean": self.best_hmean}


@dataclass
class TuneReport:
    """Everything the report shows.

    Attributes
    ----------
    study_name, storage : str
    metric : str
    target : str
        Code version the paste line is written for.
    space : SearchSpace
    base : PostProcessParams
        The first trial's parameters (unsearched fields of every trial).
    trials : list
        Every Optuna ``FrozenTrial`` of the study.
    n_search_images : int
    holdout : HoldoutResult, optional
    ran_here : int
        Trials run by this process.
    notes : list of str
    study : optuna.Study, optional
        For parameter importance.
    """

    study_name: str
    storage: str
    metric: str
    target: str
    space: SearchSpace
    base: PostProcessParams
    trials: List
    n_search_images: int
    holdout: Optional[HoldoutResult] = None
    ran_here: int = 0
    notes: List[str] = field(default_factory=list)
    study: Any = None


def best_and_first(trials: List):
    """``(best, first)`` among COMPLETE trials: highest value (earliest on ties), and the
    first trial (the user's parameters), either possibly ``None``."""
    done = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    done.sort(key=lambda t: t.number)
    best = None
    for t in done:
        if best is None or t.value > best.value:
            best = t
    first = next((t for t in done if t.user_attrs.get("baseline")), None)
    return best, first


def _write_atomic(path: Path, data, text: bool = True) -> None:
    """Write a file under a temporary name, then rename it (workers may share a folder)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if text:
        tmp.write_text(data, encoding="utf-8")
    else:
        data(tmp)
    os.replace(tmp, path)


def _md_table(header: List[str], rows: List[List[str]]) -> List[str]:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    def line(r):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows]


def _fmt(v) -> str:
    return "-" if v is None else format_number(v) if not isinstance(v, str) else v


def _f4(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def write_report(out_dir: Path, rep: TuneReport, plots: bool = True) -> str:
    """Write every report file to ``out_dir``; returns the report text (Markdown)."""
    import yaml

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    best, first = best_and_first(rep.trials)
    n_complete = sum(1 for t in rep.trials if t.state.name == "COMPLETE")
    n_failed = sum(1 for t in rep.trials if t.state.name == "FAIL")
    files: List[str] = []

    df = trials_frame(rep.trials, rep.space, rep.base)
    _write_atomic(out_dir / "trials.parquet", df.write_parquet, text=False)
    _write_atomic(out_dir / "trials.csv", df.write_csv, text=False)
    files += ["trials.parquet", "trials.csv"]

    lines = [f"# tune-post: {rep.study_name}", ""]
    lines.append(f"- metric: {rep.metric} H-Mean on {rep.n_search_images} images"
                 + (f" ({rep.holdout.n_images} more held out)" if rep.holdout else ""))
    lines.append(f"- trials: {n_complete} complete ({rep.ran_here} run now), {n_failed} failed")
    lines.append(f"- storage: {rep.storage}")
    lines.append(f"- search space ({rep.space.n_points()} grid points):")
    lines += [f"    {s}" for s in rep.space.describe()]
    lines.append("")
    if best is None:
        lines.append("No complete trial yet.")
        text = "\n".join(lines) + "\n"
        _write_atomic(out_dir / "report.md", text)
        return text

    best_p = PostProcessParams.from_dict(trial_params(best, rep.space, rep.base))
    first_p = PostProcessParams.from_dict(trial_params(first, rep.space, rep.base)) if first else None

    # parameters
    rows = []
    searched = set(rep.space.names)
    for name in PARAM_COLUMNS:
        b = getattr(best_p, name)
        f = getattr(first_p, name) if first_p else None
        if name not in searched and f == b and name not in ("thresh", "box_thresh", "use_polygon",
                                                          rep.space.ratio_name):
            continue
        mark = "searched" if name in searched else ("fixed" if name in rep.space.fixed_dict else "")
        rows.append([name, _fmt(f), _fmt(b), mark])
    lines.append("## Parameters")
    lines += _md_table(["parameter", "first trial (current)", "best", ""], rows)
    lines.append("")

    # scores
    lines.append("## Scores on the searched images")
    srows = []
    if first is not None:
        srows.append([f"first (trial {first.number})", _f4(first.value),
                      _f4(first.user_attrs.get("recall")), _f4(first.user_attrs.get("precision"))])
    srows.append([f"best (trial {best.number})", _f4(best.value),
                  _f4(best.user_attrs.get("recall")), _f4(best.user_attrs.get("precision"))])
    if first is not None:
        srows.append(["best - first", f"{best.value - first.value:+.4f}",
                      f"{best.user_attrs.get('recall', 0) - first.user_attrs.get('recall', 0):+.4f}",
                      f"{best.user_attrs.get('precision', 0) - first.user_attrs.get('precision', 0):+.4f}"])
    lines += _md_table(["", "H-Mean", "recall", "precision"], srows)
    lines.append("")
    if rep.holdout is not None:
        h = rep.holdout
        lines.append(f"## Holdout ({h.n_images} images kept out of the search)")
        lines.append(f"Mean per-image H-Mean with 95% bootstrap intervals "
                     f"({h.diff.n_boot} resamples of the images; the difference is paired):")
        lines += _md_table(["", "H-Mean [95% interval]"], [
            [f"first (trial {first.number if first else '-'})", h.first.format()],
            [f"best (trial {best.number})", h.best.format()],
            ["best - first", h.diff.format(signed=True)],
        ])
        verdict = ("the gain holds on unseen images" if h.diff.low > 0 else
                   "the best is worse on unseen images: over-fitted" if h.diff.high < 0 else
                   "the difference is within the noise on unseen images")
        lines.append(f"Share of resamples where best <= first: {h.diff.p_le_zero:.3f} ({verdict}).")
        if first is not None and best.value - first.value > 0:
            gap = (best.value - first.value) - h.diff.estimate
            lines.append(f"Gain on searched images {best.value - first.value:+.4f} vs held-out "
                         f"{h.diff.estimate:+.4f}: {gap:+.4f} is the optimism of the search.")
        lines.append("")

    # paste lines
    ex = export_lines(best_p, rep.target)
    lines.append(f"## Paste ({rep.target})")
    lines.append("```")
    lines += ex.lines
    lines.append("```")
    lines += [f"- {n}" for n in ex.notes]
    lines.append("")

    # best.yaml
    header = (f"# unclip-tuner tune-post, study {rep.study_name}\n"
              f"# best of {n_complete} complete trials: trial {best.number}, {rep.metric} H-Mean "
              f"{best.value:.6f} on {rep.n_search_images} images"
              + (f" (first trial {first.value:.6f})" if first is not None else "") + "\n")
    _write_atomic(out_dir / "best.yaml", header + yaml.safe_dump(best_p.to_dict(), sort_keys=False))
    files.append("best.yaml")

    # plots
    plot_notes: List[str] = []
    if plots:
        files += _plots(out_dir, rep, best, first, plot_notes)

    summary = {
        "study": rep.study_name, "storage": rep.storage, "metric": rep.metric,
        "target": rep.target, "space": rep.space.to_dict(),
        "n_complete": n_complete, "n_failed": n_failed, "ran_here": rep.ran_here,
        "search_images": rep.n_search_images,
        "best": {"trial": best.number, "hmean": best.value,
                 "recall": best.user_attrs.get("recall"),
                 "precision": best.user_attrs.get("precision"), "params": best_p.to_dict()},
        "first": None if first is None else {
            "trial": first.number, "hmean": first.value, "recall": first.user_attrs.get("recall"),
            "precision": first.user_attrs.get("precision"), "params": first_p.to_dict()},
        "holdout": rep.holdout.as_dict() if rep.holdout else None,
        "paste": {"target": rep.target, "lines": ex.lines, "notes": ex.notes},
    }
    _write_atomic(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    files.append("summary.json")

    notes = list(rep.notes) + plot_notes
    if notes:
        lines.append("## Notes")
        lines += [f"- {n}" for n in notes]
        lines.append("")
    lines.append(f"Files in {out_dir}: " + ", ".join(files + ["report.md"]))
    text = "\n".join(lines) + "\n"
    _write_atomic(out_dir / "report.md", text)
    return text


def _plots(out_dir: Path, rep: TuneReport, best, first, notes: List[str]) -> List[str]:
    from .plots import param_importance, plot_history, plot_importance, plot_thresh_ratio

    done = sorted([t for t in rep.trials if t.state.name == "COMPLETE" and t.value is not None],
                  key=lambda t: t.number)
    written = []
    plot_history([t.number for t in done], [t.value for t in done],
                 first.value if first else None, out_dir / "history.png", rep.metric)
    written.append("history.png")

    imp, method = (None, "no study object") if rep.study is None else param_importance(
        rep.study, list(rep.space.dims), done, lambda t: trial_params(t, rep.space, rep.base))
    if imp is not None:
        plot_importance(imp, method, out_dir / "importance.png")
        written.append("importance.png")
    else:
        notes.append(f"importance.png not written: {method}")

    ratio = rep.space.ratio_name
    if "thresh" in rep.space.names and ratio in rep.space.names:
        pts = [(trial_params(t, rep.space, rep.base), t.value) for t in done
               if not t.user_attrs.get("baseline")]
        pts = [(p, v) for p, v in pts if p is not None]
        if pts:
            bp = trial_params(best, rep.space, rep.base)
            fp = trial_params(first, rep.space, rep.base) if first else None
            plot_thresh_ratio([p["thresh"] for p, _ in pts], [p[ratio] for p, _ in pts],
                              [v for _, v in pts], ratio, out_dir / "thresh_ratio.png",
                              best=(bp["thresh"], bp[ratio]),
                              first=(fp["thresh"], fp[ratio]) if fp else None)
            written.append("thresh_ratio.png")
    else:
        notes.append(f"thresh_ratio.png not written: thresh and {ratio} are not both searched")
    return written
