"""UFO-style JSON: the competition's annotation and prediction format.

``{"images": {"<file>": {"words": {"0001": {"points": [[x, y], ...]}, ...}}, ...}}``

Word ids are 1-based and zero padded to 4 digits on write. On read, words are taken in the
file's order (JSON objects keep it), which is what the baseline's loader does. Extra keys
(``transcription``, ``illegibility``, ``orientation`` ...) are kept as texts where present
but do not change the polygons.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np

from .types import Dataset, FormatError, ImageWords

PathLike = Union[str, os.PathLike]


def _points_to_array(points, where: str) -> np.ndarray:
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise FormatError(f"{where}: 'points' must be a list of [x, y] pairs") from None
    if arr.size == 0:
        return arr.reshape(0, 2)
    if arr.ndim == 1 and arr.size % 2 == 0:
        arr = arr.reshape(-1, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise FormatError(f"{where}: 'points' must be a list of [x, y] pairs, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise FormatError(f"{where}: 'points' contains NaN or infinity")
    return arr


def parse_ufo(obj: dict, source: str = "<json>") -> Dataset:
    """Build a :class:`Dataset` from an already-parsed UFO JSON object."""
    if not isinstance(obj, dict) or "images" not in obj or not isinstance(obj["images"], dict):
        raise FormatError(f"{source}: not a UFO JSON file (expected a top-level 'images' object)")
    data = Dataset()
    for name, entry in obj["images"].items():
        where = f"{source}: image {name!r}"
        if not isinstance(entry, dict):
            raise FormatError(f"{where}: expected an object with 'words'")
        words = entry.get("words", {})
        if words is None:
            words = {}
        if not isinstance(words, dict):
            raise FormatError(f"{where}: 'words' must be an object of word id -> word")
        polys, texts, have_text = [], [], False
        for wid, word in words.items():
            if not isinstance(word, dict) or "points" not in word:
                raise FormatError(f"{where}, word {wid!r}: missing 'points'")
            polys.append(_points_to_array(word["points"], f"{where}, word {wid!r}"))
            text = word.get("transcription")
            have_text = have_text or text is not None
            texts.append("" if text is None else str(text))
        data[str(name)] = ImageWords(polys, None, texts if have_text else None)
    return data


def read_ufo(path: PathLike) -> Dataset:
    """Read a UFO JSON file (GT or predictions).

    Raises
    ------
    FormatError
        When the file is not valid JSON or not shaped like UFO JSON.
    """
    path = Path(path)
    try:
        with open(path, "r", encoding="utf-8-sig") as fh:
            obj = json.load(fh)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    return parse_ufo(obj, str(path))


def _coord(v: float):
    """Integers are written as integers, anything else as a float."""
    fv = float(v)
    if math.isfinite(fv) and fv == int(fv):
        return int(fv)
    return fv


def to_ufo(data: Dataset, images: Optional[Iterable[str]] = None) -> dict:
    """Convert a :class:`Dataset` to a UFO JSON object (``images`` selects and orders files)."""
    names = list(data.keys()) if images is None else list(images)
    out = {}
    for name in names:
        words = data.get(name, ImageWords())
        entry = {}
        for i, poly in enumerate(words.polygons):
            word = {"points": [[_coord(x), _coord(y)] for x, y in np.asarray(poly).reshape(-1, 2)]}
            if words.texts is not None:
                word["transcription"] = words.texts[i]
            entry[f"{i + 1:04d}"] = word
        out[name] = {"words": entry}
    return {"images": out}


def write_ufo(data: Dataset, path: PathLike, images: Optional[Iterable[str]] = None) -> None:
    """Write a UFO JSON file atomically (a temporary file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(to_ufo(data, images), fh, ensure_ascii=False)
    os.replace(tmp, path)
