"""The on-disk map cache: probability maps computed once, trusted by every later command.

A cache is a directory::

    manifest.json          what produced the maps (fingerprint and its parts), dtype, metadata
    index.parquet          one row per image: name, sizes, inverse matrix, map file, size, crc32
    index.pending.jsonl    rows added since the index was last rewritten (absent once closed)
    maps/<stem>-<hash>.npy one probability map per image (float32, or float16 when asked)
    gt.json                ground truth in UFO JSON, when given
    gt_dont_care.json      the don't-care flags of that ground truth (UFO JSON has no field for them)

Crash safety
------------
Every file is written under a temporary name, flushed to disk and renamed into place, so a
file that carries a final name is complete. A map's index row is appended to the pending
journal only after its file has been renamed into place; the parquet index is rewritten from
time to time (every ``flush_every`` images and at close) and the journal is emptied after
each rewrite. When a writer resumes, the truth is the set of map files that exist and match
the size and crc32 recorded in the index or the journal: anything else (temporary files, a
map file without a row, a truncated or altered map) is deleted and its image is redone.

The fingerprint is a sha256 over the caller's ``fingerprint_parts`` (model file hash,
config, preprocessing profile and parameters...) and the storage dtype: creating a cache
over one with the same fingerprint resumes it, a different fingerprint is refused unless
``overwrite`` is set.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import random
import re
import shutil
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Union

import numpy as np

from .. import __version__
from ..io.types import Dataset, ImageWords
from .base import MapRecord, MapStore

PathLike = Union[str, os.PathLike]

__all__ = [
    "CacheError",
    "CacheWarning",
    "MapCache",
    "MapCacheWriter",
    "fingerprint_of",
    "SCHEMA_VERSION",
]

#: Version of the on-disk layout; a reader refuses caches written with a newer one.
SCHEMA_VERSION = 1
FORMAT_NAME = "unclip-tuner map cache"
MANIFEST = "manifest.json"
INDEX = "index.parquet"
PENDING = "index.pending.jsonl"
MAPS_DIR = "maps"
GT_FILE = "gt.json"
GT_FLAGS_FILE = "gt_dont_care.json"
LOCK_FILE = ".lock"
DTYPES = ("float32", "float16")
#: Files and folders a cache owns; only these are removed when a cache is overwritten.
OWN_ENTRIES = (MANIFEST, INDEX, PENDING, MAPS_DIR, GT_FILE, GT_FLAGS_FILE, LOCK_FILE)
_TMP_RE = re.compile(r"(^\..*\.tmp(-\d+)?$)|(\.tmp$)")
_INDEX_COLUMNS = ("file", "map_file", "width", "height", "map_h", "map_w",
                  "inverse_matrix", "nbytes", "crc32")


class CacheError(ValueError):
    """A cache that cannot be used as it is; the message names the file at fault."""


class CacheWarning(UserWarning):
    """Something about a cache worth knowing that does not stop the command."""


# --------------------------------------------------------------------------------------------
# Small file-system helpers
# --------------------------------------------------------------------------------------------

def _tmp_name(path: Path) -> Path:
    """Temporary sibling of ``path``: hidden, with the writer's process id."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _is_tmp(name: str) -> bool:
    return bool(_TMP_RE.search(name))


def _fsync_dir(path: Path) -> None:
    """Make renames inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write_bytes(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to a temporary file, flush it to disk, then rename it to ``path``."""
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _canonical(obj, what: str) -> str:
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must hold only JSON values (str, numbers, lists, dicts): {exc}") \
            from None


def _normalise_dtype(dtype) -> str:
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = str(dtype)
    if name not in DTYPES:
        raise ValueError(f"cache dtype must be 'float32' or 'float16', not {dtype!r}")
    return name


