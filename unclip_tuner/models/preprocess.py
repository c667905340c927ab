"""Image preprocessing for DB text detectors: the competition baseline's and two others.

A probability map is only useful with the geometry that produced it: every profile here returns
the network input together with the 3x3 matrix that maps network pixels back to original image
pixels and the original ``(W, H)``. The functions are pure (arrays in, arrays out) except
:func:`load_image`, which reads a file.

Profiles
--------
``seed``
    The competition baseline at inference: ``LongestMaxSize(input_size)`` with
    ``cv2.resize(INTER_LINEAR)`` to ``round(side * scale)`` (half to even, skipped when the
    scale is 1), ``PadIfNeeded`` centred with zeros to ``input_size x input_size``, then
    ImageNet mean/std on RGB in albumentations 1.3.1 arithmetic. The inverse matrix is the
    baseline's, which uses ``int()`` instead of ``round()`` for the resized size and so can be
    one pixel off the real resize; it is reproduced as is, because the users' scores were
    computed with it.
``seed-ppocr``
    The ``seed`` geometry (so maps live in the competition's network space) with PP-OCR's
    normalisation ``(x / 255 - 0.5) / 0.5`` on BGR, for the PP-OCR detectors.
``ppocr``
    PaddleOCR ``predict_det``: the long side limited to ``input_size`` (960), each side rounded
    to a multiple of 32 (at least 32), ImageNet mean/std applied to BGR pixels (PaddleOCR's
    channel order), per-axis inverse scale.
``rapidocr``
    RapidOCR 1.4: the short side brought up to at least ``input_size`` (736), each side rounded
    to a multiple of 32, ``(x / 255 - 0.5) / 0.5`` on BGR, per-axis inverse scale.

The image loader follows the baseline: PIL ``convert('RGB')`` first (gray, palette, RGBA, CMYK
and 16-bit images all go through it; 16-bit values above 255 are clipped by Pillow, which is
why a warning is issued), then the EXIF orientation tag applied by hand. PaddleOCR and RapidOCR
read images with OpenCV instead; the decoded pixels can differ slightly from Pillow's.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, NamedTuple, Optional, Tuple, Union

import cv2
import numpy as np

__all__ = [
    "Normalisation",
    "IMAGENET_RGB",
    "IMAGENET_BGR_PADDLE",
    "PPOCR_BGR",
    "Preprocessed",
    "PROFILES",
    "EXIF_ORIENTATION_TAG",
    "load_image",
    "apply_exif_orientation",
    "normalise",
    "seed_resized_size",
    "seed_inverse_matrix",
    "seed_resize_and_pad",
    "preprocess_seed",
    "preprocess_ppocr",
    "preprocess_rapidocr",
    "preprocess",
    "default_input_size",
]

#: EXIF tag number of "Orientation".
EXIF_ORIENTATION_TAG = 274

# Pillow modes whose samples can exceed 8 bits; convert('RGB') clips them.
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "I;16S", "F")

_FORMULAS = ("albumentations", "paddle", "rapidocr")


@dataclass(frozen=True)
class Normalisation:
    """Per-channel normalisation of uint8 pixels into the network's float32 input.

    Parameters
    ----------
    mean, std : tuple of 3 float
        Per-channel mean and standard deviation on the ``[0, 1]`` scale, in the channel order
        given by ``channel_order`` (the first value applies to the first network channel).
    max_pixel : float
        The pixel value that maps to 1 (255 for uint8 images).
    channel_order : {"RGB", "BGR"}
        Channel order of the network input.
    formula : {"albumentations", "paddle", "rapidocr"}
        The floating-point arithmetic, which decides the last bit of each value:

        - ``"albumentations"`` (albumentations 1.3.1 ``Normalize``): in float32,
          ``(x - mean * max_pixel) * (1 / (std * max_pixel))`` with the reciprocal taken in
          float32.
        - ``"paddle"`` (PaddleOCR ``NormalizeImage``): in float32,
          ``(x * (1 / max_pixel) - mean) / std``.
        - ``"rapidocr"`` (RapidOCR ``DetPreProcess``): ``x * (1 / max_pixel)`` in float32,
          then ``(. - mean) / std`` in float64, rounded to float32 at the end.
    """

    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    max_pixel: float = 255.0
    channel_order: str = "RGB"
    formula: str = "albumentations"

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("normalisation mean and std need exactly 3 values each")
        if any(float(s) == 0.0 for s in self.std):
            raise ValueError("normalisation std values must be non-zero")
        if float(self.max_pixel) <= 0.0:
            raise ValueError("normalisation max_pixel must be positive")
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        if self.formula not in _FORMULAS:
            raise ValueError(f"formula must be one of {_FORMULAS}, got {self.formula!r}")


#: The baseline's ``Normalize``: ImageNet statistics on RGB, albumentations arithmetic.
IMAGENET_RGB = Normalisation((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 255.0, "RGB", "albumentations")
#: PaddleOCR ``predict_det``: ImageNet statistics applied in order to B, G, R.
IMAGENET_BGR_PADDLE = Normalisation((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 255.0, "BGR", "paddle")
#: PP-OCR detectors as served by RapidOCR: ``(x / 255 - 0.5) / 0.5`` on BGR.
PPOCR_BGR = Normalisation((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 255.0, "BGR", "rapidocr")


class Preprocessed(NamedTuple):
    """What a profile produces for one image.

    Attributes
    ----------
    image : ndarray
        Network input, ``(3, h, w)`` float32 (no batch axis).
    inverse_matrix : ndarray
        ``(3, 3)`` float64 matrix mapping homogeneous network pixel coordinates to original
        image pixel coordinates.
    original_size : tuple of int
        ``(W, H)`` of the image after EXIF orientation.
    """

    image: np.ndarray
    inverse_matrix: np.ndarray
    original_size: Tuple[int, int]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

def apply_exif_orientation(image, orientation: int):
    """Apply an EXIF orientation value to a PIL image, as the baseline's loader does.

    Parameters
    ----------
    image : PIL.Image.Image
        The image as decoded.
    orientation : int
        EXIF orientation 1..8. Values outside 2..8 leave the image unchanged.

    Returns
    -------
    PIL.Image.Image
        The image as it is meant to be viewed. Orientations 5..8 swap width and height.

    Notes
    -----
    The baseline uses ``rotate(+-90, expand=True)`` / ``rotate(180)`` and left-right flips;
    for right angles Pillow performs those as exact transpositions, so the lossless
    ``transpose`` operations below give the same pixels.
    """
    from PIL import Image

    t = Image.Transpose
    ops = {
        2: (t.FLIP_LEFT_RIGHT,),
        3: (t.ROTATE_180,),
        4: (t.ROTATE_180, t.FLIP_LEFT_RIGHT),
        5: (t.ROTATE_270, t.FLIP_LEFT_RIGHT),
        6: (t.ROTATE_270,),
        7: (t.ROTATE_90, t.FLIP_LEFT_RIGHT),
        8: (t.ROTATE_90,),
    }.get(int(orientation), ())
    for op in ops:
        image = image.transpose(op)
    return image


def load_image(path: Union[str, os.PathLike]) -> np.ndarray:
    """Read an image file the way the baseline's data set does.

    Parameters
    ----------
    path : str or path-like
        Image file (anything Pillow reads).

    Returns
    -------
    ndarray
        ``(H, W, 3)`` uint8 RGB array, EXIF orientation applied.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When Pillow cannot decode the file.

    Warns
    -----
    UserWarning
        For images with more than 8 bits per sample: ``convert('RGB')`` clips them, as in the
        baseline, which rarely is what the image means.
    """
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            if im.mode in _WIDE_MODES:
                warnings.warn(
                    f"{path}: {im.mode} image with more than 8 bits per sample; "
                    "convert('RGB') clips values above 255, as the reference pipeline does",
                    UserWarning,
                    stacklevel=2,
                )
            rgb = im.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot decode image {path}: {exc}") from None
    # The baseline reads the tag from the converted image (Pillow carries ``info`` over).
    exif = rgb.getexif()
    if exif and EXIF_ORIENTATION_TAG in exif:
        rgb = apply_exif_orientation(rgb, exif[EXIF_ORIENTATION_TAG])
    return np.asarray(rgb, dtype=np.uint8).copy()


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(
            f"expected an (H, W, 3) uint8 RGB image, got shape {rgb.shape} dtype {rgb.dtype}"
        )
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"empty image of shape {rgb.shape}")
    return rgb


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------

def normalise(image: np.ndarray, normalisation: Normalisation) -> np.ndarray:
    """Normalise a uint8 image in the network's channel order.

    Parameters
    ----------
    image : ndarray
        ``(H, W, 3)`` uint8 image whose channels are already in
        ``normalisation.channel_order``.
    normalisation : Normalisation
        Statistics and arithmetic.

    Returns
    -------
    ndarray
        ``(H, W, 3)`` float32.
    """
    x = np.asarray(image).astype(np.float32)
    if normalisation.formula == "albumentations":
        mean = np.asarray(normalisation.mean, dtype=np.float32) * np.float32(normalisation.max_pixel)
        std = np.asarray(normalisation.std, dtype=np.float32) * np.float32(normalisation.max_pixel)
        denominator = np.reciprocal(std, dtype=np.float32)
        x -= mean
        x *= denominator
        return x
    scale = np.float32(1.0 / float(normalisation.max_pixel))
    if normalisation.formula == "paddle":
        mean = np.asarray(normalisation.mean, dtype=np.float32)
        std = np.asarray(normalisation.std, dtype=np.float32)
        return ((x * scale - mean) / std).astype(np.float32)
    mean64 = np.asarray(normalisation.mean, dtype=np.float64)
    std64 = np.asarray(normalisation.std, dtype=np.float64)
    return (((x * scale).astype(np.float64) - mean64) / std64).astype(np.float32)


def _to_network_input(image_rgb: np.ndarray, normalisation: Normalisation) -> np.ndarray:
    """RGB uint8 HWC -> normalised float32 CHW in the network's channel order."""
    if normalisation.channel_order == "BGR":
        image_rgb = image_rgb[:, :, ::-1]
    out = normalise(image_rgb, normalisation)
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# The baseline's geometry
# --------------------------------------------------------------------------------------------

