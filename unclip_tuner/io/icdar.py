"""ICDAR-style text annotations: one ``.txt`` per image, one word per line.

``x1,y1,x2,y2,x3,y3,x4,y4,transcription`` (ICDAR 2015, SROIE, the CLEval test vectors).
Files may start with a UTF-8 byte-order mark and use CRLF line ends; the transcription may
itself contain commas (SROIE), so a line is split into the coordinates and the rest;
``###`` marks a don't-care region. Total-Text style files with polygons of any length are
read with ``coords="variable"``.

Image keys are file stems with a leading ``gt_`` or ``res_`` removed, so ``gt_img_1.txt``
and ``res_img_1.txt`` both name ``img_1``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Iterable, List, Tuple, Union

import numpy as np

from .types import Dataset, FormatError, ImageWords

PathLike = Union[str, os.PathLike]
DONT_CARE = "###"
_PREFIXES = ("gt_", "res_")


def image_key(filename: str) -> str:
    """``gt_img_1.txt`` -> ``img_1``: the stem without a ``gt_``/``res_`` prefix."""
    stem = Path(filename).stem
    for prefix in _PREFIXES:
        if stem.startswith(prefix):
            return stem[len(prefix):]
    return stem


def _is_number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


def parse_line(line: str, where: str, coords: Union[int, str] = 8) -> Tuple[np.ndarray, str]:
    """Split one annotation line into a ``(k, 2)`` polygon and its transcription.

    Parameters
    ----------
    line : str
        The line, without its line end.
    where : str
        ``file:line`` for error messages.
    coords : int or "variable"
        Number of coordinates per line (8 for quads), or ``"variable"``: the longest even
        run of leading numbers that leaves at least one field for the transcription
        (every field numeric and even in count: no transcription).
    """
    toks = line.split(",")
    if coords == "variable":
        k = 0
        while k < len(toks) and _is_number(toks[k].strip()):
            k += 1
        if k == len(toks) and k % 2 == 0:
            n = k
        else:
            n = min(k, len(toks) - 1)
            n -= n % 2
        if n < 2:
            raise FormatError(f"{where}: expected x,y coordinates, got {line[:60]!r}")
    else:
        n = int(coords)
        if len(toks) < n:
            raise FormatError(f"{where}: expected {n} coordinates, got {len(toks)} fields: {line[:60]!r}")
    try:
        vals = np.array([float(t) for t in toks[:n]], dtype=np.float64)
    except ValueError:
        raise FormatError(f"{where}: non-numeric coordinate in {line[:60]!r}") from None
    if not np.all(np.isfinite(vals)):
        raise FormatError(f"{where}: NaN or infinite coordinate")
    text = ",".join(toks[n:]) if len(toks) > n else ""
    return vals.reshape(-1, 2), text


def parse_text(content: str, where: str, coords: Union[int, str] = 8,
               dont_care: str = DONT_CARE) -> ImageWords:
    """Parse the content of one annotation file."""
    if content.startswith("\ufeff"):
        content = content[1:]
    polys: List[np.ndarray] = []
    texts: List[str] = []
    for lineno, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        # only the line end is removed: a transcription may end with spaces
        poly, text = parse_line(raw, f"{where}:{lineno}", coords)
        polys.append(poly)
        texts.append(text)
    dc = np.array([t == dont_care for t in texts], dtype=bool)
    return ImageWords(polys, dc, texts)


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FormatError(f"{where}: not UTF-8 text") from None


def _add(data: Dataset, key: str, words: ImageWords, where: str) -> None:
    if key in data:
        raise FormatError(f"{where}: two files name the same image {key!r}")
    data[key] = words


def read_txt_dir(path: PathLike, coords: Union[int, str] = 8) -> Dataset:
    """Read a folder of per-image ``.txt`` files (sorted by name)."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".txt")
    if not files:
        raise FormatError(f"{path}: no .txt annotation files in this folder")
    data = Dataset()
    for f in files:
        words = parse_text(_decode(f.read_bytes(), str(f)), str(f), coords)
        _add(data, image_key(f.name), words, str(f))
    return data


def read_txt_zip(path: PathLike, coords: Union[int, str] = 8) -> Dataset:
    """Read a ``.zip`` of per-image ``.txt`` files (the CLEval / ICDAR submission layout)."""
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise FormatError(f"{path}: not a valid zip file") from None
    data = Dataset()
    with zf:
        names = sorted(n for n in zf.namelist() if n.lower().endswith(".txt") and not n.endswith("/"))
        if not names:
            raise FormatError(f"{path}: the zip holds no .txt annotation files")
        for n in names:
            where = f"{path}!{n}"
            words = parse_text(_decode(zf.read(n), where), where, coords)
            _add(data, image_key(n), words, where)
    return data


def format_words(words: ImageWords, with_text: bool = True) -> str:
    """One image's words as ICDAR lines (integers written as integers)."""
    from .ufo import _coord

    lines = []
    for i, poly in enumerate(words.polygons):
        vals = ",".join(str(_coord(v)) for v in np.asarray(poly).reshape(-1))
        if with_text:
            text = words.texts[i] if words.texts is not None else ""
            if words.dont_care is not None and words.dont_care[i]:
                text = DONT_CARE
            vals = f"{vals},{text}"
        lines.append(vals)
    return "\n".join(lines) + ("\n" if lines else "")


def write_txt_dir(data: Dataset, path: PathLike, prefix: str = "res_",
                  images: Iterable[str] = None) -> None:
    """Write one ``<prefix><key>.txt`` per image into a folder."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for name in (data.keys() if images is None else images):
        (path / f"{prefix}{Path(name).stem}.txt").write_text(
            format_words(data.get(name, ImageWords())), encoding="utf-8")
