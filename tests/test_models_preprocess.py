"""Tests of unclip_tuner.models.preprocess.

Two kinds of checks:

- parity with the baseline's own pipeline (``OCRDataset`` + ``DBTransforms`` with albumentations
  1.3.1, Pillow 10.1.0, OpenCV 4.8.1), through vectors it produced
  (``tests/data/real/seed_preprocess_parity.npz``): bitwise equality of the network input;
- agreement with independent, straightforward implementations written here (numpy flips and
  rotations for EXIF, explicit channel arithmetic for image modes, float64 normalisation).
"""

from __future__ import annotations

import json
import math
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from unclip_tuner.models import preprocess as pp

DATA = Path(__file__).resolve().parent / "data" / "real"
PARITY = DATA / "seed_preprocess_parity.npz"

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


# ------------------------------------------------------------------------------------------
# Independent simple implementations
# ------------------------------------------------------------------------------------------

def half_even(x: float) -> int:
    return int(Decimal(repr(x)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def simple_seed(rgb: np.ndarray, target: int, mean, std, bgr: bool):
    """LongestMaxSize + centred zero pad + float64 normalisation, spelled out."""
    h, w = rgb.shape[:2]
    s = target / max(w, h)
    if s != 1.0:
        nw, nh = half_even(w * s), half_even(h * s)
        rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    else:
        nw, nh = w, h
    top, left = (target - nh) // 2, (target - nw) // 2
    padded = np.pad(rgb, ((top, target - nh - top), (left, target - nw - left), (0, 0)))
    if bgr:
        padded = padded[:, :, ::-1]
    x = (padded.astype(np.float64) / 255.0 - np.asarray(mean)) / np.asarray(std)
    fw, fh = math.floor(w * s), math.floor(h * s)
    x0, y0 = (target - fw) // 2, (target - fh) // 2
    inverse = np.array([[w / fw, 0, -x0 * w / fw], [0, h / fh, -y0 * h / fh], [0, 0, 1.0]])
    return x.transpose(2, 0, 1), inverse


def exif_reference(a: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF 2.3 orientation semantics on an (H, W, C) array."""
    return {
        1: a,
        2: a[:, ::-1],
        3: a[::-1, ::-1],
        4: a[::-1],
        5: a.transpose(1, 0, 2),
        6: np.rot90(a, k=-1),
        7: a[::-1, ::-1].transpose(1, 0, 2),
        8: np.rot90(a, k=1),
    }[orientation]


def random_image(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255.0 / max(w - 1, 1), yy * 255.0 / max(h - 1, 1), (xx + yy) % 256], -1)
    return np.clip(base + rng.integers(-40, 41, size=(h, w, 3)), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------
# Parity with the baseline pipeline
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def parity():
    if not PARITY.is_file():
        pytest.skip("parity vectors missing")
    d = np.load(PARITY)
    return d, json.loads(bytes(d["meta_json"]).decode())


def test_seed_parity_images_bitwise(parity, tmp_path, recwarn):
    d, meta = parity
    assert len(meta) >= 30
    for i, m in enumerate(meta):
        f = tmp_path / m["filename"]
        f.write_bytes(d[f"case{i}_bytes"].tobytes())
        rgb = pp.load_image(f)
        out = pp.preprocess(rgb, "seed", m["target"])
        expected = d[f"case{i}_image"]
        assert out.image.dtype == np.float32
        assert out.image.shape == expected.shape, m["name"]
        assert np.array_equal(out.image, expected), m["name"]
        assert np.array_equal(out.inverse_matrix, d[f"case{i}_inverse"]), m["name"]
        assert out.original_size == tuple(int(v) for v in d[f"case{i}_size"]), m["name"]


def test_seed_parity_size_table(parity):
    table = parity[0]["size_table"]
    assert len(table) > 800
    failures = 0
    for index, row in enumerate(table):
        w, h, target = (int(v) for v in row[:3])
        if row[3] < 0:  # the baseline fails on this size (a zero side in its inverse matrix)
            failures += 1
            with pytest.raises(ValueError, match="zero side"):
                pp.preprocess_seed(np.zeros((h, w, 3), np.uint8), target)
            continue
        nw, nh = pp.seed_resized_size(w, h, target)
        assert (nw, nh) == (int(row[3]), int(row[4])), (w, h, target)
        assert np.array_equal(pp.seed_inverse_matrix(w, h, target).ravel(), row[7:]), (w, h, target)
        if index % 10 == 0 or max(w, h) <= 64:  # the full resize + pad on a sample of the rows
            padded = pp.seed_resize_and_pad(np.full((h, w, 3), 255, np.uint8), target)
            ys, xs = np.nonzero(padded[:, :, 0])
            assert (int(xs.min()), int(ys.min())) == (int(row[5]), int(row[6])), (w, h, target)
            assert (int(xs.max()) + 1 - int(row[5]), int(ys.max()) + 1 - int(row[6])) == (nw, nh)
    assert failures > 0


# ------------------------------------------------------------------------------------------
# Loading: modes and EXIF
# ------------------------------------------------------------------------------------------

def test_modes_match_simple_conversion(tmp_path):
    rng = np.random.default_rng(1)
    rgb = random_image(rng, 13, 17)
    gray = rgb[:, :, 0]
    cases = {
        "gray.png": (Image.fromarray(gray), np.repeat(gray[:, :, None], 3, axis=2)),
        "rgba.png": (Image.fromarray(np.dstack([rgb, rgb[:, :, 2]])), rgb),
        "la.png": (Image.fromarray(np.dstack([gray, rgb[:, :, 1]])).convert("LA"),
                   np.repeat(gray[:, :, None], 3, axis=2)),
        # K = 0 so that every Pillow version's CMYK -> RGB rule gives 255 - C, 255 - M, 255 - Y
        "cmyk.tif": (Image.frombytes("CMYK", (17, 13), np.dstack([rgb, np.zeros_like(gray)]).tobytes()),
                     255 - rgb),
        "rgb.png": (Image.fromarray(rgb), rgb),
    }
    for name, (img, expected) in cases.items():
        img.save(tmp_path / name)
        got = pp.load_image(tmp_path / name)
        assert got.dtype == np.uint8 and got.shape == expected.shape, name
        assert np.array_equal(got, expected), name


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_exif_orientation_matches_spec(tmp_path, orientation, fmt):
    rng = np.random.default_rng(orientation)
    rgb = random_image(rng, 9, 14)
    exif = Image.Exif()
    exif[pp.EXIF_ORIENTATION_TAG] = orientation
    path = tmp_path / f"o{orientation}.{fmt.lower()}"
    Image.fromarray(rgb).save(path, fmt, exif=exif, **({"lossless": True} if fmt == "WEBP" else {}))
    got = pp.load_image(path)
    assert np.array_equal(got, exif_reference(rgb, orientation))
    # and the whole seed profile gives what the simple implementation gives on the rotated image
    out = pp.preprocess(got, "seed", 32)
    assert out.original_size == (got.shape[1], got.shape[0])


def test_exif_rotated_image_equals_pre_rotated_image(tmp_path):
    rng = np.random.default_rng(7)
    rgb = random_image(rng, 30, 47)
    exif = Image.Exif()
    exif[pp.EXIF_ORIENTATION_TAG] = 6
    Image.fromarray(rgb).save(tmp_path / "tagged.png", exif=exif)
    Image.fromarray(np.ascontiguousarray(np.rot90(rgb, k=-1))).save(tmp_path / "plain.png")
    a = pp.preprocess(pp.load_image(tmp_path / "tagged.png"), "seed", 64)
    b = pp.preprocess(pp.load_image(tmp_path / "plain.png"), "seed", 64)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.inverse_matrix, b.inverse_matrix)
    assert a.original_size == b.original_size == (30, 47)


def test_sixteen_bit_warns_and_follows_pillow(tmp_path):
    g16 = (np.arange(6 * 5, dtype=np.uint16).reshape(6, 5) * 2000)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    with pytest.warns(UserWarning, match="8 bits"):
        got = pp.load_image(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        expected = np.asarray(im.convert("RGB"))
    assert np.array_equal(got, expected)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="image not found"):
        pp.load_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot decode"):
        pp.load_image(tmp_path / "bad.png")


# ------------------------------------------------------------------------------------------
# Geometry and normalisation against the simple implementation
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile,bgr,mean,std", [
    ("seed", False, IMAGENET_MEAN, IMAGENET_STD),
    ("seed-ppocr", True, [0.5] * 3, [0.5] * 3),
])
def test_seed_profiles_random(profile, bgr, mean, std):
    rng = np.random.default_rng(11)
    for _ in range(25):
        target = int(rng.choice([32, 64, 96, 160]))
        h, w = (int(v) for v in rng.integers(8, 300, size=2))
        rgb = random_image(rng, h, w)
        try:
            expected_image, expected_inverse = simple_seed(rgb, target, mean, std, bgr)
        except ZeroDivisionError:
            with pytest.raises(ValueError):
                pp.preprocess(rgb, profile, target)
            continue
        out = pp.preprocess(rgb, profile, target)
        assert out.image.dtype == np.float32 and out.image.shape == (3, target, target)
        np.testing.assert_allclose(out.image, expected_image, rtol=0, atol=2e-6)
        np.testing.assert_allclose(out.inverse_matrix, expected_inverse, rtol=1e-12, atol=1e-9)
        assert out.original_size == (w, h)


def test_seed_inverse_matrix_floor_quirk():
    # 800 x 1700 at 1024: the resize gives width round(481.88) = 482, the matrix uses int() = 481
    w, h, target = 800, 1700, 1024
    assert pp.seed_resized_size(w, h, target)[0] == half_even(w * target / h)
    m = pp.seed_inverse_matrix(w, h, target)
    fw = math.floor(w * target / h)
    assert fw != half_even(w * target / h)
    assert m[0, 0] == w / fw and m[0, 2] == -((target - fw) // 2) * (w / fw)


def test_scale_one_skips_resize():
    rng = np.random.default_rng(3)
    rgb = random_image(rng, 20, 32)
    padded = pp.seed_resize_and_pad(rgb, 32)
    assert np.array_equal(padded[6:26], rgb)
    assert not padded[:6].any() and not padded[26:].any()


def simple_multiple_of_32(side: int, at_least_32: bool) -> int:
    v = half_even(side / 32) * 32
    return max(v, 32) if at_least_32 else v


@pytest.mark.parametrize("profile", ["ppocr", "rapidocr"])
def test_paddle_style_profiles_random(profile):
    rng = np.random.default_rng(5)
    limit = {"ppocr": 96, "rapidocr": 64}[profile]
    sizes = [(80, 20), (48, 200), (16, 16), (150, 90), (33, 97)]
    sizes += [tuple(int(v) for v in rng.integers(10, 260, size=2)) for _ in range(15)]
    for h, w in sizes:
        rgb = random_image(rng, h, w)
        if profile == "ppocr":
            ratio = limit / (h if h > w else w) if max(h, w) > limit else 1.0
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        else:
            ratio = limit / (h if h < w else w) if min(h, w) < limit else 1.0
            mean, std = [0.5] * 3, [0.5] * 3
        nh = simple_multiple_of_32(int(h * ratio), profile == "ppocr")
        nw = simple_multiple_of_32(int(w * ratio), profile == "ppocr")
        out = pp.preprocess(rgb, profile, limit)
        bgr = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
        expected = ((bgr.astype(np.float64) / 255.0 - mean) / std).transpose(2, 0, 1)
        assert out.image.shape == (3, nh, nw), (h, w)
        np.testing.assert_allclose(out.image, expected, rtol=0, atol=2e-6)
        np.testing.assert_array_equal(out.inverse_matrix, np.diag([w / nw, h / nh, 1.0]))
        assert out.original_size == (w, h)


def test_default_sizes_and_profiles():
    rgb = np.zeros((720, 1280, 3), np.uint8)
    assert pp.preprocess(rgb, "seed").image.shape == (3, 1024, 1024)
    assert pp.preprocess(rgb, "ppocr").image.shape == (3, half_even(540 / 32) * 32, 960)
    assert pp.preprocess(rgb, "rapidocr").image.shape[1] == 736
    assert set(pp.PROFILES) == {"seed", "seed-ppocr", "ppocr", "rapidocr"}


def test_normalisation_formulas_agree_with_float64():
    rng = np.random.default_rng(9)
    img = rng.integers(0, 256, size=(7, 9, 3)).astype(np.uint8)
    for formula in ("albumentations", "paddle", "rapidocr"):
        norm = pp.Normalisation((0.2, 0.5, 0.7), (0.1, 0.3, 0.9), 255.0, "RGB", formula)
        got = pp.normalise(img, norm)
        expected = (img / 255.0 - np.array(norm.mean)) / np.array(norm.std)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=0, atol=5e-6)


def test_custom_normalisation_override():
    rgb = np.full((10, 10, 3), [10, 20, 30], np.uint8)
    norm = pp.Normalisation((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 255.0, "BGR", "albumentations")
    out = pp.preprocess(rgb, "seed", 10, normalisation=norm)
    np.testing.assert_allclose(out.image[:, 0, 0], np.array([30, 20, 10]) / 255.0, rtol=1e-6)


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown preprocessing profile"):
        pp.preprocess(np.zeros((4, 4, 3), np.uint8), "nope")
    with pytest.raises(ValueError, match="uint8 RGB"):
        pp.preprocess(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        pp.preprocess(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="empty image"):
        pp.preprocess(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="input_size"):
        pp.preprocess(np.zeros((4, 4, 3), np.uint8), "seed", 0)
    with pytest.raises(ValueError, match="a side becomes 0"):
        pp.seed_resized_size(1, 5000, 1024)
    with pytest.raises(ValueError, match="empty network input"):
        pp.preprocess(np.zeros((2, 10, 3), np.uint8), "rapidocr", 4)
    with pytest.raises(ValueError, match="channel_order"):
        pp.Normalisation((0, 0, 0), (1, 1, 1), channel_order="RGBA")
    with pytest.raises(ValueError, match="non-zero"):
        pp.Normalisation((0, 0, 0), (1, 0, 1))
    with pytest.raises(ValueError, match="formula"):
        pp.Normalisation((0, 0, 0), (1, 1, 1), formula="torch")
