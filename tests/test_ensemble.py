"""Map ensembles: weighted averages of caches, exact where they must be, aligned grids."""

import argparse

import numpy as np
import pytest

from unclip_tuner.cache.base import InMemoryMapStore, MapRecord
from unclip_tuner.cache.ensemble import (average_maps, normalise_weights, warp_to_grid,
                                         write_ensemble)
from unclip_tuner.cache.store import MapCache
from unclip_tuner.io.types import Dataset, ImageWords
from unclip_tuner.synthetic import synthetic_page


def _pages(n, seed, size=96):
    rng = np.random.default_rng(seed)
    recs, gt = [], Dataset()
    for i in range(n):
        w, h = int(rng.integers(300, 500)), int(rng.integers(500, 900))
        prob, polys, m = synthetic_page(rng, size=size, n_words=8, image_size=(w, h),
                                        text_scale=0.5)
        name = f"img_{i}.jpg"
        recs.append(MapRecord(name, prob, m, w, h))
        gt[name] = ImageWords([(np.c_[p, np.ones(len(p))] @ m.T)[:, :2] for p in polys])
    return recs, gt


def _cache(path, recs, gt, tag):
    with MapCache.create(path, {"test": tag}, gt=gt, fsync=False) as w:
        for r in recs:
            w.add(r)
    return MapCache.open(path)


@pytest.fixture
def two_identical(tmp_path):
    recs, gt = _pages(3, seed=1)
    a = _cache(tmp_path / "a", recs, gt, "a")
    b = _cache(tmp_path / "b", recs, gt, "b")
    return a, b


def _other_maps(recs, seed):
    rng = np.random.default_rng(seed)
    out = []
    for r in recs:
        noise = rng.random(r.prob.shape, dtype=np.float32)
        out.append(MapRecord(r.name, noise, r.inverse_matrix, r.width, r.height))
    return out


def test_weights_one_zero_reproduce_the_first_cache_bit_for_bit(tmp_path):
    recs, gt = _pages(3, seed=2)
    a = _cache(tmp_path / "a", recs, gt, "a")
    b = _cache(tmp_path / "b", _other_maps(recs, 5), gt, "b")
    lazy = average_maps([a, b], [1, 0])
    out = write_ensemble([a, b], [1.0, 0.0], tmp_path / "c")
    for name in a.names():
        ra = a.get(name)
        for rec in (lazy.get(name), out.get(name)):
            assert rec.prob.dtype == np.float32
            assert rec.prob.tobytes() == ra.prob.tobytes()
            assert np.array_equal(rec.inverse_matrix, ra.inverse_matrix)
            assert (rec.width, rec.height) == (ra.width, ra.height)
    # weight 0 on the first store: the second store's maps, exactly
    lazy0 = average_maps([a, b], [0, 2.5])
    for name in a.names():
        assert lazy0.get(name).prob.tobytes() == b.get(name).prob.tobytes()


def test_half_half_of_identical_caches_is_exact(two_identical, tmp_path):
    a, b = two_identical
    out = write_ensemble([a, b], [0.5, 0.5], tmp_path / "c")
    assert out.names() == a.names()
    for name in a.names():
        assert out.get(name).prob.tobytes() == a.get(name).prob.tobytes()
    # equal weights by default, and three identical stores with weights 1, 1, 2
    for rec in (average_maps([a, b]).get(a.names()[0]),
                average_maps([a, b, a], [1, 1, 2]).get(a.names()[0])):
        assert rec.prob.tobytes() == a.get(a.names()[0]).prob.tobytes()


def test_weighted_average_values_and_normalisation(tmp_path):
    recs, gt = _pages(2, seed=3)
    other = _other_maps(recs, 7)
    a = InMemoryMapStore(recs, gt)
    b = InMemoryMapStore(other)
    e1 = average_maps([a, b], [0.6, 0.4])
    e2 = average_maps([a, b], [3, 2])          # same weights once divided by their sum
    assert e1.weights == pytest.approx([0.6, 0.4], abs=1e-15)
    for ra, rb in zip(recs, other):
        expect = (0.6 * ra.prob.astype(np.float64) + 0.4 * rb.prob.astype(np.float64)).astype(np.float32)
        got = e1.get(ra.name).prob
        assert np.array_equal(got, expect)
        assert np.array_equal(e2.get(ra.name).prob, got)
        assert got.min() >= 0 and got.max() <= 1
    assert e1.gt is gt
    assert e1.meta["ensemble"]["weights"] == e1.weights


def test_normalise_weights_errors():
    assert normalise_weights(None, 4) == [0.25] * 4
    with pytest.raises(ValueError, match="2 weight"):
        normalise_weights([1, 2], 3)
    with pytest.raises(ValueError, match=">= 0"):
        normalise_weights([1, -1], 2)
    with pytest.raises(ValueError, match="positive"):
        normalise_weights([0, 0], 2)
    with pytest.raises(ValueError, match="finite"):
        normalise_weights([float("nan"), 1], 2)