def fingerprint_of(fingerprint_parts: Dict, dtype: str = "float32") -> str:
    """The cache fingerprint: sha256 over the canonical JSON of the parts and the dtype.

    Parameters
    ----------
    fingerprint_parts : dict
        What decides the maps' values: model file or ONNX hash, the model config, the
        preprocessing profile and its parameters... JSON values only.
    dtype : {"float32", "float16"}
        Storage dtype (part of the fingerprint: float16 maps are not float32 maps).

    Returns
    -------
    str
        ``"sha256:<64 hex digits>"``.
    """
    if not isinstance(fingerprint_parts, dict):
        raise ValueError("fingerprint_parts must be a dict")
    text = _canonical({"parts": fingerprint_parts, "dtype": _normalise_dtype(dtype)},
                      "fingerprint_parts")
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _map_file_name(name: str) -> str:
    """A safe, stable file name for an image's map: readable stem plus a hash of the name."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem)[:60].strip("._") or "map"
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:10]
    return f"{stem}-{digest}.npy"


def _crc_file(path: Path, chunk: int = 1 << 22) -> int:
    crc = 0
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                return crc
            crc = zlib.crc32(block, crc)


# --------------------------------------------------------------------------------------------
# Index entries
# --------------------------------------------------------------------------------------------

@dataclass
class _Entry:
    """One index row."""

    name: str
    map_file: str
    width: int
    height: int
    map_h: int
    map_w: int
    matrix: np.ndarray
    nbytes: int
    crc32: int

    def row(self) -> Dict:
        return {"file": self.name, "map_file": self.map_file, "width": self.width,
                "height": self.height, "map_h": self.map_h, "map_w": self.map_w,
                "inverse_matrix": [float(v) for v in self.matrix.reshape(-1)],
                "nbytes": self.nbytes, "crc32": self.crc32}

    @classmethod
    def from_row(cls, row: Dict, where: str) -> "_Entry":
        try:
            matrix = np.asarray(row["inverse_matrix"], dtype=np.float64).reshape(3, 3)
            entry = cls(str(row["file"]), str(row["map_file"]), int(row["width"]),
                        int(row["height"]), int(row["map_h"]), int(row["map_w"]), matrix,
                        int(row["nbytes"]), int(row["crc32"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CacheError(f"{where}: malformed index row ({exc})") from None
        if (not entry.name or "/" in entry.map_file or "\\" in entry.map_file
                or entry.map_file.startswith(".") or min(entry.width, entry.height) <= 0
                or min(entry.map_h, entry.map_w) <= 0 or entry.nbytes <= 0):
            raise CacheError(f"{where}: malformed index row for image {entry.name!r}")
        return entry


def _index_bytes(entries: Iterable[_Entry]) -> bytes:
    import polars as pl

    rows = [e.row() for e in entries]
    schema = {"file": pl.String, "map_file": pl.String, "width": pl.Int64, "height": pl.Int64,
              "map_h": pl.Int32, "map_w": pl.Int32, "inverse_matrix": pl.Array(pl.Float64, 9),
              "nbytes": pl.Int64, "crc32": pl.Int64}
    df = pl.DataFrame({k: [r[k] for r in rows] for k in _INDEX_COLUMNS}, schema=schema)
    buf = io.BytesIO()
    df.write_parquet(buf)
    return buf.getvalue()


def _read_index(path: Path) -> List[_Entry]:
    import polars as pl

    if not path.is_file():
        raise CacheError(f"{path}: index missing; the cache was never completed "
                         f"(run cache-maps again to resume it)")
    try:
        df = pl.read_parquet(path)
    except Exception as exc:  # polars raises several error types for damaged files
        raise CacheError(f"{path}: unreadable index ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    missing = [c for c in _INDEX_COLUMNS if c not in df.columns]
    if missing:
        raise CacheError(f"{path}: index lacks column(s) {', '.join(missing)}")
    entries = [_Entry.from_row(r, str(path)) for r in df.select(_INDEX_COLUMNS).to_dicts()]
    seen = set()
    for e in entries:
        if e.name in seen:
            raise CacheError(f"{path}: image {e.name!r} is listed twice")
        seen.add(e.name)
    return entries


def _read_pending(path: Path) -> List[_Entry]:
    """Rows of the pending journal; an unfinished last line (a crash while appending) is ignored."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(_Entry.from_row(json.loads(line), str(path)))
        except (ValueError, CacheError):
            continue
    return out


