"""``tune-post`` end to end on tiny synthetic caches: the first trial, resuming (also after
``kill -9``), new studies for new spaces, clear messages for bad input, the report files,
and no torch import."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from unclip_tuner.cache import MapCache, MapRecord
from unclip_tuner.cli import main
from unclip_tuner.io.types import Dataset, ImageWords
from unclip_tuner.postprocess.params import PostProcessParams
from unclip_tuner.synthetic import synthetic_page

REPO = Path(__file__).resolve().parents[1]

CURRENT = {"thresh": 0.3, "box_thresh": 0.4, "max_candidates": 500, "use_polygon": True,
           "box_unclip_ratio": 1.5, "polygon_unclip_ratio": 2.0}


def tiny_pages(n: int = 6, seed: int = 1, size: int = 160, words: int = 12):
    """``n`` small synthetic pages: map records and their ground truth in image pixels."""
    rng = np.random.default_rng(seed)
    records, gt = [], {}
    for i in range(n):
        prob, polys, matrix = synthetic_page(rng, size=size, n_words=words, image_size=(120, 160),
                                             text_scale=1.0, n_specks=4)
        name = f"img_{i:02d}.jpg"
        records.append(MapRecord(name, prob, matrix, 120, 160))
        # ground truth in image pixels, rounded like a loaded annotation file
        gt[name] = ImageWords([np.round(p @ matrix[:2, :2].T + matrix[:2, 2]) for p in polys])
    return records, Dataset(gt)


def make_tiny_cache(path: Path, n: int = 6, seed: int = 1, meta=None, with_gt: bool = True) -> Path:
    """A closed on-disk map cache of :func:`tiny_pages` (current parameters in the manifest)."""
    records, gt = tiny_pages(n, seed)
    meta = {"params": dict(CURRENT), "target": "karmakaryx"} if meta is None else meta
    with MapCache.create(path, {"model": f"tiny-{seed}"}, meta=meta, gt=gt if with_gt else None,
                         fsync=False) as writer:
        for r in records:
            writer.add(r)
    return Path(path)


def run_cli(*args) -> int:
    return main(["tune-post", *map(str, args)])


def study_of(out_dir: Path):
    return json.loads((out_dir / "summary.json").read_text())


def only_out_dir(cache: Path) -> Path:
    dirs = sorted((cache / "tune").iterdir())
    assert len(dirs) == 1, dirs
    return dirs[0]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return make_tiny_cache(tmp_path_factory.mktemp("tune") / "cache")


# --------------------------------------------------------------------------------------------

def test_first_trial_is_current_params_and_report(tmp_path, capsys):
    cache = make_tiny_cache(tmp_path / "cache")
    assert run_cli("--cache", cache, "--trials", 6, "--holdout", 0.34, "--jobs", 2,
                   "--no-progress", "--bootstrap", 200) == 0
    out = capsys.readouterr().out
    out_dir = only_out_dir(cache)
    s = study_of(out_dir)
    assert s["n_complete"] == 6 and s["ran_here"] == 6
    assert s["first"]["trial"] == 0
    assert s["first"]["params"] == PostProcessParams.from_dict(CURRENT).to_dict()
    # the study's journal is in the cache folder, named after the study
    assert (cache / f"{s['study']}.journal").is_file()
    for f in ("report.md", "best.yaml", "summary.json", "trials.parquet", "trials.csv",
              "history.png", "importance.png", "thresh_ratio.png"):
        assert (out_dir / f).is_file(), f
    for f in ("history.png", "importance.png", "thresh_ratio.png"):
        assert (out_dir / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import polars as pl
    import yaml

    df = pl.read_parquet(out_dir / "trials.parquet")
    assert df.height == 6 and df["first"][0] and not df["first"][1:].any()
    assert df["thresh"][0] == 0.3 and df["polygon_unclip_ratio"][0] == 2.0
    assert pl.read_csv(out_dir / "trials.csv").height == 6
    best = PostProcessParams.from_dict(yaml.safe_load((out_dir / "best.yaml").read_text()))
    assert best.to_dict() == s["best"]["params"]
    assert s["best"]["hmean"] == df["hmean"].max()
    # holdout: 2 of 6 images, intervals around their estimates
    h = s["holdout"]
    assert h["images"] == 2 and s["search_images"] == 4
    for key in ("first", "best", "best_minus_first"):
        assert h[key]["low"] <= h[key]["estimate"] <= h[key]["high"]
    assert "models.head.postprocess.polygon_unclip_ratio=" in out
    assert "## Holdout" in out


def test_resume_counts_complete_trials_and_space_change_starts_new_study(tmp_path, capsys):
    cache = make_tiny_cache(tmp_path / "cache")
    assert run_cli("--cache", cache, "--trials", 4, "--no-progress", "--no-plots") == 0
    out_dir = only_out_dir(cache)
    assert study_of(out_dir)["n_complete"] == 4
    assert run_cli("--cache", cache, "--trials", 7, "--no-progress", "--no-plots") == 0
    s = study_of(out_dir)
    assert s["n_complete"] == 7 and s["ran_here"] == 3
    # already there: nothing to run
    assert run_cli("--cache", cache, "--trials", 7, "--no-progress", "--no-plots") == 0
    assert study_of(out_dir)["ran_here"] == 0
    # a changed space is another study (its own journal and report folder)
    assert run_cli("--cache", cache, "--trials", 3, "--param", "thresh=0.2:0.4:0.02",
                   "--no-progress", "--no-plots") == 0
    journals = sorted(cache.glob("*.journal"))
    assert len(journals) == 2
    dirs = sorted((cache / "tune").iterdir())
    assert len(dirs) == 2
    new = [d for d in dirs if d != out_dir][0]
    assert study_of(new)["n_complete"] == 3
    # so is another metric
    assert run_cli("--cache", cache, "--trials", 2, "--metric", "iou", "--no-progress",
                   "--no-plots") == 0
    assert len(sorted(cache.glob("*.journal"))) == 3
    capsys.readouterr()


def test_fixed_and_box_mode(tmp_path, capsys):
    cache = make_tiny_cache(tmp_path / "cache")
    assert run_cli("--cache", cache, "--trials", 5, "--mode", "box", "--fix", "box_thresh=0.45",
                   "--target", "seed-head", "--no-progress", "--no-plots") == 0
    out = capsys.readouterr().out
    s = study_of(only_out_dir(cache))
    import polars as pl

    df = pl.read_csv(only_out_dir(cache) / "trials.csv")
    rest = df.filter(~pl.col("first"))
    # every searched trial runs box mode with the fixed box_thresh; the first is the user's
    assert rest["use_polygon"].to_list() == [False] * rest.height
    assert rest["box_thresh"].to_list() == [0.45] * rest.height
    assert rest["polygon_unclip_ratio"].to_list() == [2.0] * rest.height
    assert df.filter(pl.col("first"))["use_polygon"][0] is True
    assert "models.head.postprocess.unclip_ratio=" in out
    assert s["space"]["mode"] == "box" and "box_unclip_ratio" in s["space"]["dims"]


@pytest.mark.parametrize("args, expect", [
    (["--param", "thresh=0.5:0.2:0.01"], "thresh min 0.5 > max 0.2"),
    (["--param", "nope=1:2:1"], "unknown parameter 'nope'"),
    (["--param", "box_thresh=0.2:0.8:0.07"], "does not divide the range"),
    (["--param", "polygon_unclip_ratio=0:2:0.5"], "must be > 0"),
    (["--fix", "thresh=1.5"], "thresh must be in (0, 1)"),
])
def test_bad_space_is_one_line(cache, capsys, args, expect):
    assert run_cli("--cache", cache, "--trials", 2, *args) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and len(err.splitlines()) == 1, err


def test_missing_and_stale_cache_messages(tmp_path, capsys):
    assert run_cli("--cache", tmp_path / "nowhere", "--trials", 2) == 2
    assert "no such cache folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert run_cli("--cache", tmp_path / "empty", "--trials", 2) == 2
    assert "not a map cache" in capsys.readouterr().err
    # a cache without ground truth
    nogt = make_tiny_cache(tmp_path / "nogt", n=2, with_gt=False)
    assert run_cli("--cache", nogt, "--trials", 2) == 2
    assert "no ground truth" in capsys.readouterr().err
    # a map truncated after the cache was written
    bad = make_tiny_cache(tmp_path / "bad", n=3)
    victim = sorted((bad / "maps").iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:100])
    assert run_cli("--cache", bad, "--trials", 2) == 2
    err = capsys.readouterr().err.strip()
    assert "corrupt map" in err and len(err.splitlines()) == 1
    # the same damage found during the search (no check before it): one line, trial failed
    assert run_cli("--cache", bad, "--trials", 2, "--verify", "none", "--no-progress") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "unreadable map" in err[-1] and "Traceback" not in "\n".join(err)
    # an interrupted cache-maps run: maps written after the index (pending journal rows)
    records, gt = tiny_pages(3, seed=5)
    w = MapCache.create(tmp_path / "pending", {"model": "p"}, gt=gt, fsync=False, flush_every=100)
    for r in records:
        w.add(r)
    w.abort()
    assert run_cli("--cache", tmp_path / "pending", "--trials", 2) == 2
    err = capsys.readouterr().err
    assert "incomplete" in err and "run cache-maps again" in err


def _complete_count(journal: Path, name: str) -> int:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(journal)))
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return 0
    return len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))


def test_resume_after_kill_9(tmp_path):
    """A tune-post process killed with SIGKILL mid-study; the same command finishes it."""
    cache = make_tiny_cache(tmp_path / "cache", n=4)
    n = 60
    cmd = [sys.executable, "-m", "unclip_tuner", "tune-post", "--cache", str(cache),
           "--trials", str(n), "--no-progress", "--no-plots", "--jobs", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    journal = None
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            found = sorted(cache.glob("*.journal"))
            if found:
                journal = found[0]
                if _complete_count(journal, journal.stem) >= 3:
                    break
            if proc.poll() is not None:
                pytest.fail(f"tune-post ended early: {proc.stderr.read().decode()}")
            time.sleep(0.02)
        else:
            pytest.fail("tune-post made no progress")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    killed_at = _complete_count(journal, journal.stem)
    assert 3 <= killed_at < n

    # A second killed worker leaves a RUNNING trial for sure: it asks for a trial and dies.
    script = textwrap.dedent(f"""
        import os, signal, optuna
        from optuna.storages.journal import JournalFileBackend, JournalStorage
        st = optuna.load_study(study_name={journal.stem!r},
                               storage=JournalStorage(JournalFileBackend({str(journal)!r})))
        st.ask()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    subprocess.run([sys.executable, "-c", script], cwd=REPO)

    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert "marked failed and queued again" in res.stderr
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    study = optuna.load_study(study_name=journal.stem,
                              storage=JournalStorage(JournalFileBackend(str(journal))))
    trials = study.get_trials()
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == n
    assert "RUNNING" not in states and "WAITING" not in states
    assert states.count("FAIL") >= 1
    # exactly one first trial, and it is trial 0
    firsts = [t.number for t in trials if t.user_attrs.get("baseline") and t.state.name == "COMPLETE"]
    assert firsts == [0]
    # the failed trials that had sampled coordinates were queued again with them; the
    # one killed right after asking (no coordinates yet) is simply replaced by a new trial
    for t in trials:
        redo = [u for u in trials if u.user_attrs.get("redo_of") == t.number]
        if t.state.name == "FAIL" and t.params:
            # a trial killed while sampling holds only some coordinates: those are kept,
            # the rest are sampled again
            assert len(redo) == 1
            assert all(redo[0].params.get(k) == v for k, v in t.params.items())
        else:
            assert redo == []
    summary = study_of(cache / "tune" / journal.stem)
    assert summary["n_complete"] == n


