"""A seeded split of the images into a search set and a holdout set.

Tuning many parameters on a few hundred images over-fits them a little; keeping a share of
the images out of the search and scoring the chosen parameters on them shows by how much.

The split is a pure function of the image names, the fraction and the seed: each name gets
the key ``sha256("<seed>:<name>")`` and the names with the smallest keys are held out. It
does not depend on the order of the images nor on any library's random generator, and
adding an image to the cache moves at most one other image between the sets.
"""

from __future__ import annotations

import hashlib
from typing import List, Sequence, Tuple

__all__ = ["split_holdout"]


def _key(seed: int, name: str) -> bytes:
    return hashlib.sha256(f"{int(seed)}:{name}".encode("utf-8")).digest()


def split_holdout(names: Sequence[str], fraction: float, seed: int = 0) -> Tuple[List[str], List[str]]:
    """Split ``names`` into ``(search, holdout)``, both in the input order.

    Parameters
    ----------
    names : sequence of str
        Image names (unique).
    fraction : float
        Share of images held out, in ``[0, 1)``; ``0`` holds out nothing. The holdout size is
        ``round(fraction * n)``, at least 1 and at most ``n - 1`` when ``fraction > 0``.
    seed : int
        Seed of the split.

    Raises
    ------
    ValueError
        For a fraction outside ``[0, 1)``, or a non-zero fraction with fewer than 2 images.
    """
    names = list(names)
    if len(set(names)) != len(names):
        raise ValueError("image names must be unique")
    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        raise ValueError(f"--holdout must be a number in [0, 1), got {fraction!r}") from None
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"--holdout must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return names, []
    n = len(names)
    if n < 2:
        raise ValueError(f"--holdout needs at least 2 images, the cache has {n}")
    k = min(max(int(round(fraction * n)), 1), n - 1)
    held = set(sorted(names, key=lambda s: _key(seed, s))[:k])
    return [s for s in names if s not in held], [s for s in names if s in held]
