"""The competition's submission CSV: ``filename,polygons``.

Each row holds one image; ``polygons`` is ``x y x y ...`` per word with words joined by
``|``, empty when nothing was detected. With a template (the organisers'
``sample_submission.csv``) every listed image gets a row, in the template's order.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from .types import Dataset, FormatError, ImageWords
from .ufo import _coord

PathLike = Union[str, os.PathLike]


def _parse_polygons(field: str, where: str) -> List[np.ndarray]:
    polys = []
    field = field.strip()
    if not field:
        return polys
    for k, chunk in enumerate(field.split("|")):
        toks = chunk.split()
        if not toks:
            continue
        try:
            vals = np.array([float(t) for t in toks], dtype=np.float64)
        except ValueError:
            raise FormatError(f"{where}, polygon {k + 1}: non-numeric coordinate") from None
        if not np.all(np.isfinite(vals)):
            raise FormatError(f"{where}, polygon {k + 1}: NaN or infinite coordinate")
        if vals.size % 2:
            raise FormatError(f"{where}, polygon {k + 1}: odd number of coordinates ({vals.size})")
        polys.append(vals.reshape(-1, 2))
    return polys


def read_submission(path: PathLike) -> Dataset:
    """Read a submission CSV into a :class:`Dataset` (file order kept)."""
    path = Path(path)
    data = Dataset()
    with open(path, "r", encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise FormatError(f"{path}: empty file (expected header 'filename,polygons')") from None
        if [h.strip().lower() for h in header[:2]] != ["filename", "polygons"]:
            raise FormatError(f"{path}: expected header 'filename,polygons', got {','.join(header)!r}")
        for lineno, row in enumerate(reader, start=2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) < 1 or len(row) > 2:
                raise FormatError(f"{path}:{lineno}: expected 2 fields, got {len(row)}")
            name = row[0].strip()
            if name in data:
                raise FormatError(f"{path}:{lineno}: image {name!r} appears twice")
            data[name] = ImageWords(_parse_polygons(row[1] if len(row) > 1 else "", f"{path}:{lineno}"))
    return data


def read_template(path: PathLike) -> List[str]:
    """The image order of a template submission (only its ``filename`` column is used)."""
    return list(read_submission(path).keys())


def write_submission(data: Dataset, path: PathLike, template: Optional[List[str]] = None) -> None:
    """Write a submission CSV atomically.

    Parameters
    ----------
    data : Dataset
        Predictions; polygons are written as given (integers stay integers).
    path : path
        Output file.
    template : list of str, optional
        Image order. Every listed image gets a row (empty when absent from ``data``);
        images in ``data`` but not in the template are an error.
    """
    path = Path(path)
    names = list(data.keys()) if template is None else list(template)
    if template is not None:
        missing = [n for n in data.keys() if n not in set(template)]
        if missing:
            raise ValueError(f"{len(missing)} predicted image(s) are not in the template, e.g. {missing[0]!r}")
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["filename", "polygons"])
        for name in names:
            words = data.get(name, ImageWords())
            field = "|".join(
                " ".join(f"{_coord(x)} {_coord(y)}" for x, y in np.asarray(p).reshape(-1, 2))
                for p in words.polygons
            )
            w.writerow([name, field])
    os.replace(tmp, path)