def test_different_images_or_sizes_are_refused():
    recs, gt = _pages(3, seed=4)
    a = InMemoryMapStore(recs, gt)
    with pytest.raises(ValueError, match="same images.*lacks 1 image"):
        average_maps([a, InMemoryMapStore(recs[:2])])
    renamed = [MapRecord("other.jpg", recs[0].prob, recs[0].inverse_matrix, recs[0].width,
                         recs[0].height)] + recs[1:]
    with pytest.raises(ValueError, match="same images"):
        average_maps([a, InMemoryMapStore(renamed)])
    resized = [MapRecord(r.name, r.prob, r.inverse_matrix, r.width + 1, r.height) for r in recs]
    with pytest.raises(ValueError, match="original image size differs"):
        average_maps([a, InMemoryMapStore(resized)])


def _upsampled(recs):
    """The same maps on a grid twice as fine: pixel (2x, 2y) holds the value of (x, y)."""
    out = []
    half = np.diag([0.5, 0.5, 1.0])
    for r in recs:
        big = np.kron(r.prob, np.ones((2, 2), dtype=np.float32))
        out.append(MapRecord(r.name, big, r.inverse_matrix @ half, r.width, r.height))
    return out


def test_other_grids_are_warped_through_the_inverse_matrices():
    recs, gt = _pages(2, seed=6, size=64)
    a = InMemoryMapStore(recs, gt)
    b = InMemoryMapStore(_upsampled(recs))
    ens = average_maps([a, b], [0.5, 0.5])
    for r in recs:
        got = ens.get(r.name)
        assert got.prob.shape == r.prob.shape
        assert np.array_equal(got.inverse_matrix, r.inverse_matrix)
        # every first-store pixel lands on an integer pixel of the fine grid
        np.testing.assert_allclose(got.prob, r.prob, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="different network grids"):
        average_maps([a, b], [0.5, 0.5], align=False).get(recs[0].name)
    # the other way round: the fine grid as reference samples between coarse pixels
    back = average_maps([b, a], [0.0, 1.0]).get(recs[0].name)
    assert back.prob.shape == (128, 128)
    direct = warp_to_grid(recs[0].prob, recs[0].inverse_matrix, b.get(recs[0].name).inverse_matrix,
                          (128, 128))
    assert np.array_equal(back.prob, np.clip(direct, 0, 1))
    np.testing.assert_allclose(back.prob[::2, ::2], recs[0].prob, rtol=0, atol=1e-6)


def test_singular_matrix_is_refused():
    recs, gt = _pages(1, seed=8, size=32)
    bad = [MapRecord(recs[0].name, np.zeros((16, 16), np.float32), np.diag([0.0, 1.0, 1.0]),
                     recs[0].width, recs[0].height)]
    with pytest.raises(ValueError, match="singular"):
        average_maps([InMemoryMapStore(recs, gt), InMemoryMapStore(bad)]).get(recs[0].name)


def test_write_ensemble_refuses_in_memory_stores_and_its_own_input(two_identical, tmp_path):
    a, b = two_identical
    recs, gt = _pages(3, seed=1)
    with pytest.raises(ValueError, match="on-disk caches"):
        write_ensemble([InMemoryMapStore(recs, gt), b], [1, 1], tmp_path / "x")
    with pytest.raises(ValueError, match="must not be one of the inputs"):
        write_ensemble([a, b], [1, 1], a.path, overwrite=True)


def _run_cli(argv):
    from unclip_tuner.commands import ensemble

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    ensemble.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_writes_a_cache_with_gt_and_reports_normalised_weights(two_identical, tmp_path, capsys):
    a, b = two_identical
    out = tmp_path / "c"
    assert _run_cli(["ensemble", str(a.path), str(b.path), "--weights", "3", "3",
                     "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr()
    assert "normalised to 0.5 0.5" in err.err
    assert "wrote 3 averaged map(s)" in err.out
    c = MapCache.open(out, verify="full")
    # the lazy store carries the written cache's fingerprint (same maps, same study names)
    assert average_maps([a, b], [1, 1]).fingerprint == c.fingerprint
    assert average_maps([a, b], [1, 2]).fingerprint != c.fingerprint
    assert average_maps([InMemoryMapStore(_pages(3, seed=1)[0]), b]).fingerprint is None
    assert c.names() == a.names()
    assert c.gt is not None and list(c.gt) == list(a.gt)
    assert c.meta["ensemble"]["weights"] == [0.5, 0.5]
    for name in a.names():
        assert c.get(name).prob.tobytes() == a.get(name).prob.tobytes()
    # the same command again resumes the same cache (same fingerprint)
    assert _run_cli(["ensemble", str(a.path), str(b.path), "--weights", "1", "1",
                     "--out", str(out), "--no-progress"]) == 0
