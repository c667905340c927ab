"""PNG plots of a study, drawn with matplotlib's Agg canvas (no display, no global backend).

* ``history.png``: every complete trial's H-Mean, the best so far, the first trial's level;
* ``importance.png``: how much each searched parameter explains the H-Mean;
* ``thresh_ratio.png``: H-Mean over thresh x the unclip ratio (where both are searched).

Parameter importance comes from Optuna's PED-ANOVA evaluator when the installed Optuna
has it (no extra dependency), else its fANOVA evaluator (needs scikit-learn), else the
main-effect share computed here (:func:`main_effect_importance`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["plot_history", "plot_importance", "plot_thresh_ratio", "param_importance",
           "main_effect_importance"]


def _figure(width: float = 7.0, height: float = 4.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    """Save as PNG under a temporary name, then rename (workers may share a folder)."""
    import os

    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fig.savefig(str(tmp), format="png")
    os.replace(tmp, path)
    return path


def plot_history(numbers: Sequence[int], values: Sequence[float], first_value: Optional[float],
                 path: Path, metric: str = "cleval") -> Path:
    """Scatter of H-Mean per trial, the best-so-far line and the first trial's level."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    x = np.asarray(numbers, dtype=float)
    y = np.asarray(values, dtype=float)
    order = np.argsort(x)
    x, y = x[order], y[order]
    ax.scatter(x, y, s=10, alpha=0.6, label="trial", color="tab:blue")
    if len(y):
        ax.step(x, np.maximum.accumulate(y), where="post", color="tab:red", label="best so far")
    if first_value is not None:
        ax.axhline(first_value, color="gray", linestyle="--", linewidth=1,
                   label=f"first trial (current) {first_value:.4f}")
    if len(y):
        lo = np.quantile(y, 0.1)
        if first_value is not None:
            lo = min(lo, first_value)
        hi = y.max()
        pad = max(hi - lo, 1e-4) * 0.15
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{metric} H-Mean")
    ax.set_title("Optimization history")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_importance(importance: Dict[str, float], method: str, path: Path) -> Path:
    """Horizontal bars of parameter importance."""
    fig = _figure(6.0, 0.6 + 0.5 * max(len(importance), 1))
    ax = fig.add_subplot(1, 1, 1)
    names = list(importance)[::-1]
    vals = [importance[n] for n in names]
    ax.barh(names, vals, color="tab:green")
    for i, v in enumerate(vals):
        ax.text(v, i, f" {v:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, max(vals + [1e-9]) * 1.2)
    ax.set_xlabel("importance")
    ax.set_title(f"Parameter importance ({method})")
    return _save(fig, path)


def plot_thresh_ratio(thresh: Sequence[float], ratio: Sequence[float], values: Sequence[float],
                      ratio_name: str, path: Path, best: Optional[Tuple[float, float]] = None,
                      first: Optional[Tuple[float, float]] = None) -> Path:
    """H-Mean of every trial placed at its (thresh, ratio), colour = H-Mean."""
    fig = _figure(6.4, 4.8)
    ax = fig.add_subplot(1, 1, 1)
    v = np.asarray(values, dtype=float)
    vmin = np.quantile(v, 0.1) if len(v) else None
    sc = ax.scatter(thresh, ratio, c=v, cmap="viridis", s=28, vmin=vmin,
                    vmax=v.max() if len(v) else None, edgecolors="none")
    fig.colorbar(sc, ax=ax, label="H-Mean")
    if first is not None:
        ax.scatter([first[0]], [first[1]], marker="X", s=90, color="black", label="first (current)")
    if best is not None:
        ax.scatter([best[0]], [best[1]], marker="*", s=180, color="red", label="best")
    ax.set_xlabel("thresh")
    ax.set_ylabel(ratio_name)
    ax.set_title(f"H-Mean over thresh x {ratio_name}")
    if first is not None or best is not None:
        ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def main_effect_importance(columns: Dict[str, Sequence], values: Sequence[float],
                           bins: int = 8) -> Dict[str, float]:
    """Share of the variance of ``values`` explained by each column's main effect.

    Each column is cut into at most ``bins`` quantile bins (categorical columns: one bin per
    value); the importance is the between-bin variance of the bin means over the total
    variance, normalised to sum to 1 over the columns.
    """
    y = np.asarray(values, dtype=float)
    total = y.var()
    raw: Dict[str, float] = {}
    for name, col in columns.items():
        col = list(col)
        if total <= 0 or len(y) < 2:
            raw[name] = 0.0
            continue
        if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in col):
            x = np.asarray(col, dtype=float)
            edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
            labels = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, max(len(edges) - 2, 0))
        else:
            _, labels = np.unique(np.asarray([str(c) for c in col]), return_inverse=True)
        between = 0.0
        for lab in np.unique(labels):
            m = labels == lab
            between += m.sum() * (y[m].mean() - y.mean()) ** 2
        raw[name] = float(between / len(y) / total)
    s = sum(raw.values())
    return {k: (v / s if s > 0 else 0.0) for k, v in sorted(raw.items(), key=lambda kv: -kv[1])}


def param_importance(study, dims: List, trials: List, values_of) -> Tuple[Optional[Dict[str, float]], str]:
    """Importance of the searched parameters; returns ``(importance or None, method or note)``.

    Parameters
    ----------
    study : optuna.Study
    dims : list of search dimensions (``name``, ``param_name``)
    trials : list of complete FrozenTrial
    values_of : callable
        ``values_of(trial) -> dict`` of evaluated parameter values (for the fallback).
    """
    if len(dims) < 2:
        return None, "one searched parameter: importance is not informative"
    if len(trials) < 4:
        return None, "too few complete trials for parameter importance"
    import optuna

    params = [d.param_name for d in dims]
    rename = {d.param_name: d.name for d in dims}
    evaluators = []
    if hasattr(optuna.importance, "PedAnovaImportanceEvaluator"):
        evaluators.append(("PED-ANOVA", lambda: optuna.importance.PedAnovaImportanceEvaluator()))
    evaluators.append(("fANOVA", lambda: optuna.importance.FanovaImportanceEvaluator(seed=0)))
    for method, make in evaluators:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                imp = optuna.importance.get_param_importances(study, evaluator=make(),
                                                              params=params)
            out = {rename[k]: float(v) for k, v in imp.items() if k in rename}
            if out and all(np.isfinite(list(out.values()))):
                return dict(sorted(out.items(), key=lambda kv: -kv[1])), method
        except Exception:  # a missing optional dependency, too few distinct values...
            continue
    cols: Dict[str, list] = {d.name: [] for d in dims}
    ys = []
    for t in trials:
        vals = values_of(t)
        if vals is None:
            continue
        for d in dims:
            cols[d.name].append(vals.get(d.name))
        ys.append(t.value)
    return main_effect_importance(cols, ys), "main-effect variance share"