def seed_resized_size(width: int, height: int, target: int) -> Tuple[int, int]:
    """Size after the baseline's ``LongestMaxSize(target)``.

    Parameters
    ----------
    width, height : int
        Original size.
    target : int
        Longest side after resizing.

    Returns
    -------
    tuple of int
        ``(new_w, new_h)``: each side times ``target / max(W, H)``, rounded half to even
        (albumentations 1.3.1 ``py3round``); the original size when the scale is exactly 1.

    Raises
    ------
    ValueError
        When a side would become 0 (an image far thinner than ``target`` allows).
    """
    width, height, target = int(width), int(height), int(target)
    if width <= 0 or height <= 0 or target <= 0:
        raise ValueError(f"sizes must be positive, got {width}x{height} to {target}")
    scale = target / float(max(width, height))
    if scale == 1.0:
        return width, height
    new_w, new_h = round(width * scale), round(height * scale)
    if new_w == 0 or new_h == 0:
        raise ValueError(
            f"a {width}x{height} image cannot be resized to longest side {target}: a side becomes 0"
        )
    return new_w, new_h


def seed_inverse_matrix(width: int, height: int, target: int) -> np.ndarray:
    """The baseline's matrix from network pixels back to original pixels.

    Parameters
    ----------
    width, height : int
        Original size ``(W, H)``.
    target : int
        Network input side (the padded square).

    Returns
    -------
    ndarray
        ``(3, 3)`` float64 ``diag(W / new_w, H / new_h, 1) @ translate(-x0, -y0)`` with
        ``scale = target / max(W, H)``, ``new_w, new_h = int(W * scale), int(H * scale)``
        (truncation, not the resize's rounding) and ``x0, y0 = (target - new_w) // 2,
        (target - new_h) // 2``.
    """
    width, height, target = int(width), int(height), int(target)
    scale = target / max(width, height)
    new_w, new_h = int(width * scale), int(height * scale)
    if new_w == 0 or new_h == 0:
        raise ValueError(f"a {width}x{height} image has a zero side at network size {target}")
    x0, y0 = (target - new_w) // 2, (target - new_h) // 2
    scale_matrix = np.array([[width / new_w, 0.0, 0.0], [0.0, height / new_h, 0.0], [0.0, 0.0, 1.0]])
    translation = np.eye(3)
    translation[0, 2] = -x0
    translation[1, 2] = -y0
    return np.dot(scale_matrix, translation)


