"""Deterministic model weights shared by the model tests (no randomness, no download).

The same rule produced the reference forward in ``tests/data/models`` (see its README).
"""

import math

import numpy as np


def formula_state(shapes):
    """Weights from sin sequences, scaled per tensor kind; ``shapes``: ordered key -> shape."""
    import torch

    out = {}
    for idx, (k, shape) in enumerate(shapes.items()):
        n = int(np.prod(shape)) if len(shape) else 1
        v = np.sin(np.arange(n, dtype=np.float64) * 0.7071 + idx * 1.3)
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(0, dtype=torch.int64)
            continue
        if k.endswith("running_var"):
            a = 1.0 + 0.5 * np.abs(v)
        elif k.endswith("running_mean") or k.endswith("bias"):
            a = 0.05 * v
        elif len(shape) == 1:
            a = 1.0 + 0.1 * v
        else:
            a = v * math.sqrt(4.0 / float(np.prod(shape[1:])))
        out[k] = torch.from_numpy(a.astype(np.float32).reshape(shape))
    return out
