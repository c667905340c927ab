"""Every trial of a study as a table (polars): parameters, H-Mean, recall, precision.

Columns: ``number``, ``state``, ``first`` (the user's current parameters), ``hmean``,
``recall``, ``precision``, every :class:`PostProcessParams` field, ``seconds`` (evaluation
time), ``datetime_start``, ``datetime_complete``, ``off_grid`` (dimensions in which the
first trial lies off the grid) and ``redo_of`` (the trial a re-run replaces). Parameter values
are the ones evaluated (the exact ones, never grid indices); a trial that failed before
being evaluated has them only when they are known.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..postprocess.params import PostProcessParams
from ..search.space import GridDim, SearchSpace

__all__ = ["PARAM_COLUMNS", "trial_params", "trials_frame", "write_trials"]

PARAM_COLUMNS = tuple(f.name for f in fields(PostProcessParams))


def trial_params(trial, space: Optional[SearchSpace] = None,
                 base: Optional[PostProcessParams] = None) -> Optional[Dict]:
    """The parameters a trial evaluated (or would have), as a dict; ``None`` if unknown."""
    p = trial.user_attrs.get("params")
    if p is not None:
        return dict(p)
    if trial.user_attrs.get("baseline_params") is not None:
        return dict(trial.user_attrs["baseline_params"])
    if space is not None and base is not None:
        values = {}
        for d in space.dims:
            if d.param_name not in trial.params:
                return None
            v = trial.params[d.param_name]
            values[d.name] = d.value(v) if isinstance(d, GridDim) else v
        try:
            return space.base(base).replace(**values).to_dict()
        except ValueError:
            return None
    return None


def _schema():
    import polars as pl

    schema = {"number": pl.Int64, "state": pl.String, "first": pl.Boolean, "hmean": pl.Float64,
              "recall": pl.Float64, "precision": pl.Float64}
    kinds = {"thresh": pl.Float64, "box_thresh": pl.Float64, "max_candidates": pl.Int64,
             "use_polygon": pl.Boolean, "box_unclip_ratio": pl.Float64,
             "polygon_unclip_ratio": pl.Float64, "min_size": pl.Float64,
             "use_dilation": pl.Boolean, "score_mode": pl.String}
    for name in PARAM_COLUMNS:
        schema[name] = kinds.get(name, pl.String)
    schema.update({"seconds": pl.Float64, "datetime_start": pl.String,
                   "datetime_complete": pl.String, "off_grid": pl.String, "redo_of": pl.Int64})
    return schema


def trials_frame(trials: List, space: Optional[SearchSpace] = None,
                 base: Optional[PostProcessParams] = None):
    """A polars DataFrame of ``trials`` (Optuna ``FrozenTrial`` objects), sorted by number."""
    import polars as pl

    schema = _schema()
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        p = trial_params(t, space, base) or {}
        row = {
            "number": t.number,
            "state": t.state.name,
            "first": bool(t.user_attrs.get("baseline", False)),
            "hmean": float(t.value) if t.value is not None else None,
            "recall": t.user_attrs.get("recall"),
            "precision": t.user_attrs.get("precision"),
            "seconds": t.user_attrs.get("seconds"),
            "datetime_start": t.datetime_start.isoformat() if t.datetime_start else None,
            "datetime_complete": t.datetime_complete.isoformat() if t.datetime_complete else None,
            "off_grid": ",".join(t.user_attrs.get("off_grid") or []) or None,
            "redo_of": t.user_attrs.get("redo_of"),
        }
        for name in PARAM_COLUMNS:
            v = p.get(name)
            if v is not None and name == "min_size":
                v = float(v)
            row[name] = v
        rows.append(row)
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


def write_trials(df, out_dir: Path) -> Tuple[Path, Path]:
    """Write ``trials.parquet`` and ``trials.csv``; returns their paths."""
    out_dir = Path(out_dir)
    pq, csv = out_dir / "trials.parquet", out_dir / "trials.csv"
    df.write_parquet(pq)
    df.write_csv(csv)
    return pq, csv
