"""The demo: synthetic receipts, a real detector, and a real search, with nothing to download.

``unclip-tuner demo`` runs the whole job on an embedded example:

1. :func:`render_receipt` draws receipt photos (off-white paper on a table, a store header,
   item lines with prices, totals, dashed separators; text in OpenCV's Hershey fonts, so no
   font file is needed), slightly rotated and in perspective, with mild blur and noise.
   Every run of text drawn in one piece (a header line, an item name, a price) gets a
   ground-truth quadrilateral around its ink, in image coordinates;
2. the PP-OCRv4 mobile detector shipped in the ``rapidocr-onnxruntime`` wheel computes their
   probability maps into a map cache (:func:`build_demo_cache`: ``cache-maps --onnx ...
   --profile seed-ppocr``);
3. ``tune-post`` searches the post-processing parameters over those maps;
4. :func:`ratio_comparison` scores three polygon unclip ratios at the best thresholds.

Everything here is a library function; :mod:`unclip_tuner.commands.demo` chains them.
Rendering is seeded: the same ``(seed, index)`` gives the same pixels and polygons on every
run with one OpenCV build (OpenCV's anti-aliased drawing and warping may differ in the last
grey level between builds).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .io.types import Dataset, ImageWords

PathLike = Union[str, os.PathLike]

__all__ = [
    "DEMO_PROFILE",
    "DEMO_RATIOS",
    "DemoResult",
    "DemoUnavailable",
    "Receipt",
    "build_demo_cache",
    "check_detector",
    "ratio_comparison",
    "receipt_name",
    "render_receipt",
    "render_receipts",
    "run_demo",
    "write_demo_dataset",
]

#: Preprocessing of the demo's detector: the competition's network space, PP-OCR statistics.
DEMO_PROFILE = "seed-ppocr"
#: Polygon unclip ratios compared at the end of the demo (the seed's 2.0 and +-0.15).
DEMO_RATIOS = (1.85, 2.0, 2.15)

_ONNX_HINT = "pip install onnxruntime"
_MODEL_HINT = "pip install --no-deps rapidocr-onnxruntime==1.4.4"


class DemoUnavailable(ValueError):
    """The demo's detector cannot run here (onnxruntime or the model is missing); one line."""


def check_detector() -> Path:
    """Locate the demo's detector and make sure onnxruntime can run it.

    Returns
    -------
    Path
        The PP-OCRv4 ``.onnx`` file inside the installed ``rapidocr_onnxruntime`` package.

    Raises
    ------
    DemoUnavailable
        With one message naming every missing piece and the command that installs it.
    """
    from .models.onnx_detector import find_ppocr_v4_model

    missing = []
    if importlib.util.find_spec("onnxruntime") is None:
        missing.append(("onnxruntime", _ONNX_HINT))
    model = None
    try:
        model = find_ppocr_v4_model()
    except FileNotFoundError:
        missing.append(("the PP-OCRv4 detector of rapidocr-onnxruntime", _MODEL_HINT))
    if missing:
        what = " and ".join(m[0] for m in missing)
        how = "; ".join(m[1] for m in missing)
        raise DemoUnavailable(f"the demo runs a real detector on the CPU and needs {what}: {how}")
    return model


# --------------------------------------------------------------------------------------------
# Receipt content
# --------------------------------------------------------------------------------------------

_STORES = ("GREEN MART", "CAFE BONJOUR", "DAILY FRESH", "CITY BAKERY", "SUNNY DELI",
           "HANA MARKET", "BLUE BEAN COFFEE", "METRO PHARMACY", "CORNER STORE", "NOODLE HOUSE",
           "FRESH & CO", "STAR BURGER", "MOON BOOKS", "OCEAN SUSHI")
_STREETS = ("MAIN ST", "PARK AVE", "RIVER RD", "HILL ST", "LAKE BLVD", "MARKET ST", "OAK LANE",
            "STATION RD", "HARBOR WAY", "ELM ST")
_CITIES = ("SPRINGFIELD", "RIVERSIDE", "FAIRVIEW", "MAPLETON", "GREENVILLE", "BRIGHTON",
           "LAKEWOOD", "SEOUL", "BUSAN", "INCHEON")
_ITEMS = ("AMERICANO", "CAFE LATTE", "GREEN TEA", "ORANGE JUICE", "CROISSANT", "BAGEL",
          "MUFFIN", "CHEESE CAKE", "MILK 1L", "EGGS 12PC", "BREAD", "BUTTER", "APPLES",
          "BANANAS", "RICE 5KG", "NOODLES", "KIMCHI", "TOFU", "CHICKEN", "BEEF 500G", "SALMON",
          "YOGURT", "WATER 2L", "COLA 500ML", "CHIPS", "CHOCOLATE", "COOKIES", "SHAMPOO",
          "TOOTHPASTE", "TISSUE", "BATTERY AA", "NOTEBOOK", "PEN BLACK", "SANDWICH", "SALAD",
          "SOUP OF DAY", "ICED TEA", "LEMONADE", "HOT DOG", "FRIES L")