def _check_file(path: Path, entry: _Entry, crc: bool) -> Optional[str]:
    """Why the map file does not match its index row, or ``None`` when it does."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    if size != entry.nbytes:
        return f"size {size} bytes, the index says {entry.nbytes}"
    if crc:
        got = _crc_file(path)
        if got != entry.crc32:
            return f"crc32 {got:08x}, the index says {entry.crc32:08x}"
    return None


# --------------------------------------------------------------------------------------------
# Manifest and ground truth
# --------------------------------------------------------------------------------------------

def _read_manifest(path: Path) -> Dict:
    mpath = path / MANIFEST
    try:
        raw = mpath.read_bytes()
    except FileNotFoundError:
        if not path.exists():
            raise CacheError(f"{path}: no such cache folder") from None
        raise CacheError(f"{mpath}: missing; {path} is not a map cache") from None
    except NotADirectoryError:
        raise CacheError(f"{path}: not a folder (a map cache is a folder)") from None
    except IsADirectoryError:
        raise CacheError(f"{mpath}: not a file") from None
    except OSError as exc:
        raise CacheError(f"{mpath}: cannot be read ({exc.strerror or exc})") from None
    try:
        man = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise CacheError(f"{mpath}: corrupt manifest (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise CacheError(f"{mpath}: corrupt manifest (invalid JSON: {exc.msg} at line "
                         f"{exc.lineno})") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT_NAME:
        raise CacheError(f"{mpath}: not an unclip-tuner map cache manifest")
    version = man.get("schema_version")
    if not isinstance(version, int):
        raise CacheError(f"{mpath}: corrupt manifest (no schema_version)")
    if version > SCHEMA_VERSION:
        raise CacheError(f"{mpath}: schema version {version} was written by a newer "
                         f"unclip-tuner (this one reads up to {SCHEMA_VERSION}); upgrade it")
    for key, kind in (("fingerprint", str), ("dtype", str), ("fingerprint_parts", dict),
                      ("meta", dict)):
        if not isinstance(man.get(key), kind):
            raise CacheError(f"{mpath}: corrupt manifest (missing or invalid {key!r})")
    if man["dtype"] not in DTYPES:
        raise CacheError(f"{mpath}: unknown map dtype {man['dtype']!r}")
    return man


def _write_gt(path: Path, gt: Dataset, fsync: bool) -> Dict:
    """Write ``gt.json`` (UFO) and the don't-care flags beside it; returns the manifest entry."""
    from ..io import write_ufo

    if not isinstance(gt, Dataset):
        gt = Dataset(gt)
    write_ufo(gt, path / GT_FILE)
    flags = {}
    n_dc = 0
    for name, words in gt.items():
        idx = [int(i) for i in np.flatnonzero(words.dont_care_flags)]
        if idx:
            flags[name] = idx
            n_dc += len(idx)
    _atomic_write_bytes(path / GT_FLAGS_FILE, _json_bytes({"dont_care": flags}), fsync)
    return {"file": GT_FILE, "dont_care_file": GT_FLAGS_FILE, "images": len(gt),
            "words": gt.n_words(), "dont_care": n_dc}


def _read_gt(path: Path) -> Dataset:
    from ..io import FormatError, read_ufo

    gpath = path / GT_FILE
    try:
        data = read_ufo(gpath)
    except FileNotFoundError:
        raise CacheError(f"{gpath}: missing (the manifest says the cache holds ground truth)") \
            from None
    except FormatError as exc:
        raise CacheError(f"{gpath}: corrupt ground truth ({exc})") from None
    fpath = path / GT_FLAGS_FILE
    try:
        flags = json.loads(fpath.read_text(encoding="utf-8"))["dont_care"]
        if not isinstance(flags, dict):
            raise TypeError("'dont_care' is not an object")
    except FileNotFoundError:
        raise CacheError(f"{fpath}: missing (the don't-care flags of {GT_FILE})") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheError(f"{fpath}: corrupt don't-care flags ({exc})") from None
    for name, idx in flags.items():
        words = data.get(name)
        if words is None:
            raise CacheError(f"{fpath}: image {name!r} is not in {GT_FILE}")
        dc = np.zeros(len(words), dtype=bool)
        try:
            dc[np.asarray(idx, dtype=np.int64)] = True
        except (IndexError, ValueError, TypeError):
            raise CacheError(f"{fpath}: bad word indices for image {name!r}") from None
        data[name] = ImageWords(words.polygons, dc, words.texts)
    return data


