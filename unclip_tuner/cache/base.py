"""What every map store offers: probability maps in network space, their inverse matrices
and (optionally) ground truth, image by image.

The on-disk cache (:mod:`unclip_tuner.cache.store`) and the in-memory store below both follow
this interface, so the post-processing engine, ``apply`` and ``tune-post`` never care where
the maps live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional

import numpy as np

from ..io.types import Dataset


@dataclass
class MapRecord:
    """One image's cached network output.

    Attributes
    ----------
    name : str
        Image file name (the key shared with the ground truth).
    prob : ndarray
        ``(H, W)`` float32 probability map in network space (padding included).
    inverse_matrix : ndarray
        ``(3, 3)`` float64 matrix mapping network pixels to original image pixels.
    width, height : int
        Original image size (after EXIF rotation).
    """

    name: str
    prob: np.ndarray
    inverse_matrix: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        prob = np.asarray(self.prob)
        if prob.ndim == 3 and prob.shape[0] == 1:
            prob = prob[0]
        if prob.ndim != 2:
            raise ValueError(f"{self.name}: a probability map must be HxW (or 1xHxW), got shape {prob.shape}")
        self.prob = prob
        m = np.asarray(self.inverse_matrix, dtype=np.float64)
        if m.shape != (3, 3):
            raise ValueError(f"{self.name}: the inverse matrix must be 3x3, got shape {m.shape}")
        self.inverse_matrix = m


class MapStore:
    """Base class of map stores: an ordered collection of :class:`MapRecord`.

    Subclasses implement :meth:`names` and :meth:`get`; iteration streams records one at a
    time so that memory stays bounded.
    """

    #: Ground truth of the images, or ``None`` (test sets).
    gt: Optional[Dataset] = None
    #: Free-form metadata (the user's current post-processing parameters live under
    #: ``"params"`` when known, the code version under ``"target"``).
    meta: Dict = {}

    def names(self) -> List[str]:
        raise NotImplementedError

    def get(self, name: str) -> MapRecord:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.names())

    def __iter__(self) -> Iterator[MapRecord]:
        for n in self.names():
            yield self.get(n)

    def __contains__(self, name: str) -> bool:
        return name in set(self.names())


class InMemoryMapStore(MapStore):
    """Maps held in memory: for tests, the demo and small data sets."""

    def __init__(self, records: List[MapRecord], gt: Optional[Dataset] = None,
                 meta: Optional[Dict] = None) -> None:
        self._records: Dict[str, MapRecord] = {}
        for r in records:
            if r.name in self._records:
                raise ValueError(f"image {r.name!r} appears twice")
            self._records[r.name] = r
        self.gt = gt
        self.meta = dict(meta or {})

    def names(self) -> List[str]:
        return list(self._records)

    def get(self, name: str) -> MapRecord:
        try:
            return self._records[name]
        except KeyError:
            raise KeyError(f"no map for image {name!r}") from None
