"""The benchmark scripts run end to end on tiny synthetic inputs (each in a subprocess)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unclip_tuner.cache.base import MapRecord
from unclip_tuner.cache.importers import export_maps
from unclip_tuner.cache.store import MapCache
from unclip_tuner.io import write_dataset
from unclip_tuner.io.types import Dataset, ImageWords
from unclip_tuner.synthetic import synthetic_page

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def _run(script, *args, timeout=300):
    proc = subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 4-image cache and the same maps as a folder of .npz files with gt.json."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(21)
    recs, gt = [], Dataset()
    for i in range(4):
        w, h = int(rng.integers(400, 700)), int(rng.integers(600, 1000))
        prob, polys, m = synthetic_page(rng, size=192, n_words=14, image_size=(w, h),
                                        text_scale=0.6)
        name = f"page_{i}.jpg"
        recs.append(MapRecord(name, prob, m, w, h))
        gt[name] = ImageWords([(np.c_[p, np.ones(len(p))] @ m.T)[:, :2] for p in polys])
    with MapCache.create(root / "cache", {"tiny": 21}, gt=gt, fsync=False) as wr:
        for r in recs:
            wr.add(r)
    cache = MapCache.open(root / "cache")
    maps = root / "maps"
    export_maps(cache, maps)
    write_dataset(gt, maps / "gt.json")
    return cache, maps


def test_compare_ratios_smoke(tiny, tmp_path):
    cache, _ = tiny
    out = tmp_path / "cr"
    text = _run("compare_ratios.py", "--cache", cache.path, "--ratios", "1.8", "2.2",
                "--grid", "1.6:2.4:0.4", "--n-boot", "200", "--out", out)
    assert "| 1.8 |" in text and "| 2 |" in text and "| 2.2 |" in text
    res = json.loads((out / "compare_ratios.json").read_text())
    assert [r["ratio"] for r in res["ratios"]] == [1.8, 2.0, 2.2]
    ref = next(r for r in res["ratios"] if r["ratio"] == 2.0)
    assert ref["diff"] == 0.0 and ref["ties"] == 4 and ref["diff_ci"] == [0.0, 0.0]
    for r in res["ratios"]:
        assert r["wins"] + r["losses"] + r["ties"] == 4
        assert r["hmean_ci"][0] <= r["hmean_ci"][1]
    assert [g["ratio"] for g in res["grid"]] == [1.6, 2.0, 2.4]
    grid_ref = res["grid"][1]
    assert grid_ref["hmean"] == ref["hmean"] and grid_ref["diff"] == 0.0
    assert (out / "ratio_grid.png").stat().st_size > 1000
    assert (out / "compare_ratios.md").read_text().startswith("# Unclip ratio comparison")
    # the report and plot can be redrawn from the saved JSON
    again = tmp_path / "again"
    _run("compare_ratios.py", "--from-json", out / "compare_ratios.json", "--title",
         cache.path, "--out", again)
    assert (again / "compare_ratios.md").read_text() == (out / "compare_ratios.md").read_text()
    assert (again / "ratio_grid.png").is_file()


def test_compare_ratios_maps_folder_and_tuned_thresholds(tiny, tmp_path):
    _, maps = tiny
    out = tmp_path / "cr"
    _run("compare_ratios.py", "--maps", maps, "--ratios", "1.8", "--tune-thresh",
         "--thresh-grid", "0.2:0.3:0.1", "--box-grid", "0.4:0.5:0.1", "--no-grid",
         "--n-boot", "100", "--out", out)
    res = json.loads((out / "compare_ratios.json").read_text())
    assert res["images"] == 4 and res["tune_thresh"] is True
    for r in res["ratios"]:
        assert r["thresh"] in (0.2, 0.3) and r["box_thresh"] in (0.4, 0.5)
    assert not (out / "ratio_grid.png").exists()


def test_speed_smoke(tmp_path):
    out = tmp_path / "speed"
    text = _run("speed.py", "--n-images", 2, "--size", 192, "--words", 12, "--slow-images", 1,
                "--out", out)
    assert "ReferenceEngine (standing in" in text
    res = json.loads((out / "speed.json").read_text())
    rows = res["results"][0]["rows"]
    assert [r["trial"] for r in rows] == ["cold thresh", "new ratio, seen thresh",
                                          "new box_thresh only"]
    # the fast engine and the plain reference give the same per-image H-Means
    assert all(r["identical_h"] == r["compared"] == 1 for r in rows)


def test_speed_real_maps_option(tiny, tmp_path):
    _, maps = tiny
    text = _run("speed.py", "--n-images", 0, "--real-maps", maps, "--slow-images", 1)
    assert "real maps maps: 4 maps 192x192" in text


def test_real_data_skips_without_data(tmp_path):
    text = _run("real_data.py", "--data", tmp_path / "nothing", "--out", tmp_path / "out")
    assert "skipped" in text
    assert not (tmp_path / "out" / "real_data.md").exists()


@pytest.mark.parametrize("tuner", ["optuna", "tune-post"])
def test_real_data_with_imported_maps(tiny, tmp_path, tuner):
    if tuner == "tune-post":
        pytest.importorskip("unclip_tuner.commands.tune_post")
    _, maps = tiny
    out = tmp_path / "out"
    text = _run("real_data.py", "--data", tmp_path / "nothing", "--sets", "sroie_dev",
                "--maps-from", f"sroie_dev={maps}", "--trials", 3, "--holdout", 0.25,
                "--tuner", tuner, "--out", out)
    assert "sroie_dev" in text
    rows = json.loads((out / "real_data.json").read_text())
    assert rows[0]["search_images"] == 3 and rows[0]["holdout_images"] == 1
    assert rows[0]["best_search"] >= rows[0]["first_search"]
    assert (out / "real_data.md").read_text().startswith("# First trial vs tuned")


def test_real_data_second_maps_and_ensemble(tiny, tmp_path):
    _, maps = tiny
    out = tmp_path / "out"
    _run("real_data.py", "--data", tmp_path / "nothing", "--sets", "sroie_dev",
         "--maps-from", f"sroie_dev={maps}", "--second-maps", f"sroie_dev={maps}",
         "--trials", 3, "--holdout", 0.5, "--tuner", "optuna", "--out", out)
    rows = json.loads((out / "real_data.json").read_text())
    assert [r["set"] for r in rows] == ["sroie_dev", "sroie_dev [second maps]",
                                        "sroie_dev [ensemble 0.5/0.5]"]
    # the same maps twice: every variant is the first maps exactly
    for r in rows[1:]:
        assert r["best_params"] == rows[0]["best_params"]
        assert r["best_holdout"] == rows[0]["best_holdout"]
        d = r["vs_first_maps_holdout"]
        assert (d["estimate"], d["low"], d["high"]) == (0.0, 0.0, 0.0)
    assert "vs sroie_dev (first maps)" in (out / "real_data.md").read_text()


def test_offset_speed_smoke():
    """One page: every kernel offset equals pyclipper's (the script exits 1 otherwise)."""
    text = _run("offset_speed.py", "--pages", "1", "--repeat", "1")
    n = int(text.split(" candidate polygons")[0])
    assert n > 10
    assert f"identical to pyclipper (vertices and order): {n}/{n}" in text
    assert "ratio" in text


def test_stage_costs_smoke():
    """Three pages: every stage is timed and both passes are projected."""
    text = _run("stage_costs.py", "--n-images", "3", "--project", "10")
    for stage in ("threshold", "contours (OpenCV)", "unclip: raw offset", "unclip: union + rest",
                  "CLEval pair geometry", "CLEval matching", "whole engine"):
        assert text.count(stage) == (1 if stage in ("threshold", "contours (OpenCV)") else 2)
    assert text.count("with a zero-cost union sweep") == 2
