"""Sub-commands of ``unclip-tuner``: each module defines ``register(subparsers)``.

A module is imported only to build the parser; the work it triggers imports its own
dependencies lazily, so building the parser stays cheap and torch-free.
"""

from __future__ import annotations

import importlib
from typing import List

#: Modules in the order their commands appear in ``--help``.
MODULES: List[str] = ["demo", "cache_maps", "tune_post", "apply", "evaluate", "compare", "ensemble",
                      "inspect", "maps"]


def register_all(sub) -> List[str]:
    """Register every available command module; returns the names registered."""
    done = []
    for mod in MODULES:
        try:
            m = importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{mod}":
                continue
            raise
        m.register(sub)
        done.append(mod)
    return done
