"""The holdout split: deterministic, order-free, sized as asked."""

from __future__ import annotations

import pytest

from unclip_tuner.search.holdout import split_holdout

NAMES = [f"receipt_{i:03d}.jpg" for i in range(404)]


def test_deterministic_and_order_independent():
    s1, h1 = split_holdout(NAMES, 0.3, seed=7)
    s2, h2 = split_holdout(list(reversed(NAMES)), 0.3, seed=7)
    assert set(h1) == set(h2) and set(s1) == set(s2)
    assert split_holdout(NAMES, 0.3, seed=7) == (s1, h1)
    assert len(h1) == round(0.3 * 404) and len(s1) + len(h1) == 404
    assert not set(s1) & set(h1)
    # both keep the input order
    assert h1 == [n for n in NAMES if n in set(h1)]
    # another seed, another split
    assert set(split_holdout(NAMES, 0.3, seed=8)[1]) != set(h1)


def test_adding_an_image_moves_no_other():
    _, h1 = split_holdout(NAMES, 0.25, seed=0)
    _, h2 = split_holdout(NAMES + ["extra.jpg"], 0.25, seed=0)
    assert len(set(h1) - set(h2)) <= 1


def test_sizes_and_errors():
    assert split_holdout(NAMES[:5], 0.0) == (NAMES[:5], [])
    assert len(split_holdout(NAMES[:5], 0.01)[1]) == 1          # at least one image
    assert len(split_holdout(NAMES[:5], 0.99)[0]) == 1          # at least one searched
    for bad in (-0.1, 1.0, 2):
        with pytest.raises(ValueError, match=r"--holdout must be in \[0, 1\)"):
            split_holdout(NAMES, bad)
    with pytest.raises(ValueError, match="at least 2 images"):
        split_holdout(NAMES[:1], 0.3)
