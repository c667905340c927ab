"""Bootstrap confidence intervals over images.

A dataset H-Mean is the mean of per-image values, so its sampling noise is estimated by
resampling images with replacement (the percentile bootstrap). Two parameter sets scored
on the same images are compared with a *paired* bootstrap: each resample draws image
indices once and takes the mean of the per-image differences, which removes the variation
between images that both sets share and is much tighter than comparing two intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["Interval", "bootstrap_mean", "paired_bootstrap_diff"]


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided percentile interval.

    Attributes
    ----------
    estimate : float
        Mean of the values (float64).
    low, high : float
        Bounds of the ``level`` interval.
    level : float
        Coverage (0.95 for a 95% interval).
    n : int
        Number of images.
    n_boot : int
        Number of resamples.
    p_le_zero : float
        Share of resampled means that are <= 0 (for a difference: how often the first set
        did not beat the second).
    """

    estimate: float
    low: float
    high: float
    level: float
    n: int
    n_boot: int
    p_le_zero: float

    def as_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high,
                "level": self.level, "n": self.n, "n_boot": self.n_boot,
                "p_le_zero": self.p_le_zero}

    def format(self, digits: int = 4, signed: bool = False) -> str:
        f = f"{{:{'+' if signed else ''}.{digits}f}}"
        return (f"{f.format(self.estimate)} [{f.format(self.low)}, {f.format(self.high)}]")


def _resampled_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    n = len(values)
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot, dtype=np.float64)
    # Chunks bound the memory of the index matrix on large sets.
    chunk = max(1, 2_000_000 // max(n, 1))
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out


def _interval(values: np.ndarray, n_boot: int, level: float, seed: int) -> Interval:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("the bootstrap needs at least one value")
    if not np.isfinite(values).all():
        raise ValueError("the bootstrap values must be finite")
    means = _resampled_means(values, int(n_boot), seed)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(float(values.mean()), float(low), float(high), float(level), int(values.size),
                    int(n_boot), float(np.mean(means <= 0.0)))


def bootstrap_mean(values: Sequence[float], n_boot: int = 2000, level: float = 0.95,
                   seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the mean of per-image values.

    Parameters
    ----------
    values : sequence of float
        One value per image (e.g. per-image H-Mean).
    n_boot : int
        Number of resamples.
    level : float
        Coverage of the interval.
    seed : int
        Seed of the resampling.
    """
    return _interval(np.asarray(values, dtype=np.float64), n_boot, level, seed)


def paired_bootstrap_diff(a: Sequence[float], b: Sequence[float], n_boot: int = 2000,
                          level: float = 0.95, seed: int = 0) -> Interval:
    """Paired percentile bootstrap interval of ``mean(a) - mean(b)``.

    ``a[i]`` and ``b[i]`` must be the same image's values under two parameter sets; each
    resample draws image indices once and uses them for both.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired values must have the same length, got {a.size} and {b.size}")
    return _interval(a - b, n_boot, level, seed)