def seed_resize_and_pad(rgb: np.ndarray, target: int) -> np.ndarray:
    """``LongestMaxSize(target)`` then ``PadIfNeeded(target, target)`` centred with zeros.

    Parameters
    ----------
    rgb : ndarray
        ``(H, W, 3)`` uint8 image.
    target : int
        Network input side.

    Returns
    -------
    ndarray
        ``(target, target, 3)`` uint8 (larger along a side only if that side already exceeded
        ``target``, which the resize rules out).
    """
    rgb = _check_rgb(rgb)
    height, width = rgb.shape[:2]
    new_w, new_h = seed_resized_size(width, height, target)
    if (new_w, new_h) != (width, height):
        rgb = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top = (target - new_h) // 2 if new_h < target else 0
    left = (target - new_w) // 2 if new_w < target else 0
    out_h, out_w = max(target, new_h), max(target, new_w)
    out = np.zeros((out_h, out_w, 3), dtype=np.uint8)
    out[top:top + new_h, left:left + new_w] = rgb
    return out


def preprocess_seed(
    rgb: np.ndarray, target: int = 1024, normalisation: Normalisation = IMAGENET_RGB
) -> Preprocessed:
    """The baseline's inference preprocessing (profile ``seed``).

    Parameters
    ----------
    rgb : ndarray
        ``(H, W, 3)`` uint8 RGB image (see :func:`load_image`).
    target : int
        Network input side (960, 1024 and 1280 presets exist).
    normalisation : Normalisation
        Defaults to the baseline's ImageNet statistics; :data:`PPOCR_BGR` gives ``seed-ppocr``.

    Returns
    -------
    Preprocessed
        ``(3, target, target)`` float32 input, the baseline's inverse matrix, ``(W, H)``.
    """
    rgb = _check_rgb(rgb)
    height, width = rgb.shape[:2]
    padded = seed_resize_and_pad(rgb, target)
    return Preprocessed(
        _to_network_input(padded, normalisation),
        seed_inverse_matrix(width, height, target),
        (int(width), int(height)),
    )


