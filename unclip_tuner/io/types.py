"""The in-memory form of annotations and predictions shared by every stage.

A data set is an ordered mapping ``file name -> ImageWords``. Polygons are kept exactly as
read (float64 ``(k, 2)`` arrays, no rounding): each metric applies its own rounding rule
(the competition's CLEval truncates predictions with ``int()``, for example), so the
readers must not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np


class FormatError(ValueError):
    """A file that cannot be read as the format it claims to be; the message names the place."""


@dataclass
class ImageWords:
    """The words of one image: polygons, don't-care flags and (optional) transcriptions.

    Parameters
    ----------
    polygons : list of ndarray
        One ``(k, 2)`` float64 array per word, in file order. ``k`` may be anything (even
        < 3: degenerate polygons are part of real data and each metric defines what they do).
    dont_care : ndarray of bool, optional
        ``True`` where the word is a don't-care region (``###`` in ICDAR files). ``None``
        means no word is don't-care.
    texts : list of str, optional
        Transcriptions where the format carries them.
    """

    polygons: List[np.ndarray] = field(default_factory=list)
    dont_care: Optional[np.ndarray] = None
    texts: Optional[List[str]] = None

    def __post_init__(self) -> None:
        self.polygons = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in self.polygons]
        if self.dont_care is not None:
            self.dont_care = np.asarray(self.dont_care, dtype=bool).reshape(-1)
            if len(self.dont_care) != len(self.polygons):
                raise ValueError("dont_care must have one flag per polygon")
        if self.texts is not None and len(self.texts) != len(self.polygons):
            raise ValueError("texts must have one entry per polygon")

    def __len__(self) -> int:
        return len(self.polygons)

    @property
    def dont_care_flags(self) -> np.ndarray:
        """Don't-care flags, all ``False`` when the format has none."""
        if self.dont_care is None:
            return np.zeros(len(self.polygons), dtype=bool)
        return self.dont_care


class Dataset(Dict[str, ImageWords]):
    """An ordered ``file name -> ImageWords`` mapping (insertion order is the file order)."""

    def n_words(self) -> int:
        return sum(len(w) for w in self.values())

    def iter_items(self) -> Iterator[tuple]:
        return iter(self.items())


def pack_polygons(polys: Sequence[np.ndarray], dtype=np.float64) -> Tuple[np.ndarray, np.ndarray]:
    """Concatenate polygons for the Numba kernels.

    Returns
    -------
    coords : ndarray, shape (N, 2)
        Every polygon's points, contiguous, of ``dtype``.
    offsets : ndarray of int64, shape (n + 1,)
        Polygon ``i`` is ``coords[offsets[i]:offsets[i + 1]]``.
    """
    offsets = np.zeros(len(polys) + 1, dtype=np.int64)
    if len(polys) == 0:
        return np.zeros((0, 2), dtype=dtype), offsets
    offsets[1:] = np.cumsum([len(p) for p in polys])
    try:
        # polygons of one layout ((n, 2), or OpenCV's (n, 1, 2)) concatenate as they are;
        # row-major flattening gives the same points as reshaping each one first
        coords = np.concatenate(polys, axis=0).reshape(-1, 2)
    except ValueError:
        coords = np.concatenate([np.asarray(p).reshape(-1, 2) for p in polys], axis=0)
    return np.ascontiguousarray(coords, dtype=dtype), offsets
