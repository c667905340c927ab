"""Report files from a real (tiny) study: tables, best.yaml, trials, plots."""

from __future__ import annotations

import json

import numpy as np
import optuna
import polars as pl
import pytest
import yaml

from unclip_tuner.cache import InMemoryMapStore
from unclip_tuner.postprocess.engine import FastEngine
from unclip_tuner.postprocess.params import PostProcessParams
from unclip_tuner.report.plots import main_effect_importance
from unclip_tuner.report.writer import TuneReport, best_and_first, write_report
from unclip_tuner.search.bootstrap import bootstrap_mean, paired_bootstrap_diff
from unclip_tuner.report.writer import HoldoutResult
from unclip_tuner.search.space import build_space
from unclip_tuner.search.study import Tuner, open_study, run_trials
from test_tune_post_cli import tiny_pages

CURRENT = PostProcessParams(thresh=0.3, box_thresh=0.4, max_candidates=500, use_polygon=True)


@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    records, gt = tiny_pages(4, seed=4)
    engine = FastEngine(InMemoryMapStore(records, gt), jobs=1)
    space = build_space()
    d = tmp_path_factory.mktemp("study")
    handle = open_study("t-report", cache_dir=d, seed=2)
    run_trials(handle, Tuner(engine, space, CURRENT, engine.names), 12)
    yield handle, space, engine
    handle.close()
    engine.close()


def test_report_files_and_best_yaml_round_trip(study_run, tmp_path):
    handle, space, engine = study_run
    trials = handle.study.get_trials()
    best, first = best_and_first(trials)
    assert first.number == 0 and best.value == max(t.value for t in trials)
    h = [s.hmean for s in engine.evaluate(CURRENT).per_image]
    hb = [s.hmean for s in engine.evaluate(PostProcessParams.from_dict(best.user_attrs["params"])).per_image]
    hold = HoldoutResult(4, bootstrap_mean(h, 100), bootstrap_mean(hb, 100),
                         paired_bootstrap_diff(hb, h, 100), float(np.mean(h)), float(np.mean(hb)))
    rep = TuneReport("t-report", "journal", "cleval", "seed-head", space, CURRENT, trials, 4,
                     holdout=hold, ran_here=12, study=handle.study)
    text = write_report(tmp_path, rep)
    for f in ("report.md", "best.yaml", "summary.json", "trials.parquet", "trials.csv",
              "history.png", "importance.png", "thresh_ratio.png"):
        assert (tmp_path / f).is_file(), f
    loaded = PostProcessParams.from_dict(yaml.safe_load((tmp_path / "best.yaml").read_text()))
    assert loaded.to_dict() == best.user_attrs["params"]
    df = pl.read_parquet(tmp_path / "trials.parquet")
    assert df["number"].to_list() == list(range(12))
    assert df["hmean"].to_list() == [t.value for t in trials]
    assert df["recall"].to_list() == [t.user_attrs["recall"] for t in trials]
    assert df["precision"].to_list() == [t.user_attrs["precision"] for t in trials]
    csv = pl.read_csv(tmp_path / "trials.csv")
    assert csv.columns == df.columns and csv.height == 12
    assert np.allclose(csv["hmean"].to_numpy(), df["hmean"].to_numpy(), rtol=0, atol=1e-15)
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["best"]["trial"] == best.number and s["first"]["params"] == CURRENT.to_dict()
    assert "models.head.postprocess.unclip_ratio=" in text
    assert f"best (trial {best.number})" in text and "## Holdout (4 images" in text
    assert (tmp_path / "report.md").read_text() == text


def test_report_without_plots_and_with_failed_trials(study_run, tmp_path):
    handle, space, _ = study_run
    trials = list(handle.study.get_trials())
    failed = optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params={},
                                       distributions={})
    rep = TuneReport("t", "journal", "cleval", "karmakaryx", space, CURRENT, trials + [failed], 4)
    text = write_report(tmp_path, rep, plots=False)
    assert "12 complete (0 run now), 1 failed" in text
    assert not list(tmp_path.glob("*.png"))
    df = pl.read_parquet(tmp_path / "trials.parquet")
    assert df.height == 13 and df.filter(pl.col("state") == "FAIL")["hmean"].null_count() == 1


def test_main_effect_importance_known_case():
    rng = np.random.default_rng(0)
    x1 = rng.choice(np.arange(0.1, 0.41, 0.01), 300)
    x2 = rng.choice([1.2, 1.5, 2.0], 300)
    y = (x1 - 0.25) ** 2 * -10                      # depends on x1 only
    imp = main_effect_importance({"thresh": x1, "ratio": x2}, y)
    assert list(imp) == ["thresh", "ratio"]
    assert imp["thresh"] > 0.95 and imp["ratio"] < 0.05
    assert sum(imp.values()) == pytest.approx(1.0)