_FOOTERS = ("THANK YOU", "THANK YOU FOR SHOPPING", "PLEASE COME AGAIN", "HAVE A NICE DAY",
            "NO REFUND WITHOUT RECEIPT", "VISIT US AGAIN")
_PAYMENTS = ("CASH", "CARD", "VISA", "MASTER")

_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
          cv2.FONT_HERSHEY_TRIPLEX)


@dataclass
class _Segment:
    """One run of text drawn in one piece, in flat paper coordinates."""

    text: str
    x: int
    baseline: int
    font: int
    scale: float
    thickness: int
    #: Ink strength in (0, 1] (faded thermal print is weaker).
    strength: float = 1.0


@dataclass
class Receipt:
    """A rendered receipt photo and its line-level ground truth.

    Attributes
    ----------
    image : ndarray
        ``(H, W, 3)`` uint8 RGB image.
    polygons : list of ndarray
        One ``(4, 2)`` float64 quadrilateral per text line (top-left, top-right,
        bottom-right, bottom-left of the line's ink), in image pixel coordinates.
    texts : list of str
        The text of each line.
    """

    image: np.ndarray
    polygons: List[np.ndarray]
    texts: List[str]

    def words(self) -> ImageWords:
        """The ground truth as :class:`~unclip_tuner.io.types.ImageWords`."""
        return ImageWords([p.copy() for p in self.polygons], None, list(self.texts))


def _money(rng: np.random.Generator, low: float, high: float) -> float:
    return round(float(rng.uniform(low, high)) * 4) / 4


def _fmt_money(value: float) -> str:
    return f"{value:,.2f}"


class _Layout:
    """Places text segments on a paper of fixed width, top to bottom."""

    def __init__(self, width: int, margin: int, font: int, scale: float, thickness: int,
                 spacing: float) -> None:
        self.width = width
        self.margin = margin
        self.font = font
        self.scale = scale
        self.thickness = thickness
        self.spacing = spacing
        self.y = margin
        self.segments: List[_Segment] = []
        self.rules: List[Tuple[int, int, int, str]] = []  # (x0, x1, y, style)
        self.marks: List[Tuple[str, int, int, int]] = []  # (kind, x, y, size): no text

    def _size(self, text: str, font: int, scale: float, thickness: int) -> Tuple[int, int]:
        (w, h), _ = cv2.getTextSize(text, font, scale, thickness)
        return w, h

    def row(self, parts: Sequence[Tuple[str, str]], scale: Optional[float] = None,
            font: Optional[int] = None, thickness: Optional[int] = None) -> None:
        """One row of text; ``parts`` are ``(text, align)`` with align ``left``, ``center``,
        ``right`` or ``mid`` (centred at 55% of the width). The row's scale shrinks until its
        parts fit between the margins at least 12 pixels apart."""
        scale = self.scale if scale is None else scale
        font = self.font if font is None else font
        thickness = self.thickness if thickness is None else thickness
        while True:
            sizes = [self._size(t, font, scale, thickness) for t, _ in parts]
            spans = []
            for (text, align), (w, _) in zip(parts, sizes):
                if align == "left":
                    x = self.margin
                elif align == "right":
                    x = self.width - self.margin - w
                elif align == "mid":
                    x = int(self.width * 0.55) - w // 2
                else:
                    x = (self.width - w) // 2
                spans.append((int(x), int(x) + w))
            ordered = sorted(spans)
            fits = ordered[0][0] >= self.margin and ordered[-1][1] <= self.width - self.margin
            fits = fits and all(b[0] - a[1] >= 12 for a, b in zip(ordered, ordered[1:]))
            if fits or scale < 0.3:
                break
            scale *= 0.93
        cap = max(h for _, h in sizes)
        self.y += cap
        for (text, _), (x, _) in zip(parts, spans):
            self.segments.append(_Segment(text, x, int(self.y), font, scale, thickness))
        self.y += int(round(cap * (self.spacing - 1.0))) + cap // 4

    def mark(self, kind: str, height: int) -> None:
        """A graphic without text across the width: ``barcode`` or ``logo``."""
        self.y += 8
        self.marks.append((kind, self.margin, self.y, height))
        self.y += height + 8

    def rule(self, style: str) -> None:
        """A separator: ``dash`` (dashed), ``double`` (two lines) or ``solid``."""
        self.y += 6
        self.rules.append((self.margin, self.width - self.margin, self.y, style))
        self.y += 14 if style == "double" else 10