# --------------------------------------------------------------------------------------------
# PaddleOCR and RapidOCR
# --------------------------------------------------------------------------------------------

def _multiple_of_32(side: int, at_least_32: bool) -> int:
    rounded = int(round(side / 32) * 32)
    return max(rounded, 32) if at_least_32 else rounded


def _resize_to(rgb: np.ndarray, new_w: int, new_h: int, normalisation: Normalisation) -> Preprocessed:
    height, width = rgb.shape[:2]
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    inverse = np.array([[width / new_w, 0.0, 0.0], [0.0, height / new_h, 0.0], [0.0, 0.0, 1.0]])
    return Preprocessed(_to_network_input(resized, normalisation), inverse, (int(width), int(height)))


def preprocess_ppocr(
    rgb: np.ndarray, limit_side_len: int = 960, normalisation: Normalisation = IMAGENET_BGR_PADDLE
) -> Preprocessed:
    """PaddleOCR ``predict_det`` preprocessing (profile ``ppocr``, ``limit_type='max'``).

    Parameters
    ----------
    rgb : ndarray
        ``(H, W, 3)`` uint8 RGB image.
    limit_side_len : int
        The long side is scaled down to this when larger (never up).
    normalisation : Normalisation
        Defaults to PaddleOCR's ImageNet statistics on BGR pixels.

    Returns
    -------
    Preprocessed
        Input of size ``(3, h32, w32)`` where each side is ``int(side * ratio)`` rounded to a
        multiple of 32 (at least 32); the inverse matrix is ``diag(W / w32, H / h32, 1)``.
    """
    rgb = _check_rgb(rgb)
    height, width = rgb.shape[:2]
    ratio = 1.0
    if max(height, width) > limit_side_len:
        ratio = float(limit_side_len) / (height if height > width else width)
    new_h = _multiple_of_32(int(height * ratio), at_least_32=True)
    new_w = _multiple_of_32(int(width * ratio), at_least_32=True)
    return _resize_to(rgb, new_w, new_h, normalisation)


