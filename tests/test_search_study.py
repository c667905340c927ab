"""Studies: naming, the first trial, counting complete trials, resuming, the journal."""

from __future__ import annotations

from decimal import Decimal

import optuna
import pytest

from unclip_tuner.cache import InMemoryMapStore
from unclip_tuner.postprocess.engine import FastEngine
from unclip_tuner.postprocess.params import PostProcessParams
from unclip_tuner.search.space import build_space
from unclip_tuner.search.study import (StudyError, Tuner, _repair_journal, complete_trials,
                                       open_study, run_trials, study_name)
from test_tune_post_cli import tiny_pages

CURRENT = PostProcessParams(thresh=0.3, box_thresh=0.4, max_candidates=500, use_polygon=True,
                            box_unclip_ratio=1.5, polygon_unclip_ratio=2.0)


@pytest.fixture(scope="module")
def engine():
    records, gt = tiny_pages(4, seed=3)
    e = FastEngine(InMemoryMapStore(records, gt), metric="cleval", jobs=2)
    yield e
    e.close()


def _tuner(engine, baseline=CURRENT, space=None):
    return Tuner(engine, space or build_space(), baseline, engine.names)


def test_study_name_covers_what_changes_the_objective():
    s = build_space()
    imgs = ["a.jpg", "b.jpg"]
    n = study_name(s, "cleval", CURRENT, imgs, "sha256:1")
    assert n.startswith("tune-cleval-polygon-") and n == study_name(s, "cleval", CURRENT, imgs, "sha256:1")
    assert n != study_name(build_space(params=["thresh=0.2:0.3:0.01"]), "cleval", CURRENT, imgs, "sha256:1")
    assert n != study_name(s, "iou", CURRENT, imgs, "sha256:1")
    assert n != study_name(s, "cleval", CURRENT.replace(max_candidates=300), imgs, "sha256:1")
    assert n != study_name(s, "cleval", CURRENT, imgs[:1], "sha256:1")
    assert n != study_name(s, "cleval", CURRENT, imgs, "sha256:2")


def test_first_trial_is_the_current_params_even_off_grid(engine, tmp_path):
    odd = CURRENT.replace(thresh=0.305, polygon_unclip_ratio=2.03)
    tuner = _tuner(engine, odd)
    with open_study("t-first", cache_dir=tmp_path, seed=1) as h:
        assert h.created
        assert run_trials(h, tuner, 4) == 4
        trials = h.study.get_trials()
    t0 = trials[0]
    assert t0.user_attrs["baseline"] and t0.user_attrs["params"] == odd.to_dict()
    assert t0.user_attrs["off_grid"] == ["thresh", "polygon_unclip_ratio"]
    assert t0.value == engine.evaluate(odd).hmean
    assert t0.user_attrs["recall"] == engine.evaluate(odd).recall
    assert not any(t.user_attrs.get("baseline") for t in trials[1:])
    # the other trials evaluate exact grid decimals, with the base's unsearched fields
    for t in trials[1:]:
        p = t.user_attrs["params"]
        assert len(Decimal(repr(p["thresh"])).as_tuple().digits) <= 2
        assert (p["max_candidates"], p["use_polygon"]) == (500, True)
        assert t.value == engine.evaluate(PostProcessParams.from_dict(p)).hmean


def test_counts_complete_trials_and_resumes(engine, tmp_path):
    tuner = _tuner(engine)
    with open_study("t-resume", cache_dir=tmp_path, seed=0) as h:
        run_trials(h, tuner, 3)
    with open_study("t-resume", cache_dir=tmp_path, seed=0) as h:
        assert not h.created and h.redone == []
        assert len(complete_trials(h.study)) == 3
        assert run_trials(h, tuner, 3) == 0
        assert run_trials(h, tuner, 6) == 3
        trials = h.study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6
    assert sum(bool(t.user_attrs.get("baseline")) for t in trials) == 1