def _compose(rng: np.random.Generator) -> _Layout:
    """The content and layout of one receipt."""
    width = int(rng.integers(560, 700))
    font = _FONTS[int(rng.integers(len(_FONTS)))]
    scale = float(rng.uniform(0.62, 0.85))
    thickness = 2 if (font != cv2.FONT_HERSHEY_SIMPLEX or rng.random() < 0.7) else 1
    if font == cv2.FONT_HERSHEY_TRIPLEX:
        thickness = 1 if rng.random() < 0.5 else 2
    lay = _Layout(width, int(rng.integers(28, 44)), font, scale, thickness,
                  float(rng.uniform(1.15, 1.45)))
    dash = "dash" if rng.random() < 0.7 else "solid"

    # header
    if rng.random() < 0.35:
        lay.mark("logo", int(rng.integers(50, 80)))
    store = _STORES[int(rng.integers(len(_STORES)))]
    lay.row([(store, "center")], scale=scale * float(rng.uniform(1.35, 1.65)),
            font=cv2.FONT_HERSHEY_DUPLEX if rng.random() < 0.5 else cv2.FONT_HERSHEY_TRIPLEX,
            thickness=2)
    street = f"{int(rng.integers(1, 999))} {_STREETS[int(rng.integers(len(_STREETS)))]}"
    city = _CITIES[int(rng.integers(len(_CITIES)))]
    small = scale * 0.85
    lay.row([(f"{street}, {city}", "center")], scale=small)
    lay.row([(f"TEL {int(rng.integers(2, 99)):02d}-{int(rng.integers(100, 999))}-"
              f"{int(rng.integers(1000, 9999))}", "center")], scale=small)
    lay.rule(dash)
    date = (f"2024-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d} "
            f"{int(rng.integers(8, 22)):02d}:{int(rng.integers(0, 60)):02d}")
    lay.row([(date, "left"), (f"NO.{int(rng.integers(1000, 9999))}", "right")], scale=small)
    if rng.random() < 0.5:
        lay.row([(f"CASHIER {int(rng.integers(1, 20)):02d}", "left"),
                 (f"POS {int(rng.integers(1, 9))}", "right")], scale=small)
    lay.rule(dash)

    # items
    subtotal = 0.0
    n_items = int(rng.integers(7, 17))
    names = rng.choice(len(_ITEMS), size=n_items, replace=False)
    qty_style = rng.random() < 0.5
    for i in names:
        qty = int(rng.integers(1, 4))
        unit = _money(rng, 0.75, 24.0)
        amount = qty * unit
        subtotal += amount
        if qty_style:
            lay.row([(_ITEMS[int(i)], "left"), (f"{qty}", "mid"), (_fmt_money(amount), "right")])
        else:
            lay.row([(_ITEMS[int(i)], "left"), (_fmt_money(amount), "right")])
            if qty > 1:
                lay.row([(f"  {qty} X {_fmt_money(unit)}", "left")], scale=small)
    lay.rule(dash)

    # totals
    tax = round(subtotal * 0.1, 2)
    total = subtotal + tax
    lay.row([("SUBTOTAL", "left"), (_fmt_money(subtotal), "right")])
    lay.row([("TAX 10%", "left"), (_fmt_money(tax), "right")])
    lay.rule("double")
    big = scale * float(rng.uniform(1.15, 1.35))
    lay.row([("TOTAL", "left"), (_fmt_money(total), "right")], scale=big,
            thickness=max(2, thickness))
    pay = _PAYMENTS[int(rng.integers(len(_PAYMENTS)))]
    if pay == "CASH":
        paid = float(np.ceil(total / 10.0) * 10.0)
        lay.row([("CASH", "left"), (_fmt_money(paid), "right")])
        lay.row([("CHANGE", "left"), (_fmt_money(paid - total), "right")])
    else:
        lay.row([(pay, "left"), (_fmt_money(total), "right")])
        lay.row([(f"CARD NO ****{int(rng.integers(1000, 9999))}", "left")], scale=small)
    lay.rule(dash)

    # footer
    for k in rng.choice(len(_FOOTERS), size=int(rng.integers(1, 3)), replace=False):
        lay.row([(_FOOTERS[int(k)], "center")], scale=small)
    # thermal print fades: some rows come out much lighter than the rest
    faint = float(rng.uniform(0.0, 0.3))
    rows = sorted({seg.baseline for seg in lay.segments})
    for y in rows:
        if rng.random() < faint:
            k = float(rng.uniform(0.4, 0.65))
            for seg in lay.segments:
                if seg.baseline == y:
                    seg.strength = k

    # fine print (not faded: it is hard enough to read)
    fine = scale * float(rng.uniform(0.5, 0.7))
    fine_lines = [f"VAT REG {int(rng.integers(100, 999))}-{int(rng.integers(10, 99))}-"
                  f"{int(rng.integers(10000, 99999))}", "KEEP THIS RECEIPT FOR EXCHANGE",
                  "RETURNS WITHIN 14 DAYS", f"TERMINAL {int(rng.integers(10000, 99999))}"]
    for k in rng.choice(len(fine_lines), size=int(rng.integers(1, 4)), replace=False):
        lay.row([(fine_lines[int(k)], "center")], scale=fine, thickness=1)
    if rng.random() < 0.5:
        lay.mark("barcode", int(rng.integers(40, 70)))
    lay.y += lay.margin

    return lay


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------