def preprocess_rapidocr(
    rgb: np.ndarray, limit_side_len: int = 736, normalisation: Normalisation = PPOCR_BGR
) -> Preprocessed:
    """RapidOCR 1.4 detector preprocessing (profile ``rapidocr``, ``limit_type='min'``).

    Parameters
    ----------
    rgb : ndarray
        ``(H, W, 3)`` uint8 RGB image.
    limit_side_len : int
        The short side is scaled up to this when smaller (never down).
    normalisation : Normalisation
        Defaults to ``(x / 255 - 0.5) / 0.5`` on BGR.

    Returns
    -------
    Preprocessed
        Input of size ``(3, h32, w32)`` where each side is ``int(side * ratio)`` rounded to a
        multiple of 32; the inverse matrix is ``diag(W / w32, H / h32, 1)``.

    Raises
    ------
    ValueError
        When a side rounds to 0 (RapidOCR gives up on such images too).
    """
    rgb = _check_rgb(rgb)
    height, width = rgb.shape[:2]
    ratio = 1.0
    if min(height, width) < limit_side_len:
        ratio = float(limit_side_len) / (height if height < width else width)
    new_h = _multiple_of_32(int(height * ratio), at_least_32=False)
    new_w = _multiple_of_32(int(width * ratio), at_least_32=False)
    if new_h <= 0 or new_w <= 0:
        raise ValueError(f"a {width}x{height} image rounds to an empty network input")
    return _resize_to(rgb, new_w, new_h, normalisation)


# --------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------

_ProfileFn = Callable[[np.ndarray, int, Normalisation], Preprocessed]

#: name -> (function, default input size, default normalisation)
PROFILES: Dict[str, Tuple[_ProfileFn, int, Normalisation]] = {
    "seed": (preprocess_seed, 1024, IMAGENET_RGB),
    "seed-ppocr": (preprocess_seed, 1024, PPOCR_BGR),
    "ppocr": (preprocess_ppocr, 960, IMAGENET_BGR_PADDLE),
    "rapidocr": (preprocess_rapidocr, 736, PPOCR_BGR),
}


def default_input_size(profile: str) -> int:
    """Default ``input_size`` of a profile (the square side, or the side limit)."""
    return _profile(profile)[1]


def _profile(profile: str) -> Tuple[_ProfileFn, int, Normalisation]:
    try:
        return PROFILES[profile]
    except KeyError:
        raise ValueError(
            f"unknown preprocessing profile {profile!r}; choose one of {sorted(PROFILES)}"
        ) from None


def preprocess(
    rgb: np.ndarray,
    profile: str = "seed",
    input_size: Optional[int] = None,
    normalisation: Optional[Normalisation] = None,
) -> Preprocessed:
    """Preprocess an RGB image with a named profile.

    Parameters
    ----------
    rgb : ndarray
        ``(H, W, 3)`` uint8 RGB image (see :func:`load_image`).
    profile : {"seed", "seed-ppocr", "ppocr", "rapidocr"}
        See the module documentation.
    input_size : int, optional
        ``seed*``: the square side (default 1024); ``ppocr``: the long-side limit (960);
        ``rapidocr``: the short-side minimum (736).
    normalisation : Normalisation, optional
        Overrides the profile's normalisation.

    Returns
    -------
    Preprocessed
        ``(image CHW float32, inverse_matrix 3x3 float64, (W, H))``.
    """
    fn, size, norm = _profile(profile)
    size = size if input_size is None else int(input_size)
    if size <= 0:
        raise ValueError(f"input_size must be positive, got {size}")
    return fn(rgb, size, norm if normalisation is None else normalisation)
