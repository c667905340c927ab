"""Parameter search over cached maps: the search space, Optuna studies, holdout and bootstrap."""

from .bootstrap import Interval, bootstrap_mean, paired_bootstrap_diff
from .holdout import split_holdout
from .space import SearchSpace, SpaceError, build_space

__all__ = ["Interval", "SearchSpace", "SpaceError", "bootstrap_mean", "build_space",
           "paired_bootstrap_diff", "split_holdout"]