def _ink_box(seg: _Segment) -> Tuple[float, float, float, float]:
    """Tight box ``(x0, y0, x1, y1)`` (pixel edges) of a segment's ink, in paper coordinates.

    The segment is drawn alone on a small canvas; pixels above a quarter of full ink count.
    """
    (w, h), base = cv2.getTextSize(seg.text, seg.font, seg.scale, seg.thickness)
    pad = 4 + seg.thickness
    canvas = np.zeros((h + base + 2 * pad, w + 2 * pad), dtype=np.uint8)
    cv2.putText(canvas, seg.text, (pad, pad + h), seg.font, seg.scale, 255, seg.thickness,
                cv2.LINE_AA)
    ys, xs = np.nonzero(canvas >= 64)
    x0 = seg.x - pad + float(xs.min())
    x1 = seg.x - pad + float(xs.max()) + 1.0
    y0 = seg.baseline - h - pad + float(ys.min())
    y1 = seg.baseline - h - pad + float(ys.max()) + 1.0
    return x0, y0, x1, y1


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """A smooth random field in ``[-1, 1]``: a coarse random grid, cubic-interpolated."""
    coarse = rng.uniform(-1.0, 1.0, size=(cells, cells)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), -1.0, 1.0)


def _draw_marks(rng: np.random.Generator, ink: np.ndarray, lay: _Layout) -> None:
    """Graphics without text: barcodes and logos (no ground truth: detections on them are
    false positives)."""
    for kind, x0, y0, size in lay.marks:
        if kind == "barcode":
            width = int(lay.width * rng.uniform(0.45, 0.7))
            x = (lay.width - width) // 2
            while x < (lay.width + width) // 2:
                bar = int(rng.integers(1, 5))
                if rng.random() < 0.55:
                    cv2.rectangle(ink, (x, y0), (x + bar - 1, y0 + size), 255, -1)
                x += bar
        else:  # logo: a ring with a mark inside
            cx, cy, r = lay.width // 2, y0 + size // 2, size // 2
            cv2.circle(ink, (cx, cy), r, 255, max(2, r // 8), cv2.LINE_AA)
            pts = np.array([[cx - r // 2, cy + r // 3], [cx, cy - r // 2],
                            [cx + r // 2, cy + r // 3]], dtype=np.int32)
            cv2.fillPoly(ink, [pts], 255, cv2.LINE_AA)


def _draw_paper(rng: np.random.Generator, lay: _Layout) -> np.ndarray:
    """The flat receipt (float32 RGB in ``[0, 255]``)."""
    h, w = lay.y, lay.width
    tint = np.array([rng.uniform(236, 252), rng.uniform(234, 250), rng.uniform(226, 246)],
                    dtype=np.float32)
    paper = np.empty((h, w, 3), dtype=np.float32)
    paper[:] = tint
    paper += _smooth_field(rng, h, w, 6)[..., None] * np.float32(rng.uniform(2, 6))
    ink = np.zeros((h, w), dtype=np.uint8)
    for seg in lay.segments:
        cv2.putText(ink, seg.text, (seg.x, seg.baseline), seg.font, seg.scale,
                    int(round(255 * seg.strength)), seg.thickness, cv2.LINE_AA)
    for x0, x1, y, style in lay.rules:
        if style == "dash":
            step = int(rng.integers(10, 16))
            for x in range(x0, x1 - step // 2, step):
                cv2.line(ink, (x, y), (x + step // 2, y), 255, 1 + int(rng.random() < 0.5),
                         cv2.LINE_AA)
        elif style == "double":
            cv2.line(ink, (x0, y), (x1, y), 255, 1, cv2.LINE_AA)
            cv2.line(ink, (x0, y + 4), (x1, y + 4), 255, 1, cv2.LINE_AA)
        else:
            cv2.line(ink, (x0, y), (x1, y), 255, 1, cv2.LINE_AA)
    _draw_marks(rng, ink, lay)
    # the print's strength also varies smoothly over the page
    strength = np.clip(np.float32(rng.uniform(0.75, 0.95)) +
                       np.float32(0.12) * _smooth_field(rng, h, w, 4), 0.6, 1.0)
    color = np.array([rng.uniform(25, 60)] * 3, dtype=np.float32) + \
        np.array([0, 0, rng.uniform(0, 25)], dtype=np.float32)
    a = (ink.astype(np.float32) / 255.0) * strength
    paper = paper * (1.0 - a[..., None]) + color * a[..., None]
    # a coffee ring or a pen stroke now and then
    if rng.random() < 0.3:
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        axes = (int(rng.integers(30, 80)), int(rng.integers(30, 80)))
        stain = np.zeros((h, w), dtype=np.float32)
        cv2.ellipse(stain, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1.0,
                    int(rng.integers(3, 9)), cv2.LINE_AA)
        stain = cv2.GaussianBlur(stain, (0, 0), 2.0) * np.float32(rng.uniform(0.2, 0.4))
        paper = paper * (1.0 - stain[..., None]) + \
            np.array([120, 85, 50], dtype=np.float32) * stain[..., None]
    if rng.random() < 0.3:
        pts = np.cumsum(rng.normal(0, 6, size=(12, 2)), axis=0) + \
            np.array([rng.integers(0, w), rng.integers(0, h)])
        pen = np.zeros((h, w), dtype=np.float32)
        cv2.polylines(pen, [pts.astype(np.int32)], False, 1.0, 2, cv2.LINE_AA)
        paper = paper * (1.0 - pen[..., None]) + \
            np.array([40, 50, 150], dtype=np.float32) * pen[..., None]
    return paper


def _homography(rng: np.random.Generator, w: int, h: int) -> Tuple[np.ndarray, int, int]:
    """Paper-to-photo homography (rotation, perspective, margins) and the photo size."""
    angle = np.deg2rad(rng.uniform(-3.5, 3.5))
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    centre = src.mean(axis=0)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = (src - centre) @ rot.T + centre
    # perspective: each corner moves by up to ~2.5% of the paper's size
    dst += rng.uniform(-1, 1, size=(4, 2)) * np.array([w, h]) * 0.025
    # the top edge narrower or wider than the bottom one (a phone held at an angle)
    squeeze = rng.uniform(-0.03, 0.03) * w
    dst[0, 0] += squeeze
    dst[1, 0] -= squeeze
    # the receipt fills 65-90% of the photo's height
    fill = rng.uniform(0.65, 0.9)
    span = dst.max(axis=0) - dst.min(axis=0)
    out_h = int(np.ceil(span[1] / fill))
    out_w = int(np.ceil(max(span[0] * rng.uniform(1.15, 1.5), out_h * rng.uniform(0.6, 0.8))))
    dst -= dst.min(axis=0)
    dst += np.array([rng.uniform(0.2, 0.8) * (out_w - span[0]),
                     rng.uniform(0.2, 0.8) * (out_h - span[1])])
    # a phone photo of a receipt, as the competition's: longest side 1100-1400 pixels
    shrink = min(1.0, rng.uniform(1100, 1400) / max(out_w, out_h))
    dst *= shrink
    out_w, out_h = int(np.ceil(out_w * shrink)), int(np.ceil(out_h * shrink))
    hmat = cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))
    return hmat, out_w, out_h


def render_receipt(seed: int = 0, index: int = 0) -> Receipt:
    """Render one synthetic receipt photo with line-level ground truth.

    Parameters
    ----------
    seed : int
        Seed of the set.
    index : int
        Index of the receipt in the set; ``(seed, index)`` decides everything.

    Returns
    -------
    Receipt
        The RGB image and one quadrilateral per text line (every text run drawn in one
        piece: a header line, an item name, a quantity, a price...).
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 0x5EC1]))
    lay = _compose(rng)
    paper = _draw_paper(rng, lay)
    ph, pw = paper.shape[:2]
    hmat, out_w, out_h = _homography(rng, pw, ph)

    # the table under the receipt: a dull colour with a smooth variation
    table = np.array([rng.uniform(60, 170), rng.uniform(55, 150), rng.uniform(45, 130)],
                     dtype=np.float32)
    photo = np.empty((out_h, out_w, 3), dtype=np.float32)
    photo[:] = table
    photo += _smooth_field(rng, out_h, out_w, 5)[..., None] * np.float32(rng.uniform(8, 20))
    # the paper replaces the table where it lies (pixels mapped from outside it are kept)
    cv2.warpPerspective(paper, hmat, (out_w, out_h), dst=photo, flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_TRANSPARENT)

    # light falling off across the photo, then camera blur and sensor noise
    direction = rng.uniform(0, 2 * np.pi)
    gx = np.float32(np.cos(direction)) * np.arange(out_w, dtype=np.float32) / np.float32(out_w)
    gy = np.float32(np.sin(direction)) * np.arange(out_h, dtype=np.float32) / np.float32(out_h)
    ramp = gy[:, None] + gx[None, :]
    lo, hi = float(gy.min() + gx.min()), float(gy.max() + gx.max())
    ramp = (ramp - np.float32(lo)) / np.float32(max(hi - lo, 1e-6))
    photo *= (np.float32(1.0) - np.float32(rng.uniform(0.05, 0.18)) * ramp)[..., None]
    sigma = float(rng.uniform(0.5, 1.3))
    photo = cv2.GaussianBlur(photo, (0, 0), sigmaX=sigma, sigmaY=sigma)
    noise = rng.standard_normal(size=photo.shape, dtype=np.float32)
    noise *= np.float32(rng.uniform(2.0, 6.0))
    photo += noise
    image = np.clip(np.rint(photo), 0, 255).astype(np.uint8)

    polygons, texts = [], []
    for seg in lay.segments:
        x0, y0, x1, y1 = _ink_box(seg)
        quad = np.array([[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]], dtype=np.float64)
        out = cv2.perspectiveTransform(quad, hmat)[0]
        out[:, 0] = np.clip(out[:, 0], 0.0, out_w - 1.0)
        out[:, 1] = np.clip(out[:, 1], 0.0, out_h - 1.0)
        polygons.append(np.round(out, 1))
        texts.append(seg.text.strip())
    return Receipt(image, polygons, texts)


def receipt_name(index: int) -> str:
    """File name of receipt ``index`` in a demo data set."""
    return f"receipt_{int(index):03d}.jpg"


def render_receipts(n: int, seed: int = 0) -> Iterator[Tuple[str, Receipt]]:
    """``(file name, receipt)`` for receipts ``0 .. n-1`` of the set ``seed``."""
    if n < 1:
        raise ValueError(f"the number of receipts must be >= 1, got {n}")
    for i in range(n):
        yield receipt_name(i), render_receipt(seed, i)


def write_demo_dataset(folder: PathLike, n: int, seed: int = 0, quality: int = 92,
                       progress=None) -> Tuple[Path, Path]:
    """Render ``n`` receipts into ``folder/images/*.jpg`` and their ground truth ``folder/gt.json``.

    Parameters
    ----------
    folder : path
        Created if needed.
    n : int
        Number of receipts.
    seed : int
        Seed of the set.
    quality : int
        JPEG quality of the written photos.
    progress : callable, optional
        Called with 1 after each image.

    Returns
    -------
    (Path, Path)
        The image folder and the UFO JSON ground-truth file.
    """
    from .io import write_ufo
    from PIL import Image

    folder = Path(folder)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    gt = Dataset()
    for name, rec in render_receipts(n, seed):
        Image.fromarray(rec.image).save(images / name, quality=int(quality))
        gt[name] = rec.words()
        if progress is not None:
            progress(1)
    gt_path = folder / "gt.json"
    write_ufo(gt, gt_path)
    return images, gt_path


# --------------------------------------------------------------------------------------------
# The unclip ratio comparison
# --------------------------------------------------------------------------------------------

def ratio_comparison(store, params, ratios: Sequence[float] = DEMO_RATIOS,
                     metric: str = "cleval", jobs: int = 1,
                     images: Optional[Sequence[str]] = None) -> List[Tuple[float, object]]:
    """Scores of ``params`` with each polygon unclip ratio in turn (other fields unchanged).

    Parameters
    ----------
    store : MapStore
        Maps with ground truth (a :class:`~unclip_tuner.cache.store.MapCache`).
    params : PostProcessParams
        Usually the best parameters of a search; ``use_polygon`` is set to true.
    ratios : sequence of float
    metric : str
    jobs : int
        Threads over images.
    images : sequence of str, optional
        Restrict to these images.

    Returns
    -------
    list of (float, DatasetScore)
    """
    from .postprocess.engine import FastEngine

    out = []
    with FastEngine(store, metric=metric, jobs=jobs) as engine:
        for r in ratios:
            p = params.replace(use_polygon=True, polygon_unclip_ratio=float(r))
            out.append((float(r), engine.evaluate(p, images=images)))
    return out


# --------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------

#: Written into the work folder; a folder holding it with other settings is not reused.
STAMP_FILE = "demo.json"
_STAMP_FORMAT = "unclip-tuner demo"


@dataclass
class DemoResult:
    """What :func:`run_demo` produced.

    Attributes
    ----------
    work_dir : Path
        The folder holding ``images/``, ``gt.json``, ``cache/`` and the report.
    cache_dir, report_dir : Path
        The map cache and the ``tune-post`` report folder (``report.md``, ``best.yaml``,
        ``summary.json``, ``trials.csv``...).
    summary : dict
        ``tune-post``'s ``summary.json``.
    ratios : list of (float, DatasetScore)
        :func:`ratio_comparison` at the best thresholds over :data:`DEMO_RATIOS` and the
        tuned ratio, in increasing order.
    n_images : int
    seconds : dict
        Wall time of each stage: ``render``, ``detect``, ``tune``, ``compare``.
    report : str
        The ``tune-post`` report text.
    """

    work_dir: Path
    cache_dir: Path
    report_dir: Path
    summary: dict
    ratios: List[Tuple[float, object]]
    n_images: int
    seconds: dict
    report: str


def _run_command(argv: List[str]) -> str:
    """Run an ``unclip-tuner`` command in this process; returns what it printed on stdout.

    Errors propagate (``CLIError`` and ``ValueError`` carry one-line messages).
    """
    import contextlib
    import io as _io

    from .cli import build_parser

    args = build_parser().parse_args(argv)
    buf = _io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = int(args.func(args) or 0)
    if rc:
        raise ValueError(f"{argv[0]} stopped with status {rc}")
    return buf.getvalue()


def _check_work_dir(work_dir: Path, stamp: dict) -> bool:
    """Whether ``work_dir`` already holds this demo's data set (so it is reused).

    ``gt.json`` is written (atomically) after every image, so its presence means the
    rendering finished.

    Raises
    ------
    ValueError
        When the folder holds other files, or a demo made with other settings.
    """
    import json

    if not work_dir.exists():
        return False
    if not work_dir.is_dir():
        raise ValueError(f"{work_dir}: exists and is not a folder")
    entries = [p.name for p in work_dir.iterdir()]
    if not entries:
        return False
    spath = work_dir / STAMP_FILE
    if not spath.is_file():
        raise ValueError(f"{work_dir}: not empty and not a demo folder; choose another --out")
    try:
        old = json.loads(spath.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ValueError(f"{spath}: unreadable; delete {work_dir} or choose another --out") \
            from None
    keys = ("format", "images", "seed")
    if not isinstance(old, dict) or any(old.get(k) != stamp[k] for k in keys):
        was = ", ".join(f"{k} {old.get(k)}" for k in keys[1:]) if isinstance(old, dict) else "?"
        raise ValueError(f"{work_dir} holds a demo made with other settings ({was}); "
                         f"delete it or choose another --out")
    images = work_dir / "images"
    return (work_dir / "gt.json").is_file() and all(
        (images / receipt_name(i)).is_file() for i in range(stamp["images"]))


class _DemoRunner:
    """The detector in :func:`~unclip_tuner.models.inference.run_cache_maps`'s loop.

    onnxruntime's sigmoid can round a saturated pixel to one ulp above 1.0 (1.0000001); the
    cache refuses values outside ``[0, 1]``, so overshoots below ``1 + 1e-6`` are clipped to
    1.0 (anything larger is left for the cache to report).
    """

    def __init__(self, runner) -> None:
        self._runner = runner
        self.fixed_shape = runner.fixed_shape

    def prepare(self, path):
        return self._runner.prepare(path)

    def start(self, batch):
        return self._runner.start(batch)

    def finish(self, handle):
        maps = self._runner.finish(handle)
        top = float(maps.max()) if maps.size else 0.0
        if 1.0 < top <= 1.0 + 1e-6:
            maps = np.minimum(maps, np.float32(1.0))
        return maps

    def describe(self):
        return self._runner.describe()


def build_demo_cache(images_dir: PathLike, gt_path: PathLike, cache_dir: PathLike,
                     model: Optional[PathLike] = None, progress=None):
    """Cache the PP-OCRv4 maps of the demo images (``cache-maps --onnx`` on the CPU).

    A cache made earlier from the same images and model is resumed: only missing maps are
    computed.

    Parameters
    ----------
    images_dir : path
        The rendered images.
    gt_path : path
        Their ground truth (UFO JSON); stored in the cache.
    cache_dir : path
        The cache folder.
    model : path, optional
        The ``.onnx`` detector (default: :func:`check_detector`).
    progress : callable, optional
        Called with the number of images finished after each batch.

    Returns
    -------
    CacheRunStats
    """
    from .cache.store import MapCache
    from .io import read_dataset
    from .models.checkpoint import file_sha256
    from .models.inference import OnnxRunner, plan_images, run_cache_maps
    from .models.onnx_detector import OnnxDetector
    from .models.preprocess import PROFILES

    model = Path(model) if model is not None else check_detector()
    plan = plan_images(images_dir, read_dataset(gt_path))
    if plan.gt_without_image:
        raise ValueError(f"{len(plan.gt_without_image)} demo image(s) are missing from "
                         f"{images_dir}, e.g. {plan.gt_without_image[0]!r}")
    try:
        onnx = OnnxDetector(model, profile=DEMO_PROFILE)
    except ImportError as exc:
        raise DemoUnavailable(str(exc)) from None
    norm = PROFILES[DEMO_PROFILE][2]
    preprocessing = {"profile": DEMO_PROFILE, "input_size": onnx.input_size,
                     "normalisation": {"mean": list(norm.mean), "std": list(norm.std),
                                       "max_pixel": norm.max_pixel,
                                       "channel_order": norm.channel_order,
                                       "formula": norm.formula}}
    sha = file_sha256(model)
    runner = _DemoRunner(OnnxRunner(onnx))
    parts = {"model_sha256": sha, "config": {"kind": "onnx", "sigmoid": False, "tta": None},
             "preprocessing": preprocessing, "dtype": "float32"}
    meta = {"params": None, "target": None,
            "model": {"kind": "onnx", "onnx": str(model.resolve()), "onnx_sha256": sha,
                      "config": None, "assumed": [], **runner.describe()},
            "preprocessing": preprocessing, "images": str(images_dir)}
    with MapCache.create(cache_dir, parts, meta=meta, gt=plan.gt) as writer:
        stats = run_cache_maps(runner, plan.items, writer, batch_size=1,
                               workers=max(1, min(2, os.cpu_count() or 1)), strict=True,
                               progress=progress)
    return stats


def run_demo(work_dir: PathLike, n_images: int = 24, trials: int = 100, seed: int = 0,
             holdout: float = 0.0, jobs: Optional[int] = None, plots: bool = False,
             show_progress: bool = True, log=None) -> DemoResult:
    """Render receipts, cache PP-OCRv4 maps of them, tune, and compare unclip ratios.

    Parameters
    ----------
    work_dir : path
        Folder for the images, the ground truth, the cache and the report: empty, new, or
        a previous demo folder with the same ``n_images`` and ``seed`` (which is resumed:
        nothing is rendered or detected twice, and the study continues up to ``trials``).
    n_images : int
        Receipts to render.
    trials : int
        Complete trials of the study, the first (the seed's parameters) included.
    seed : int
        Seed of the receipts, of the sampler and of the holdout split.
    holdout : float
        Share of images kept out of the search (``tune-post --holdout``).
    jobs : int, optional
        Threads over images during the search (default: ``tune-post``'s).
    plots : bool
        Write the report's PNG plots.
    show_progress : bool
        Progress bars (on a terminal).
    log : callable, optional
        Called with each progress line (default: print to stderr).

    Returns
    -------
    DemoResult

    Raises
    ------
    DemoUnavailable
        When onnxruntime or the PP-OCRv4 model is missing (checked before anything is done).
    ValueError
        For bad arguments, an unusable work folder, or a failing stage (one line).
    """
    import json
    import sys
    import time

    from . import __version__

    if log is None:
        def log(text: str) -> None:
            print(text, file=sys.stderr, flush=True)

    if n_images < 1:
        raise ValueError(f"--images must be >= 1, got {n_images}")
    if trials < 1:
        raise ValueError(f"--trials must be >= 1, got {trials}")
    if holdout and n_images < 2:
        raise ValueError("--holdout needs at least 2 images")
    model = check_detector()

    work_dir = Path(work_dir)
    stamp = {"format": _STAMP_FORMAT, "images": int(n_images), "seed": int(seed),
             "tool_version": __version__}
    reuse = _check_work_dir(work_dir, stamp)
    work_dir.mkdir(parents=True, exist_ok=True)
    seconds = {}
    bar_on = show_progress and sys.stderr.isatty()

    # 1. receipts
    t0 = time.perf_counter()
    images_dir, gt_path = work_dir / "images", work_dir / "gt.json"
    if reuse:
        log(f"[1/4] {n_images} synthetic receipts already in {images_dir}")
    else:
        log(f"[1/4] rendering {n_images} synthetic receipts -> {images_dir}")
        # the stamp first: an interrupted folder is recognised (and rendered again) next time
        (work_dir / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
        bar = None
        if bar_on:
            from tqdm import tqdm

            bar = tqdm(total=n_images, desc="render", unit="img", leave=False, file=sys.stderr)
        try:
            write_demo_dataset(work_dir, n_images, seed,
                               progress=bar.update if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()
    seconds["render"] = time.perf_counter() - t0

    # 2. probability maps
    t0 = time.perf_counter()
    cache_dir = work_dir / "cache"
    log(f"[2/4] PP-OCRv4 maps of {n_images} images ({model.name}, profile {DEMO_PROFILE}, "
        f"CPU) -> {cache_dir}")
    bar = None
    if bar_on:
        from tqdm import tqdm

        bar = tqdm(total=n_images, desc="detector", unit="img", leave=False, file=sys.stderr)
    try:
        stats = build_demo_cache(images_dir, gt_path, cache_dir, model,
                                 progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    rate = f", {stats.seconds / stats.cached:.2f} s per image" if stats.cached else ""
    log(f"      {stats.cached} map(s) computed, {stats.already} already cached "
        f"({stats.seconds:.1f} s{rate})")
    seconds["detect"] = time.perf_counter() - t0

    # 3. the search
    t0 = time.perf_counter()
    report_dir = work_dir / "report"
    log(f"[3/4] tune-post: {trials} trials, cleval, polygon mode"
        + (f", {holdout:g} held out" if holdout else ""))
    argv = ["tune-post", "--cache", str(cache_dir), "--trials", str(trials), "--metric", "cleval",
            "--mode", "polygon", "--holdout", repr(float(holdout)), "--seed", str(seed),
            "--out", str(report_dir)]
    if jobs is not None:
        argv += ["--jobs", str(jobs)]
    if not plots:
        argv.append("--no-plots")
    if not show_progress:
        argv.append("--no-progress")
    report = _run_command(argv)
    try:
        summary = json.loads((report_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"tune-post wrote no readable summary in {report_dir} ({exc})") from None
    seconds["tune"] = time.perf_counter() - t0

    # 4. unclip ratios at the best thresholds
    t0 = time.perf_counter()
    from .cache.store import MapCache
    from .postprocess.params import PostProcessParams

    best = PostProcessParams.from_dict(summary["best"]["params"])
    ratios = sorted(set(DEMO_RATIOS) | {best.polygon_unclip_ratio})
    log(f"[4/4] H-Mean at polygon unclip ratios {', '.join(f'{r:g}' for r in ratios)}")
    cache = MapCache.open(cache_dir)
    if jobs is None:
        jobs = max(1, min(8, os.cpu_count() or 1))
    rows = ratio_comparison(cache, best, ratios, metric="cleval", jobs=jobs)
    seconds["compare"] = time.perf_counter() - t0
    return DemoResult(work_dir, cache_dir, report_dir, summary, rows, n_images, seconds, report)
