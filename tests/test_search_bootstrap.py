"""Bootstrap intervals against cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from unclip_tuner.search.bootstrap import bootstrap_mean, paired_bootstrap_diff


def test_constant_values_give_a_point():
    iv = bootstrap_mean([0.8] * 50, n_boot=500)
    assert iv.estimate == pytest.approx(0.8) and iv.low == pytest.approx(0.8)
    assert iv.high == pytest.approx(0.8) and iv.n == 50


def test_three_values_match_the_exact_bootstrap_distribution():
    # Resampling [0, 0, 1]: the mean is K/3 with K ~ Binomial(3, 1/3), so
    # P(mean = 0) = 8/27 and P(mean = 1) = 1/27 < 2.5%: the 95% interval is [0, 1]
    # (the 97.5% quantile falls among the ones since P(mean <= 2/3) = 26/27 < 0.975).
    iv = bootstrap_mean([0.0, 0.0, 1.0], n_boot=40000, seed=3)
    assert iv.low == 0.0 and iv.high == 1.0
    assert iv.p_le_zero == pytest.approx(8 / 27, abs=0.01)
    iv90 = bootstrap_mean([0.0, 0.0, 1.0], n_boot=40000, seed=3, level=0.90)
    # P(mean <= 2/3) = 26/27 = 0.963 > 0.95: the 90% interval ends at 2/3
    assert iv90.high == pytest.approx(2 / 3)


def test_large_sample_width_matches_the_normal_approximation():
    rng = np.random.default_rng(0)
    v = rng.uniform(0.6, 1.0, 400)
    iv = bootstrap_mean(v, n_boot=4000, seed=1)
    se = v.std() / np.sqrt(len(v))          # the bootstrap's standard error (ddof=0)
    assert iv.estimate == pytest.approx(v.mean())
    assert (iv.high - iv.low) / 2 == pytest.approx(1.96 * se, rel=0.08)
    assert iv.low < v.mean() < iv.high


def test_paired_difference_removes_shared_variation():
    rng = np.random.default_rng(2)
    a = rng.uniform(0.5, 1.0, 100)
    b = a - 0.01                             # the same images, uniformly 0.01 worse
    d = paired_bootstrap_diff(a, b, n_boot=1000)
    assert d.estimate == pytest.approx(0.01) and d.low == pytest.approx(0.01)
    assert d.high == pytest.approx(0.01) and d.p_le_zero == 0.0
    # unpaired intervals overlap heavily: pairing is what makes the difference visible
    ia, ib = bootstrap_mean(a, n_boot=1000), bootstrap_mean(b, n_boot=1000)
    assert ia.low < ib.high


def test_seeded_and_validated():
    v = [0.1, 0.5, 0.9, 0.4]
    assert bootstrap_mean(v, seed=5) == bootstrap_mean(v, seed=5)
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap_diff([1, 2], [1])
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_mean([])
    with pytest.raises(ValueError, match="finite"):
        bootstrap_mean([0.1, float("nan")])