def test_second_worker_on_journal_is_refused(tmp_path, capsys):
    from unclip_tuner.search.study import open_study

    cache = make_tiny_cache(tmp_path / "cache", n=2)
    assert run_cli("--cache", cache, "--trials", 2, "--no-progress", "--no-plots") == 0
    name = only_out_dir(cache).name
    capsys.readouterr()
    with open_study(name, cache_dir=cache):
        assert run_cli("--cache", cache, "--trials", 3, "--no-progress", "--no-plots") == 2
    err = capsys.readouterr().err
    assert "another tune-post is running this study" in err


def test_tune_post_never_imports_torch(tmp_path):
    cache = make_tiny_cache(tmp_path / "cache", n=2)
    # torch is installed where the model tests run: the check is that nothing loads it
    script = textwrap.dedent(f"""
        import sys
        from unclip_tuner.cli import main
        rc = main(["tune-post", "--cache", {str(cache)!r}, "--trials", "3", "--no-progress",
                   "--holdout", "0.5", "--bootstrap", "50"])
        assert rc == 0, rc
        loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        assert not loaded, loaded
        print("NO-TORCH-OK")
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert "NO-TORCH-OK" in res.stdout


def test_console_alias_routes_to_tune_post(cache):
    from unclip_tuner.cli import build_parser

    args = build_parser().parse_args(["tune-post", "--cache", str(cache), "--trials", "3"])
    assert args.func.__module__ == "unclip_tuner.commands.tune_post"


def test_cold_kernel_cache_is_announced(tmp_path, monkeypatch, capsys):
    from unclip_tuner.commands import tune_post

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "empty-numba-cache"))
    assert tune_post.kernels_cache_cold()
    (tmp_path / "empty-numba-cache").mkdir()
    assert tune_post.kernels_cache_cold()
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    cache = make_tiny_cache(tmp_path / "cache", n=2)
    monkeypatch.setattr(tune_post, "kernels_cache_cold", lambda: True)
    assert run_cli("--cache", cache, "--trials", 2, "--no-progress", "--no-plots") == 0
    captured = capsys.readouterr()
    assert "compiling the Numba kernels" in captured.err
    assert "this run compiled the Numba kernels" in captured.out
