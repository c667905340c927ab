"""Seeded synthetic probability maps that look like a DBNet's output on a receipt.

Used by tests, benchmarks and the demo when no real model or data is at hand. A page is a
network-space probability map (padding included, as the baseline's model sees a
letterboxed image), the ground-truth word polygons in network space, and the inverse
matrix the baseline would compute for the simulated original image.

What a page contains (all random, all controlled by the ``Generator`` passed in):

* rows of words laid out like a receipt, each word a soft-edged blob (a logistic ramp
  across its border) with a peak probability between about 0.55 and 1.0;
* some words touching or overlapping their neighbours (they merge into one contour), some
  slightly rotated, some curved, some rounded (elliptic) rather than rectangular;
* holes inside some words (their contours have inner borders);
* rows at the very top and bottom of the map and words cut by the map's left/right edge
  when the content fills that dimension (blobs on the border);
* background speckle, small spurious dots and faint smudges (candidates that the
  min-size and box-threshold filters must drop).

Everything is vectorised per word patch; a 1024 x 1024 page with ~115 words takes a few
tens of milliseconds. Float results depend on numpy's ``exp``/``tanh`` implementations,
which may differ in the last bits across numpy versions: store a generated map (not the
seed) wherever bit-exact reproducibility matters.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

__all__ = ["synthetic_page", "inverse_matrix_for", "letterbox_size"]


def letterbox_size(width: int, height: int, size: int) -> Tuple[int, int, int, int]:
    """Size and offset of an image letterboxed into a ``size x size`` network input.

    The baseline's inverse matrix uses ``int()`` (floor) where the resize rounds, so this is
    the geometry the matrix assumes: ``(new_w, new_h, x0, y0)`` with ``scale = size /
    max(width, height)``, ``new_w = int(width * scale)``, ``x0 = (size - new_w) // 2``.
    """
    if width < 1 or height < 1 or size < 1:
        raise ValueError(f"sizes must be positive, got image {width}x{height}, network {size}")
    scale = size / max(width, height)
    new_w, new_h = int(width * scale), int(height * scale)
    return new_w, new_h, (size - new_w) // 2, (size - new_h) // 2


def inverse_matrix_for(width: int, height: int, size: int) -> np.ndarray:
    """The baseline's ``(3, 3)`` float64 matrix mapping network pixels to image pixels.

    ``diag(width / new_w, height / new_h, 1) @ translate(-x0, -y0)`` with the letterbox
    geometry of :func:`letterbox_size`.
    """
    new_w, new_h, x0, y0 = letterbox_size(width, height, size)
    scale = np.array([[width / new_w, 0, 0], [0, height / new_h, 0], [0, 0, 1]], dtype=np.float64)
    shift = np.eye(3)
    shift[0, 2] = -x0
    shift[1, 2] = -y0
    return np.dot(scale, shift)


def _logistic(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * t))


def _word_blob(
    canvas: np.ndarray,
    rng: np.random.Generator,
    cx: float,
    cy: float,
    length: float,
    height: float,
    angle: float,
    bend: float,
    rounded: bool,
    hole: bool,
    peak: float,
    softness: float,
) -> np.ndarray:
    """Paint one word into ``canvas`` (max-combined) and return its GT polygon."""
    size_h, size_w = canvas.shape
    ca, sa = np.cos(angle), np.sin(angle)
    half_l, half_h = length / 2.0, height / 2.0
    # patch half-extent along the word (u) and across it (v), margins included: an
    # ellipse's ramp is stretched along its long axis by half_l / half_h
    ext_u = half_l + 5 * softness * (half_l / min(half_l, half_h) if rounded else 1.0) + 2
    ext_v = half_h + abs(bend) + 5 * softness * (half_h / min(half_l, half_h) if rounded else 1.0) + 2
    reach = abs(ext_u * ca) + abs(ext_v * sa)
    reach_y = abs(ext_u * sa) + abs(ext_v * ca)
    x_lo, x_hi = int(max(np.floor(cx - reach), 0)), int(min(np.ceil(cx + reach), size_w - 1))
    y_lo, y_hi = int(max(np.floor(cy - reach_y), 0)), int(min(np.ceil(cy + reach_y), size_h - 1))

    period = max(length, 1.0) * rng.uniform(1.2, 2.5)
    phase = rng.uniform(0, 2 * np.pi)

    if x_lo <= x_hi and y_lo <= y_hi:
        xs = np.arange(x_lo, x_hi + 1, dtype=np.float32) - np.float32(cx)
        ys = np.arange(y_lo, y_hi + 1, dtype=np.float32)[:, None] - np.float32(cy)
        k = np.float32(1.0 / softness)
        if angle == 0 and not bend and not rounded:
            # axis-aligned rectangle: the ramp is separable (u = x, v = y)
            val = _logistic((np.float32(half_h) - np.abs(ys)) * k) * _logistic((np.float32(half_l) - np.abs(xs)) * k)
            u, v = xs[None, :], ys
        else:
            u = xs * np.float32(ca) + ys * np.float32(sa)  # along the word
            v = ys * np.float32(ca) - xs * np.float32(sa)  # across the word
            if bend:
                v = v - np.float32(bend) * np.sin(u * np.float32(2 * np.pi / period) + np.float32(phase))
            if rounded:
                r = np.sqrt((u / np.float32(half_l)) ** 2 + (v / np.float32(half_h)) ** 2)
                val = _logistic((1 - r) * np.float32(min(half_l, half_h)) * k)
            else:
                val = _logistic((np.float32(half_l) - np.abs(u)) * k) * _logistic((np.float32(half_h) - np.abs(v)) * k)
        if hole:
            hu, hv = half_l * rng.uniform(0.1, 0.4), half_h * rng.uniform(0.3, 0.6)
            ou = rng.uniform(-0.4, 0.4) * half_l
            rh = np.sqrt(((u - np.float32(ou)) / np.float32(hu)) ** 2 + (v / np.float32(hv)) ** 2)
            val = val * (1 - _logistic((1 - rh) * np.float32(3 * hv) * k))
        patch = canvas[y_lo : y_hi + 1, x_lo : x_hi + 1]
        val = val.astype(np.float32, copy=False)
        val *= np.float32(peak)
        np.maximum(patch, val, out=patch)

    # ground truth: the word's outline in network space
    if bend:
        n_side = 6
        us = np.linspace(-half_l, half_l, n_side)
        off = bend * np.sin(us * (2 * np.pi / period) + phase)
        top = np.stack([us, off - half_h], 1)
        bottom = np.stack([us[::-1], off[::-1] + half_h], 1)
        local = np.concatenate([top, bottom])
    else:
        local = np.array([[-half_l, -half_h], [half_l, -half_h], [half_l, half_h], [-half_l, half_h]])
    rot = np.array([[ca, sa], [-sa, ca]])
    return local @ rot + np.array([cx, cy])


def synthetic_page(
    rng: np.random.Generator,
    size: int = 1024,
    n_words: int = 115,
    image_size: Tuple[int, int] | None = None,
    p_touch: float = 0.08,
    p_rotate: float = 0.15,
    p_curve: float = 0.06,
    p_round: float = 0.08,
    p_hole: float = 0.04,
    n_specks: int = 25,
    noise: float = 0.06,
    text_scale: float | None = None,
    gt_unclip: float = 0.0,
) -> Tuple[np.ndarray, List[np.ndarray], np.ndarray]:
    """Generate one receipt-like page.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of all randomness (the page is a pure function of its state).
    size : int
        Network input size; the map is ``size x size``.
    n_words : int
        Number of words to lay out (fewer if the page is full).
    image_size : (width, height), optional
        Simulated original image size; random receipt-like (taller than wide) if omitted.
    p_touch, p_rotate, p_curve, p_round, p_hole : float
        Probabilities that a word touches its left neighbour, is rotated, is curved, is an
        ellipse, has a hole.
    n_specks : int
        Number of small spurious blobs (dots and faint smudges).
    noise : float
        Amplitude of the background speckle.
    text_scale : float, optional
        Size of the text relative to a 1024-pixel receipt page (rows of about 12-26
        pixels at 1.0). Defaults to ``size / 1024`` (a whole receipt at this resolution);
        pass 1.0 for a small map holding a crop of normally sized text.
    gt_unclip : float
        When > 0, the GT outlines are grown by ``area * gt_unclip / perimeter`` (mitred),
        so the blobs act as DB's shrunk text kernels and the best unclip ratio is near
        ``gt_unclip``; 0 (default) keeps the GT equal to the blobs' outlines.

    Returns
    -------
    prob : ndarray of float32, shape (size, size)
        Probability map in ``[0, 1]``.
    polygons : list of ndarray
        Ground-truth word polygons, ``(k, 2)`` float64 in network pixels (4 points, or 12
        along curved words).
    inverse_matrix : ndarray of float64, shape (3, 3)
        The baseline's network-to-image matrix for ``image_size``.
    """
    if size < 16:
        raise ValueError(f"size must be at least 16, got {size}")
    if n_words < 0:
        raise ValueError(f"n_words must be >= 0, got {n_words}")
    if image_size is None:
        height = int(rng.integers(900, 2000))
        width = int(height * rng.uniform(0.45, 1.1))
    else:
        width, height = int(image_size[0]), int(image_size[1])
    new_w, new_h, x0, y0 = letterbox_size(width, height, size)
    matrix = inverse_matrix_for(width, height, size)

    canvas = np.zeros((size, size), dtype=np.float32)
    polygons: List[np.ndarray] = []
    unit = size / 1024.0 if text_scale is None else float(text_scale)
    if not unit > 0:
        raise ValueError(f"text_scale must be > 0, got {text_scale}")

    # receipt layout: rows from top to bottom of the content area
    row_h = rng.uniform(12, 26) * unit
    # sometimes the first row is cut by the top of the image
    y = y0 + (-0.3 * row_h if rng.random() < 0.3 else rng.uniform(2, 30) * unit)
    left, right = x0 + 4 * unit, x0 + new_w - 4 * unit
    words_left = n_words
    while words_left > 0 and y + row_h / 2 < y0 + new_h + row_h * 0.3:
        h_row = row_h * rng.uniform(0.75, 1.25)
        cy_row = y + h_row / 2
        x = left + rng.uniform(-8, 60) * unit
        if rng.random() < 0.1:
            x = x0 - rng.uniform(0, 10) * unit  # cut by the image's left edge
        n_in_row = int(rng.integers(1, 8))
        for _ in range(n_in_row):
            if words_left == 0:
                break
            length = rng.uniform(1.2, 6) * h_row
            if x + length > right + (20 * unit if rng.random() < 0.15 else 0):
                break
            angle = rng.normal(0, 0.06) if rng.random() < p_rotate else 0.0
            bend = rng.uniform(0.15, 0.5) * h_row if rng.random() < p_curve else 0.0
            poly = _word_blob(
                canvas,
                rng,
                cx=x + length / 2,
                cy=cy_row + rng.normal(0, 0.8),
                length=length,
                height=h_row * rng.uniform(0.6, 0.85),
                angle=angle,
                bend=bend,
                rounded=rng.random() < p_round,
                hole=rng.random() < p_hole,
                peak=rng.uniform(0.55, 1.0),
                softness=rng.uniform(0.6, 2.5) * unit,
            )
            polygons.append(poly)
            words_left -= 1
            gap = rng.uniform(-2, 1) if rng.random() < p_touch else rng.uniform(0.5, 3.5) * h_row * 0.4
            x += length + gap
        y += h_row * rng.uniform(1.2, 1.8)

    # spurious specks: tiny dots (min-size filter) and faint smudges (box threshold)
    for _ in range(n_specks):
        cx, cy = rng.uniform(0, size), rng.uniform(0, size)
        if rng.random() < 0.5:
            _word_blob(canvas, rng, cx, cy, rng.uniform(1, 5), rng.uniform(1, 4), 0.0, 0.0,
                       True, False, rng.uniform(0.4, 0.95), rng.uniform(0.3, 1.0))
        else:
            _word_blob(canvas, rng, cx, cy, rng.uniform(5, 40) * unit, rng.uniform(3, 12) * unit,
                       rng.uniform(0, np.pi), 0.0, bool(rng.random() < 0.5), False,
                       rng.uniform(0.3, 0.6), rng.uniform(1.0, 4.0))

    if noise > 0:
        # multiplicative speckle on the text, a faint additive one on the background
        speckle = rng.random((size, size), dtype=np.float32)
        gain = speckle * np.float32(-noise)
        gain += np.float32(1.0)
        canvas *= gain
        speckle *= speckle
        speckle *= np.float32(noise * 0.5)
        canvas += speckle
    np.clip(canvas, np.float32(0.0), np.float32(1.0), out=canvas)
    if gt_unclip > 0:
        polygons = [_expand(p, gt_unclip) for p in polygons]
    return canvas, polygons, matrix


def _expand(poly: np.ndarray, ratio: float) -> np.ndarray:
    """Offset a GT outline outwards by ``area * ratio / perimeter`` with mitred corners.

    A trained DBNet's probability map covers the text's *shrunk* kernel (DB shrinks each
    label by ``area * (1 - r**2) / perimeter``) and the decoder's unclip undoes that; with
    this option the synthetic blob plays the kernel and the GT the full word, so that the
    best unclip ratio of a synthetic set is near ``ratio`` as on real data.
    """
    from shapely.geometry import Polygon

    shape = Polygon(poly)
    if not shape.is_valid or shape.area == 0:
        return poly
    grown = shape.buffer(shape.area * ratio / shape.length, join_style=2, mitre_limit=4.0)
    xy = np.asarray(grown.exterior.coords)[:-1]
    return xy if len(xy) >= 3 else poly
