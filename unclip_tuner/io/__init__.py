"""Readers and writers: UFO JSON, submission CSV, ICDAR/SROIE txt folders and zips.

:func:`read_dataset` picks the reader from the path; :func:`align` pairs predictions with
ground truth by file name, falling back to the file stem.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Tuple, Union

from .icdar import image_key, read_txt_dir, read_txt_zip, write_txt_dir
from .submission import read_submission, read_template, write_submission
from .types import Dataset, FormatError, ImageWords
from .ufo import read_ufo, write_ufo

PathLike = Union[str, os.PathLike]

__all__ = [
    "Dataset", "FormatError", "ImageWords", "align", "read_dataset", "read_submission",
    "read_template", "read_txt_dir", "read_txt_zip", "read_ufo", "write_dataset",
    "write_submission", "write_txt_dir", "write_ufo", "image_key",
]


def read_dataset(path: PathLike, coords: Union[int, str] = 8) -> Dataset:
    """Read annotations or predictions in any supported format.

    ``.json`` -> UFO JSON; ``.csv`` -> submission CSV; ``.zip`` -> zip of ICDAR txt files;
    a folder -> ICDAR/SROIE txt files. ``coords`` applies to txt files (8, or "variable").
    """
    path = Path(path)
    if not path.exists():
        raise FormatError(f"{path}: no such file or folder")
    if path.is_dir():
        return read_txt_dir(path, coords)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return read_ufo(path)
    if suffix == ".csv":
        return read_submission(path)
    if suffix == ".zip":
        return read_txt_zip(path, coords)
    if suffix == ".txt":
        from .icdar import parse_text

        data = Dataset()
        data[image_key(path.name)] = parse_text(path.read_text(encoding="utf-8-sig"), str(path), coords)
        return data
    raise FormatError(f"{path}: unknown format (expected .json, .csv, .zip, .txt or a folder)")


def write_dataset(data: Dataset, path: PathLike, template: List[str] = None) -> None:
    """Write predictions; the format follows the suffix (``.json`` or ``.csv``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        write_ufo(data, path, template)
    elif suffix == ".csv":
        write_submission(data, path, template)
    else:
        raise ValueError(f"{path}: output must end in .json or .csv")


def _stem(name: str) -> str:
    return image_key(name)


def align(gt: Dataset, pred: Dataset) -> Tuple[List[str], List[Tuple[str, str]]]:
    """Pair prediction images with GT images.

    Exact names first, then file stems (with ``gt_``/``res_`` prefixes removed), so
    ``img_1.jpg`` in a UFO file matches ``res_img_1.txt`` in a zip.

    Returns
    -------
    names : list of str
        GT image names, in GT order.
    pairs : list of (gt_name, pred_name)
        Matched pairs; GT images without a prediction are absent from ``pairs``.

    Raises
    ------
    FormatError
        When a prediction names an image that GT lacks, or stems are ambiguous.
    """
    names = list(gt.keys())
    gt_set = set(names)
    by_stem = {}
    for n in names:
        by_stem.setdefault(_stem(n), []).append(n)
    pairs, used, unknown = [], set(), []
    for p in pred.keys():
        if p in gt_set:
            target = p
        else:
            cands = by_stem.get(_stem(p), [])
            if len(cands) > 1:
                raise FormatError(f"prediction {p!r} matches several GT images by stem: {cands[:3]}")
            if not cands:
                unknown.append(p)
                continue
            target = cands[0]
        if target in used:
            raise FormatError(f"two predictions map to the same GT image {target!r}")
        used.add(target)
        pairs.append((target, p))
    if unknown:
        raise FormatError(
            f"{len(unknown)} predicted image(s) are not in the ground truth, e.g. {unknown[0]!r}")
    order = {n: i for i, n in enumerate(names)}
    pairs.sort(key=lambda t: order[t[0]])
    return names, pairs
