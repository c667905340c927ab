"""Run a detector once over a folder of images and write every probability map to a cache.

The loop overlaps its three kinds of work:

* worker threads read and preprocess the next images (Pillow decoding and OpenCV resizing
  release the GIL);
* the main thread batches them (images of one shape per batch, so profiles with variable
  input sizes are bucketed by shape) and runs the network; on a GPU the next batch is launched
  before the previous one's maps are copied back;
* one writer thread stores the maps through the cache writer while the next batch computes.

It is resumable: images the cache already holds are skipped before they are read, and a map
reaches the cache only complete (see :mod:`unclip_tuner.cache.store`), so a run killed at any
moment resumes where it stopped.

Only :class:`TorchDetector` needs torch (imported when it is created); :class:`OnnxRunner`
needs onnxruntime.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..cache.base import MapRecord
from .preprocess import Normalisation, Preprocessed, load_image, preprocess

PathLike = Union[str, os.PathLike]

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageItem",
    "ImagePlan",
    "CacheRunStats",
    "TorchDetector",
    "OnnxRunner",
    "list_images",
    "plan_images",
    "resolve_device",
    "run_cache_maps",
]

#: File suffixes read as images (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: Test-time augmentations: ``hflip`` averages the map of the mirrored input, mirrored back.
TTA_MODES = (None, "hflip")


# --------------------------------------------------------------------------------------------
# Which images
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageItem:
    """One image to process.

    Attributes
    ----------
    name : str
        Name in the cache: the ground-truth key it matches, else the file name.
    path : Path
        The image file.
    """

    name: str
    path: Path


@dataclass
class ImagePlan:
    """The images of a run and how they relate to the ground truth.

    Attributes
    ----------
    items : list of ImageItem
        Images to process, in order.
    gt : Dataset or None
        Ground truth restricted to ``items`` (keys are the items' names).
    gt_without_image : list of str
        GT entries with no image file (left out, as the baseline's data set does).
    images_without_gt : list of str
        Image files that no GT entry names (not processed when GT is given).
    """

    items: List[ImageItem]
    gt: Any = None
    gt_without_image: List[str] = field(default_factory=list)
    images_without_gt: List[str] = field(default_factory=list)


def list_images(images_dir: PathLike) -> List[Path]:
    """Image files directly inside a folder, sorted by name.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        When the folder does not exist or is a file.
    """
    folder = Path(images_dir)
    if not folder.exists():
        raise FileNotFoundError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder")
    return sorted((p for p in folder.iterdir()
                   if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")),
                  key=lambda p: p.name)


def plan_images(images_dir: PathLike, gt=None, limit: Optional[int] = None) -> ImagePlan:
    """Pair image files with ground-truth entries.

    Parameters
    ----------
    images_dir : path
        Folder of images.
    gt : Dataset, optional
        Ground truth. A GT entry matches the file of the same name, else the file with the
        same stem (``gt_img_1.txt`` and ``img_1.jpg``); the cache then uses the GT key as the
        image's name. Only GT images are processed, in GT order, as in the baseline.
    limit : int, optional
        Keep the first ``limit`` images only (the GT is restricted accordingly).

    Returns
    -------
    ImagePlan

    Raises
    ------
    ValueError
        When the folder holds no image, or a GT entry matches several files by stem.
    """
    from ..io.icdar import image_key
    from ..io.types import Dataset

    files = list_images(images_dir)
    folder = Path(images_dir)
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    if gt is None:
        if not files:
            raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
        items = [ImageItem(p.name, p) for p in files]
        return ImagePlan(items[:limit] if limit else items)
    by_name = {p.name: p for p in files}
    by_stem: Dict[str, List[Path]] = {}
    for p in files:
        by_stem.setdefault(image_key(p.name), []).append(p)
    items: List[ImageItem] = []
    missing: List[str] = []
    used = set()
    for key in gt.keys():
        path = by_name.get(key)
        if path is None:
            cands = by_stem.get(image_key(key), [])
            if len(cands) > 1:
                raise ValueError(f"GT image {key!r} matches several files by stem: "
                                 f"{', '.join(p.name for p in cands[:4])}")
            path = cands[0] if cands else None
        if path is None:
            missing.append(key)
            continue
        if path.name in used:
            raise ValueError(f"two GT entries match the same image file {path.name!r}")
        used.add(path.name)
        items.append(ImageItem(key, path))
    if limit:
        items = items[:limit]
    kept = Dataset()
    for it in items:
        kept[it.name] = gt[it.name]
    return ImagePlan(items, kept, missing, [p.name for p in files if p.name not in used])


# --------------------------------------------------------------------------------------------
# Detectors
# --------------------------------------------------------------------------------------------

def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; checks an explicit choice."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: torch {torch.__version__} sees no CUDA device")
        return device
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError("--device mps: not available")
        return device
    if device != "cpu":
        raise ValueError(f"unknown device {device!r}; use auto, cuda, cuda:N, mps or cpu")
    return device


class _Geometry:
    """Preprocessing shared by the detectors: file -> :class:`Preprocessed`."""

    profile: str
    input_size: Optional[int]
    normalisation: Optional[Normalisation]

    #: Profiles whose network inputs all have one shape (no bucketing needed).
    FIXED_PROFILES = ("seed", "seed-ppocr")

    def prepare(self, path: PathLike) -> Preprocessed:
        return preprocess(load_image(path), self.profile, self.input_size, self.normalisation)

    @property
    def fixed_shape(self) -> bool:
        return self.profile in self.FIXED_PROFILES


class TorchDetector(_Geometry):
    """A PyTorch network producing ``(N, 1, H, W)`` probability maps.

    Parameters
    ----------
    model : torch.nn.Module
        Takes ``(N, 3, H, W)`` normalised images, returns probability maps (``prob_maps``).
    profile : str
        Preprocessing profile (see :mod:`unclip_tuner.models.preprocess`).
    input_size : int, optional
        Profile size parameter.
    normalisation : Normalisation, optional
        Overrides the profile's normalisation (the run config's ``Normalize``).
    device : str
        ``auto``, ``cuda``, ``cuda:N``, ``mps`` or ``cpu``.
    tta : {None, "hflip"}
        Average the map of the mirrored input (mirrored back) into the map.
    """

    def __init__(self, model, profile: str = "seed", input_size: Optional[int] = None,
                 normalisation: Optional[Normalisation] = None, device: str = "auto",
                 tta: Optional[str] = None) -> None:
        import torch

        if tta not in TTA_MODES:
            raise ValueError(f"unknown test-time augmentation {tta!r}; use hflip or none")
        self._torch = torch
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.profile, self.input_size, self.normalisation = profile, input_size, normalisation
        self.tta = tta
        self._cuda = self.device.startswith("cuda")

    def start(self, batch: np.ndarray):
        """Launch the network on an ``(N, 3, H, W)`` float32 batch; see :meth:`finish`."""
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if self._cuda:
            x = x.pin_memory()
        x = x.to(self.device, non_blocking=True)
        n = x.shape[0]
        with torch.inference_mode():
            if self.tta == "hflip":
                x = torch.cat([x, torch.flip(x, dims=[3])], dim=0)
            try:
                out = self.model(x)
            except RuntimeError as exc:
                text = str(exc).strip().splitlines()
                reason = text[0] if text else type(exc).__name__
                if "out of memory" in reason.lower():
                    reason += " (lower --batch-size)"
                raise ValueError(f"the model failed on a batch of {n} {tuple(batch.shape[1:])} "
                                 f"input(s): {reason}") from None
            if isinstance(out, dict):
                out = out["prob_maps"]
            out = out[:, 0].float()
            if self.tta == "hflip":
                out = (out[:n] + torch.flip(out[n:], dims=[2])) * 0.5
        if self._cuda:
            host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
            host.copy_(out, non_blocking=True)
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(out.device))
            return host, event
        return out, None

    def finish(self, handle) -> np.ndarray:
        """Wait for a launched batch; returns ``(N, h, w)`` float32 maps."""
        out, event = handle
        if event is not None:
            event.synchronize()
        return out.numpy()

    def describe(self) -> Dict[str, Any]:
        return {"device": self.device, "tta": self.tta}


class OnnxRunner(_Geometry):
    """An ONNX detector (:class:`~unclip_tuner.models.onnx_detector.OnnxDetector`) in the loop.

    Parameters
    ----------
    detector : OnnxDetector
        The loaded model (it carries the profile, input size and normalisation).
    tta : {None, "hflip"}
        As for :class:`TorchDetector`.
    sigmoid : bool
        Apply a sigmoid to the output (exports that end with logits).
    """

    def __init__(self, detector, tta: Optional[str] = None, sigmoid: bool = False) -> None:
        if tta not in TTA_MODES:
            raise ValueError(f"unknown test-time augmentation {tta!r}; use hflip or none")
        self.detector = detector
        self.profile = detector.profile
        self.input_size = detector.input_size
        self.normalisation = detector.normalisation
        self.tta = tta
        self.sigmoid = bool(sigmoid)

    def prepare(self, path: PathLike) -> Preprocessed:
        return self.detector.preprocess(load_image(path))

    def _one(self, x: np.ndarray) -> np.ndarray:
        out = self.detector.run(x)
        if self.sigmoid:
            out = (1.0 / (1.0 + np.exp(-out.astype(np.float64)))).astype(np.float32)
        return out

    def start(self, batch: np.ndarray):
        maps = []
        for x in batch:
            m = self._one(x)
            if self.tta == "hflip":
                flipped = self._one(np.ascontiguousarray(x[:, :, ::-1]))
                m = (m + flipped[:, ::-1]) * np.float32(0.5)
            maps.append(m)
        return np.stack(maps).astype(np.float32, copy=False)

    def finish(self, handle) -> np.ndarray:
        return handle

    def describe(self) -> Dict[str, Any]:
        return {"device": "cpu", "tta": self.tta, "sigmoid": self.sigmoid}


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------

@dataclass
class CacheRunStats:
    """What a run did.

    Attributes
    ----------
    total : int
        Images planned.
    already : int
        Images the cache held before the run (skipped).
    cached : int
        Maps written by this run.
    skipped : list of (str, str)
        Images that could not be read or preprocessed, with the reason.
    seconds : float
        Wall time of the loop.
    network_seconds : float
        Time the loop spent in network calls (launching batches and waiting for their maps).
    """

    total: int = 0
    already: int = 0
    cached: int = 0
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    network_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.cached / self.seconds if self.seconds > 0 else 0.0


def _prepare(detector, item: ImageItem):
    try:
        return item, detector.prepare(item.path), None
    except (FileNotFoundError, ValueError, OSError) as exc:
        text = str(exc).strip().splitlines()
        return item, None, text[0] if text else type(exc).__name__


def run_cache_maps(detector, items: Sequence[ImageItem], writer, batch_size: int = 4,
                   workers: int = 2, strict: bool = False,
                   progress: Optional[Callable[[int], None]] = None) -> CacheRunStats:
    """Compute and cache the probability map of every image the cache does not hold yet.

    Parameters
    ----------
    detector : TorchDetector or OnnxRunner
        Provides ``prepare(path)``, ``start(batch)``, ``finish(handle)`` and ``fixed_shape``.
    items : sequence of ImageItem
        Images in order.
    writer : MapCacheWriter
        Cache writer (``has(name)``, ``add(record)``); the caller closes it.
    batch_size : int
        Images per network call.
    workers : int
        Threads reading and preprocessing images.
    strict : bool
        Raise on an unreadable image instead of skipping it.
    progress : callable, optional
        Called with the number of images finished after every batch.

    Returns
    -------
    CacheRunStats

    Raises
    ------
    ValueError
        With ``strict``, for the first image that cannot be read; for a model failure.
    """
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    stats = CacheRunStats(total=len(items))
    todo = [it for it in items if not writer.has(it.name)]
    stats.already = len(items) - len(todo)
    t0 = time.perf_counter()
    if not todo:
        return stats

    readers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cache-maps-read")
    writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-maps-write")
    window: Deque[Future] = deque()
    pending_writes: Deque[Future] = deque()
    source = iter(todo)
    prefetch = max(2 * batch_size, 2 * workers)
    buckets: Dict[Tuple[int, ...], List[Tuple[ImageItem, Preprocessed]]] = {}
    in_flight: List[Any] = []  # at most one launched batch: (entries, handle)

    def submit_next() -> None:
        item = next(source, None)
        if item is not None:
            window.append(readers.submit(_prepare, detector, item))

    def store(entries, maps) -> None:
        for (item, prep), prob in zip(entries, maps):
            width, height = prep.original_size
            writer.add(MapRecord(item.name, prob, prep.inverse_matrix, width, height))

    def complete(entries, handle) -> None:
        t = time.perf_counter()
        maps = detector.finish(handle)
        stats.network_seconds += time.perf_counter() - t
        while len(pending_writes) >= 2:
            pending_writes.popleft().result()
        pending_writes.append(writes.submit(store, entries, maps))
        stats.cached += len(entries)
        if progress is not None:
            progress(len(entries))

    def launch(entries) -> None:
        batch = np.stack([prep.image for _, prep in entries])
        t = time.perf_counter()
        handle = detector.start(batch)
        stats.network_seconds += time.perf_counter() - t
        if in_flight:
            complete(*in_flight.pop())
        in_flight.append((entries, handle))

    try:
        for _ in range(prefetch):
            submit_next()
        while window:
            item, prep, error = window.popleft().result()
            submit_next()
            if error is not None:
                if strict:
                    raise ValueError(f"{item.path}: {error}")
                stats.skipped.append((item.name, error))
                continue
            shape = prep.image.shape
            bucket = buckets.setdefault(shape, [])
            bucket.append((item, prep))
            if len(bucket) >= batch_size:
                launch(buckets.pop(shape))
            elif sum(len(b) for b in buckets.values()) > 4 * batch_size:
                largest = max(buckets, key=lambda s: len(buckets[s]))
                launch(buckets.pop(largest))
        for shape in list(buckets):
            launch(buckets.pop(shape))
        if in_flight:
            complete(*in_flight.pop())
        while pending_writes:
            pending_writes.popleft().result()
    finally:
        for fut in window:
            fut.cancel()
        readers.shutdown(wait=True, cancel_futures=True)
        # Maps already handed to the writer are complete: let it finish them.
        writes.shutdown(wait=True)
    stats.seconds = time.perf_counter() - t0
    return stats