def test_running_trials_of_a_dead_run_are_failed_and_redone(engine, tmp_path):
    tuner = _tuner(engine)
    with open_study("t-dead", cache_dir=tmp_path, seed=0) as h:
        run_trials(h, tuner, 2)
        # a trial that got its coordinates and never finished, as a killed process leaves it
        tuner.enqueue_baseline(h.study)
        t = h.study.ask()
        tuner.params_of(t)
        coords = dict(t.params)
    with open_study("t-dead", cache_dir=tmp_path, seed=0) as h:
        assert h.redone == [2]
        assert run_trials(h, tuner, 4) == 2
        trials = h.study.get_trials()
    assert trials[2].state.name == "FAIL"
    redo = [u for u in trials if u.user_attrs.get("redo_of") == 2]
    assert len(redo) == 1 and redo[0].params == coords and redo[0].state.name == "COMPLETE"
    assert len([u for u in trials if u.state.name == "COMPLETE"]) == 4


def test_baseline_redone_when_its_run_died(engine, tmp_path):
    tuner = _tuner(engine)
    with open_study("t-base", cache_dir=tmp_path, seed=0) as h:
        tuner.enqueue_baseline(h.study)
        t = h.study.ask()                      # the first trial starts, then the process dies
        tuner.params_of(t)
    with open_study("t-base", cache_dir=tmp_path, seed=0) as h:
        run_trials(h, tuner, 2)
        trials = h.study.get_trials()
    done = [u for u in trials if u.state.name == "COMPLETE"]
    assert len(done) == 2
    assert [u.user_attrs.get("baseline", False) for u in done] == [True, False]
    assert done[0].user_attrs["params"] == CURRENT.to_dict()


def test_journal_is_locked_and_repaired(engine, tmp_path):
    tuner = _tuner(engine)
    with open_study("t-lock", cache_dir=tmp_path) as h:
        run_trials(h, tuner, 2)
        with pytest.raises(StudyError, match="another tune-post is running this study"):
            open_study("t-lock", cache_dir=tmp_path)
    journal = tmp_path / "t-lock.journal"
    size = journal.stat().st_size
    with open(journal, "ab") as fh:               # a record cut by a kill
        fh.write(b'{"op_code": 5, "worker_id": "x", "trial_id": 0, "par')
    assert _repair_journal(journal) and journal.stat().st_size == size
    assert not _repair_journal(journal)
    with open(journal, "ab") as fh:
        fh.write(b'{"op_code": 5, "wor')
    with open_study("t-lock", cache_dir=tmp_path) as h:
        run_trials(h, tuner, 3)
        assert len(complete_trials(h.study)) == 3


def test_storage_url_errors_are_one_line(tmp_path):
    with pytest.raises(StudyError, match="must be a database URL"):
        open_study("x", storage="not-a-url")
    with pytest.raises(StudyError, match="cannot open the database") as info:
        open_study("x", storage="postgresql://nobody@127.0.0.1:1/none")
    assert "\n" not in str(info.value)
    # an RDB storage that works (SQLite) with heartbeats on
    url = f"sqlite:///{tmp_path / 's.db'}"
    with open_study("x", storage=url, heartbeat=5) as h:
        assert not h.single_worker
        assert isinstance(h.study.sampler, optuna.samplers.TPESampler)


def test_seeded_runs_repeat_and_resumed_runs_do_not_replay(engine, tmp_path):
    def coords(d, seed, n):
        d.mkdir(exist_ok=True)
        with open_study("t-seed", cache_dir=d, seed=seed) as h:
            run_trials(h, _tuner(engine), n)
            return [t.params for t in h.study.get_trials()]

    a = coords(tmp_path / "a", 5, 12)
    assert coords(tmp_path / "b", 5, 12) == a
    assert coords(tmp_path / "c", 6, 12) != a
    # a resumed study draws new proposals instead of repeating its first ones
    first = coords(tmp_path / "d", 5, 4)
    more = coords(tmp_path / "d", 5, 8)
    assert more[:4] == first and more[4:8] != first[1:5]
