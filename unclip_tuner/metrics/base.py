"""Result types shared by every metric profile.

Each profile scores one image at a time into an :class:`ImageScore`; a data set score is
built from those by :func:`aggregate`. Two dataset figures are always reported:

* ``macro``: the mean over images of per-image recall, precision and H-Mean (the
  competition's CLEval leaderboard figure, computed as ``np.mean`` of float32 values);
* ``micro``: pooled counts (sum of numerators over sum of denominators over all images),
  the way ICDAR-style evaluators and the upstream ``cleval`` package report.

A profile says which of the two is its official figure (``DatasetScore.recall`` etc.).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np


@dataclass
class ImageScore:
    """Recall, precision and H-Mean of one image, with the counts behind them.

    ``recall = recall_num / recall_den`` and ``precision = precision_num / precision_den``
    up to the profile's own clamping and float rules; the counts feed the pooled figures.
    """

    recall: float
    precision: float
    hmean: float
    recall_num: float = 0.0
    recall_den: float = 0.0
    precision_num: float = 0.0
    precision_den: float = 0.0
    extra: Dict[str, float] = field(default_factory=dict)


@dataclass
class DatasetScore:
    """The dataset figures of one metric profile, plus the per-image scores."""

    metric: str
    recall: float
    precision: float
    hmean: float
    macro_recall: float
    macro_precision: float
    macro_hmean: float
    micro_recall: float
    micro_precision: float
    micro_hmean: float
    images: List[str]
    per_image: List[ImageScore]
    official: str = "macro"

    def as_dict(self) -> dict:
        return {
            "metric": self.metric,
            "official": self.official,
            "recall": self.recall,
            "precision": self.precision,
            "hmean": self.hmean,
            "macro": {"recall": self.macro_recall, "precision": self.macro_precision,
                      "hmean": self.macro_hmean},
            "micro": {"recall": self.micro_recall, "precision": self.micro_precision,
                      "hmean": self.micro_hmean},
            "n_images": len(self.images),
        }


def harmonic_mean(a: float, b: float) -> float:
    return 0.0 if a + b == 0 else 2.0 * a * b / (a + b)


def aggregate(metric: str, images: List[str], scores: List[ImageScore],
              official: str = "macro") -> DatasetScore:
    """Build the dataset score from per-image scores.

    The macro figures follow the competition: ``np.mean`` over float32 per-image values,
    reported as Python floats of that float32 mean.
    """
    if scores:
        mr = float(np.mean(np.array([s.recall for s in scores], dtype=np.float32)))
        mp = float(np.mean(np.array([s.precision for s in scores], dtype=np.float32)))
        mh = float(np.mean(np.array([s.hmean for s in scores], dtype=np.float32)))
    else:
        mr = mp = mh = 0.0
    rn = sum(s.recall_num for s in scores)
    rd = sum(s.recall_den for s in scores)
    pn = sum(s.precision_num for s in scores)
    pd = sum(s.precision_den for s in scores)
    ur = rn / rd if rd > 0 else 0.0
    up = pn / pd if pd > 0 else 0.0
    uh = harmonic_mean(ur, up)
    if official == "macro":
        r, p, h = mr, mp, mh
    elif official == "micro":
        r, p, h = ur, up, uh
    else:
        raise ValueError(f"official must be 'macro' or 'micro', not {official!r}")
    return DatasetScore(metric, r, p, h, mr, mp, mh, ur, up, uh, list(images), list(scores),
                        official)