def _studies(path: Path) -> List[str]:
    """Tuning studies kept inside the cache folder (``*.journal`` and ``study*`` files)."""
    try:
        names = [p.name for p in path.iterdir() if p.is_file()]
    except OSError:
        return []
    return sorted(n for n in names if (n.endswith(".journal") or n.startswith("study"))
                  and not _is_tmp(n))


def _disk_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


# --------------------------------------------------------------------------------------------
# Lock
# --------------------------------------------------------------------------------------------

class _Lock:
    """An exclusive advisory lock on ``<cache>/.lock`` (released by the OS if the process dies)."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path / LOCK_FILE, "a+b")
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no advisory locks on this platform
            return
        try:
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            raise CacheError(f"{path}: another process is writing this cache") from None

    def release(self) -> None:
        if not self.fh.closed:
            self.fh.close()


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------

class MapCacheWriter:
    """Adds maps to a cache; made by :meth:`MapCache.create`.

    Use it as a context manager, or call :meth:`close` at the end: every map added before
    ``close`` (or before a crash) is kept, and a later :meth:`MapCache.create` with the same
    fingerprint resumes where this one stopped.

    Attributes
    ----------
    path : Path
        The cache folder.
    meta : dict
        Free-form metadata written to the manifest at :meth:`close` (may be updated).
    resumed : int
        Number of maps found valid when the writer started (0 for a new cache).
    redone : list of str
        Images whose map files failed verification on resume (they must be added again).
    """

    def __init__(self, path: Path, manifest: Dict, entries: Dict[str, _Entry], lock: _Lock,
                 flush_every: int, fsync: bool) -> None:
        self.path = path
        self._manifest = manifest
        self.meta = manifest["meta"]
        self.dtype = manifest["dtype"]
        self._entries = entries
        self._lock = lock
        self._flush_every = max(1, int(flush_every))
        self._fsync = bool(fsync)
        self._unflushed = 0
        self._closed = False
        self.resumed = len(entries)
        self.redone: List[str] = []
        self._journal = open(path / PENDING, "ab")

    # -- queries ------------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        """Whether the image already has a map in the cache (skip it when resuming)."""
        return name in self._entries

    def names(self) -> List[str]:
        """Images cached so far, in the order they were added."""
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    # -- writing ------------------------------------------------------------------------------
    def add(self, record: MapRecord) -> None:
        """Store one image's map (replacing an earlier map of the same image).

        The map file is written to a temporary name, flushed to disk and renamed into place;
        only then is its index row recorded.

        Raises
        ------
        CacheError
            For a map with values outside ``[0, 1]`` or NaN, a non-finite or non-affine
            matrix, or a non-positive image size.
        """
        if self._closed:
            raise CacheError(f"{self.path}: the cache writer is closed")
        if not isinstance(record, MapRecord):
            raise TypeError("add() takes a MapRecord")
        name = record.name
        if not isinstance(name, str) or not name:
            raise CacheError("an image name must be a non-empty string")
        prob = np.asarray(record.prob)
        if prob.dtype.kind != "f":
            raise CacheError(f"{name}: the probability map must be floating point, "
                             f"got {prob.dtype}")
        if prob.size == 0:
            raise CacheError(f"{name}: empty probability map (shape {prob.shape})")
        lo, hi = prob.min(), prob.max()
        if not (lo >= 0 and hi <= 1):
            if np.isnan(prob).any():
                raise CacheError(f"{name}: the probability map contains NaN")
            raise CacheError(f"{name}: probability values outside [0, 1] (min {float(lo)!r}, "
                             f"max {float(hi)!r}); logits need a sigmoid first")
        m = record.inverse_matrix
        if not np.all(np.isfinite(m)):
            raise CacheError(f"{name}: the inverse matrix is not finite")
        if not np.array_equal(m[2], [0.0, 0.0, 1.0]):
            raise CacheError(f"{name}: the inverse matrix is not affine (last row {m[2].tolist()})")
        width, height = int(record.width), int(record.height)
        if width <= 0 or height <= 0 or width != record.width or height != record.height:
            raise CacheError(f"{name}: image size must be positive integers, "
                             f"got {record.width}x{record.height}")

        arr = np.ascontiguousarray(prob, dtype=self.dtype)
        buf = io.BytesIO()
        np.lib.format.write_array(buf, arr, allow_pickle=False)
        data = buf.getvalue()
        old = self._entries.get(name)
        map_file = old.map_file if old is not None else _map_file_name(name)
        _atomic_write_bytes(self.path / MAPS_DIR / map_file, data, self._fsync)
        entry = _Entry(name, map_file, width, height, int(arr.shape[0]), int(arr.shape[1]),
                       m.copy(), len(data), zlib.crc32(data))
        self._journal.write((json.dumps(entry.row()) + "\n").encode("utf-8"))
        self._journal.flush()
        self._entries[name] = entry
        self._unflushed += 1
        if self._unflushed >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        """Rewrite the parquet index (atomically) and empty the pending journal."""
        _atomic_write_bytes(self.path / INDEX, _index_bytes(self._entries.values()), self._fsync)
        if self._fsync:
            _fsync_dir(self.path)
        self._journal.seek(0)
        self._journal.truncate(0)
        self._journal.flush()
        self._unflushed = 0

    def close(self) -> None:
        """Write the index and the final manifest, remove the journal, release the lock."""
        if self._closed:
            return
        try:
            self.flush()
            self._manifest["meta"] = self.meta
            self._manifest["n_images"] = len(self._entries)
            self._manifest["updated"] = _now()
            self._manifest["tool_version"] = __version__
            _atomic_write_bytes(self.path / MANIFEST, _json_bytes(self._manifest), self._fsync)
            self._journal.close()
            try:
                (self.path / PENDING).unlink()
            except FileNotFoundError:
                pass
        finally:
            self._closed = True
            if not self._journal.closed:
                self._journal.close()
            self._lock.release()

    def abort(self) -> None:
        """Release the writer without the final rewrites (the journal keeps the new rows)."""
        if not self._closed:
            self._closed = True
            self._journal.close()
            self._lock.release()

    def __enter__(self) -> "MapCacheWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Maps added before an error are complete and verified: keep them.
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort for a forgotten close()
        try:
            self.abort()
        except Exception:
            pass


def _is_leftover(name: str) -> bool:
    return name in OWN_ENTRIES or _is_tmp(name)


def _wipe(path: Path) -> None:
    """Remove the files a cache owns (the manifest first), leaving anything else alone."""
    for name in (MANIFEST, INDEX, PENDING, GT_FILE, GT_FLAGS_FILE):
        try:
            (path / name).unlink()
        except FileNotFoundError:
            pass
    shutil.rmtree(path / MAPS_DIR, ignore_errors=True)
    for p in path.iterdir():
        if _is_tmp(p.name) and p.is_file():
            p.unlink()


def _differences(old: Dict, new_parts: Dict, new_dtype: str) -> str:
    keys = []
    old_parts = old.get("fingerprint_parts", {})
    for k in sorted(set(old_parts) | set(new_parts)):
        if _canonical(old_parts.get(k), k) != _canonical(new_parts.get(k), k):
            keys.append(k)
    if old.get("dtype") != new_dtype:
        keys.append("dtype")
    return ", ".join(keys) if keys else "unknown"


def _recover(path: Path, fsync: bool) -> tuple:
    """Entries of an interrupted cache that still verify; everything else is deleted."""
    entries: Dict[str, _Entry] = {}
    ipath = path / INDEX
    if ipath.exists():
        try:
            for e in _read_index(ipath):
                entries[e.name] = e
        except CacheError as exc:
            warnings.warn(f"{exc}; its maps will be redone", CacheWarning, stacklevel=3)
            entries = {}
    for e in _read_pending(path / PENDING):
        entries[e.name] = e  # later rows win: a map may have been replaced
    maps_dir = path / MAPS_DIR
    maps_dir.mkdir(exist_ok=True)
    good: Dict[str, _Entry] = {}
    bad: List[str] = []
    for name, e in entries.items():
        if _check_file(maps_dir / e.map_file, e, crc=True) is None:
            good[name] = e
        else:
            bad.append(name)
    keep = {e.map_file for e in good.values()}
    for p in maps_dir.iterdir():
        if p.name not in keep:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink()
    for p in path.iterdir():
        if _is_tmp(p.name) and p.is_file():
            p.unlink()
    _atomic_write_bytes(ipath, _index_bytes(good.values()), fsync)
    try:
        (path / PENDING).unlink()
    except FileNotFoundError:
        pass
    return good, bad


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------

class MapCache(MapStore):
    """A map cache opened for reading (see the module docstring for the layout).

    Build one with :meth:`open`; write one with :meth:`create`.

    Attributes
    ----------
    path : Path
        The cache folder.
    manifest : dict
        The parsed ``manifest.json``.
    meta : dict
        The manifest's free-form metadata (``"params"``, ``"target"``, model description...).
    dtype : str
        Storage dtype of the maps; :meth:`get` always returns float32.
    fingerprint : str
        ``"sha256:..."`` over the fingerprint parts and the dtype.
    pending : int
        Maps found only in the pending journal (a writer that has not closed yet or crashed).
    """

    def __init__(self, path: Path, manifest: Dict, entries: List[_Entry], pending: int = 0,
                 mmap: bool = False) -> None:
        self.path = path
        self.manifest = manifest
        self.meta = manifest["meta"]
        self.dtype = manifest["dtype"]
        self.fingerprint = manifest["fingerprint"]
        self.pending = pending
        self._entries = {e.name: e for e in entries}
        self._order = [e.name for e in entries]
        self._mmap = bool(mmap)
        self._gt: Optional[Dataset] = None
        self._gt_loaded = False

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, path: PathLike, fingerprint_parts: Dict, meta: Optional[Dict] = None,
               dtype: str = "float32", gt: Optional[Dataset] = None, overwrite: bool = False,
               flush_every: int = 64, fsync: bool = True) -> MapCacheWriter:
        """Create a cache, or resume one with the same fingerprint.

        Parameters
        ----------
        path : path
            Cache folder (created if needed). An existing folder must be empty or hold a cache.
        fingerprint_parts : dict
            What decides the maps' values (model/ONNX file hash, config, preprocessing
            profile and parameters); JSON values only. The dtype is added to it.
        meta : dict, optional
            Free-form metadata for the manifest (current post-processing params under
            ``"params"``, code version under ``"target"``, model description...). When
            resuming, its keys replace the stored ones.
        dtype : {"float32", "float16"}
            Storage dtype of the maps.
        gt : Dataset, optional
            Ground truth to store beside the maps (don't-care flags included).
        overwrite : bool
            Discard an existing cache (whatever its fingerprint) instead of resuming or refusing.
        flush_every : int
            Rewrite the parquet index every this many added maps (and at close).
        fsync : bool
            Flush every file to disk before renaming it into place.

        Returns
        -------
        MapCacheWriter
            ``has(name)`` tells which images a resumed cache already holds.

        Raises
        ------
        CacheError
            When the folder holds a cache with a different fingerprint (and ``overwrite`` is
            false), holds files that are not a cache's, or is being written by another process.
        """
        path = Path(path)
        dtype = _normalise_dtype(dtype)
        if meta is not None and not isinstance(meta, dict):
            raise ValueError("meta must be a dict")
        fp = fingerprint_of(fingerprint_parts, dtype)
        _canonical(meta or {}, "meta")
        if path.exists() and not path.is_dir():
            raise CacheError(f"{path}: exists and is not a folder")
        path.mkdir(parents=True, exist_ok=True)

        old = None
        if (path / MANIFEST).exists():
            try:
                old = _read_manifest(path)
            except CacheError:
                if not overwrite:
                    raise CacheError(
                        f"{path / MANIFEST}: corrupt or unreadable manifest; pass overwrite=True "
                        f"(--overwrite) to rebuild the cache") from None
        else:
            foreign = sorted(p.name for p in path.iterdir() if not _is_leftover(p.name))
            if foreign:
                raise CacheError(f"{path}: the folder is not empty and holds no map cache "
                                 f"({foreign[0]!r} ...); choose a new or empty folder")
        if old is not None and old["fingerprint"] != fp and not overwrite:
            raise CacheError(
                f"{path}: holds maps with a different fingerprint ({old['fingerprint'][:19]}... "
                f"vs {fp[:19]}...; differs in: {_differences(old, fingerprint_parts, dtype)}); "
                f"pass overwrite=True (--overwrite) to replace them, or choose another folder")

        lock = _Lock(path)
        try:
            resume = old is not None and old["fingerprint"] == fp and not overwrite
            if resume:
                entries, bad = _recover(path, fsync)
                manifest = old
                manifest["meta"] = {**old["meta"], **dict(meta or {})}
                manifest["updated"] = _now()
            else:
                studies = _studies(path)
                _wipe(path)
                if old is not None and studies:
                    warnings.warn(f"{path}: the old maps were replaced; the studies in this "
                                  f"folder ({', '.join(studies)}) were run on them",
                                  CacheWarning, stacklevel=2)
                (path / MAPS_DIR).mkdir()
                entries, bad = {}, []
                manifest = {
                    "format": FORMAT_NAME,
                    "schema_version": SCHEMA_VERSION,
                    "tool_version": __version__,
                    "fingerprint": fp,
                    "fingerprint_parts": fingerprint_parts,
                    "dtype": dtype,
                    "created": _now(),
                    "updated": None,
                    "n_images": 0,
                    "gt": None,
                    "meta": dict(meta or {}),
                }
                _atomic_write_bytes(path / MANIFEST, _json_bytes(manifest), fsync)
                _atomic_write_bytes(path / INDEX, _index_bytes([]), fsync)
            if gt is not None:
                manifest["gt"] = _write_gt(path, gt, fsync)
            _atomic_write_bytes(path / MANIFEST, _json_bytes(manifest), fsync)
            if fsync:
                _fsync_dir(path)
            writer = MapCacheWriter(path, manifest, entries, lock, flush_every, fsync)
        except BaseException:
            lock.release()
            raise
        writer.redone = bad
        if bad:
            warnings.warn(f"{path}: {len(bad)} cached map(s) failed verification and must be "
                          f"redone (first: {bad[0]!r})", CacheWarning, stacklevel=2)
        return writer

    @classmethod
    def open(cls, path: PathLike, verify: str = "sample", sample: int = 8, seed: int = 0,
             mmap: bool = False) -> "MapCache":
        """Open a cache for reading and check it.

        Parameters
        ----------
        path : path
            Cache folder.
        verify : {"sample", "full", "none"}
            ``"sample"``: the manifest, the index, every map file's size, and the crc32 of
            ``sample`` maps drawn with ``seed`` plus the first and the last. ``"full"``: the
            crc32 of every map. ``"none"``: the manifest, the index and the files' existence.
        sample, seed : int
            Size and seed of the crc sample.
        mmap : bool
            Let :meth:`get` memory-map float32 maps instead of reading them.

        Raises
        ------
        CacheError
            Naming the file at fault (corrupt manifest or index, missing, truncated or altered
            map file).
        """
        if verify not in ("sample", "full", "none"):
            raise ValueError(f"verify must be 'sample', 'full' or 'none', not {verify!r}")
        path = Path(path)
        manifest = _read_manifest(path)
        entries = _read_index(path / INDEX)
        known = {e.name: e for e in entries}
        pending = 0
        maps_dir = path / MAPS_DIR
        for e in _read_pending(path / PENDING):
            old = known.get(e.name)
            if old is not None and old.crc32 == e.crc32 and old.nbytes == e.nbytes:
                continue
            # A row of a writer that has not rewritten the index yet: use it if its file verifies.
            if _check_file(maps_dir / e.map_file, e, crc=True) is None:
                if old is None:
                    entries.append(e)
                else:
                    entries[entries.index(old)] = e
                known[e.name] = e
                pending += 1
        cache = cls(path, manifest, entries, pending, mmap)
        if verify != "none":
            cache.verify(verify, sample=sample, seed=seed)
        else:
            for e in entries:
                if not (maps_dir / e.map_file).is_file():
                    raise CacheError(f"{maps_dir / e.map_file}: map file missing "
                                     f"(image {e.name!r})")
        return cache

    # -- checks -------------------------------------------------------------------------------
    def verify(self, mode: str = "full", sample: int = 8, seed: int = 0) -> int:
        """Check map files against the index; returns how many crc32 values were checked.

        ``mode="full"`` checks every crc32; ``"sample"`` checks every size and the crc32 of
        ``sample`` seeded picks plus the first and last map.
        """
        if mode not in ("sample", "full"):
            raise ValueError(f"verify mode must be 'sample' or 'full', not {mode!r}")
        order = self._order
        if mode == "full":
            chosen = set(range(len(order)))
        else:
            chosen = set(random.Random(seed).sample(range(len(order)), min(sample, len(order))))
            if order:
                chosen.update((0, len(order) - 1))
        maps_dir = self.path / MAPS_DIR
        for i, name in enumerate(order):
            e = self._entries[name]
            why = _check_file(maps_dir / e.map_file, e, crc=i in chosen)
            if why is not None:
                raise CacheError(f"{maps_dir / e.map_file}: corrupt map of image {name!r} ({why}); "
                                 f"run cache-maps again to redo it")
        return len(chosen)

    # -- MapStore interface --------------------------------------------------------------------
    def names(self) -> List[str]:
        return list(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str, verify: bool = False) -> MapRecord:
        """One image's record; ``prob`` is float32 whatever the storage dtype.

        Parameters
        ----------
        name : str
            Image name.
        verify : bool
            Check the file's crc32 before using it.
        """
        try:
            e = self._entries[name]
        except KeyError:
            raise KeyError(f"no map for image {name!r} in {self.path}") from None
        fpath = self.path / MAPS_DIR / e.map_file
        if verify:
            why = _check_file(fpath, e, crc=True)
            if why is not None:
                raise CacheError(f"{fpath}: corrupt map of image {name!r} ({why})")
        use_mmap = self._mmap and self.dtype == "float32"
        try:
            arr = np.load(fpath, mmap_mode="r" if use_mmap else None, allow_pickle=False)
        except FileNotFoundError:
            raise CacheError(f"{fpath}: map file missing (image {name!r})") from None
        except (ValueError, OSError, EOFError) as exc:
            raise CacheError(f"{fpath}: unreadable map of image {name!r} ({exc})") from None
        if arr.shape != (e.map_h, e.map_w) or arr.dtype.name != self.dtype:
            raise CacheError(f"{fpath}: map of image {name!r} is {arr.dtype} {arr.shape}, the "
                             f"cache says {self.dtype} ({e.map_h}, {e.map_w})")
        if arr.dtype != np.float32:
            arr = arr.astype(np.float32)
        return MapRecord(name, arr, e.matrix.copy(), e.width, e.height)

    @property
    def gt(self) -> Optional[Dataset]:
        """The stored ground truth (don't-care flags included), or ``None``."""
        if not self._gt_loaded:
            self._gt = _read_gt(self.path) if self.manifest.get("gt") else None
            self._gt_loaded = True
        return self._gt

    @property
    def fingerprint_parts(self) -> Dict:
        return self.manifest["fingerprint_parts"]

    def map_file(self, name: str) -> Path:
        """Path of an image's map file."""
        return self.path / MAPS_DIR / self._entries[name].map_file

    def info(self) -> Dict:
        """A summary: counts, dtype, map shapes, disk size, fingerprint, ground truth, studies."""
        shapes: Dict[str, int] = {}
        map_bytes = 0
        for e in self._entries.values():
            key = f"{e.map_h}x{e.map_w}"
            shapes[key] = shapes.get(key, 0) + 1
            map_bytes += e.nbytes
        man = self.manifest
        out = {
            "path": str(self.path),
            "format": man.get("format"),
            "schema_version": man.get("schema_version"),
            "tool_version": man.get("tool_version"),
            "created": man.get("created"),
            "updated": man.get("updated"),
            "fingerprint": self.fingerprint,
            "fingerprint_parts": self.fingerprint_parts,
            "dtype": self.dtype,
            "images": len(self._order),
            "pending": self.pending,
            "map_shapes": shapes,
            "map_bytes": map_bytes,
            "disk_bytes": _disk_size(self.path),
            "gt": None,
            "studies": _studies(self.path),
            "meta": self.meta,
        }
        gt = self.gt
        if gt is not None:
            names = set(self._order)
            out["gt"] = {
                "images": len(gt),
                "words": gt.n_words(),
                "dont_care": int(sum(int(w.dont_care_flags.sum()) for w in gt.values())),
                "images_without_map": sorted(n for n in gt.keys() if n not in names),
                "maps_without_gt": sorted(n for n in self._order if n not in gt),
            }
        return out
