"""The ``iou`` profile: ICDAR 2015 IoU protocol as the DB authors' evaluator computes it.

Expected values come from that evaluator (``tests/data/iou/synthetic_vectors.json``, made
by running it on our synthetic images) and from the cross-check figure of the 100-image
CLEval pair in ``../shared/data/README.md``.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from unclip_tuner.io import ImageWords, read_dataset
from unclip_tuner.metrics import iou
from unclip_tuner.metrics.base import aggregate

VECTORS = Path(__file__).parent / "data" / "iou" / "synthetic_vectors.json"
COUNTS = ("matched", "gt_care", "det_care", "gt_dont_care", "det_dont_care")


def _load_vectors():
    data = json.loads(VECTORS.read_text())
    cases = []
    for img in data["images"]:
        gt = ImageWords([np.array(p, dtype=float) for p in img["gt"]],
                        np.array(img["dont_care"], dtype=bool))
        det = ImageWords([np.array(p, dtype=float) for p in img["det"]])
        cases.append((img["name"], gt, det, img["oracle"]))
    return data, cases


@pytest.mark.parametrize("engine", [iou.evaluate_image, iou.evaluate_image_reference],
                         ids=["fast", "reference"])
def test_synthetic_vectors_match_db_evaluator(engine):
    data, cases = _load_vectors()
    scores = []
    for name, gt, det, want in cases:
        s = engine(gt, det)
        for key in COUNTS:
            assert s.extra[key] == want[key], (name, key)
        assert s.recall == want["recall"], name
        assert s.precision == want["precision"], name
        assert s.hmean == want["hmean"], name
        scores.append(s)
    total = aggregate("iou", [c[0] for c in cases], scores, official=iou.OFFICIAL)
    assert total.precision == data["global"]["precision"]
    assert total.recall == data["global"]["recall"]
    assert total.hmean == data["global"]["hmean"]


def test_boundary_rules():
    sq = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    half = np.array([[0, 0], [10, 0], [10, 5], [0, 5]], float)
    six = np.array([[0, 0], [10, 0], [10, 6], [0, 6]], float)
    # IoU exactly 0.5 is not a match; 0.6 is
    assert iou.evaluate_image(ImageWords([sq]), ImageWords([half])).extra["matched"] == 0
    assert iou.evaluate_image(ImageWords([sq]), ImageWords([six])).extra["matched"] == 1
    # a bow-tie is dropped from both sides
    bow = sq[[0, 2, 1, 3]]
    s = iou.evaluate_image(ImageWords([sq, bow]), ImageWords([bow, sq]))
    assert (s.extra["gt_invalid"], s.extra["det_invalid"], s.extra["matched"]) == (1, 1, 1)
    # fewer than three points: dropped, not an error
    s = iou.evaluate_image(ImageWords([sq]), ImageWords([sq[:2], sq]))
    assert s.extra["det_invalid"] == 1 and s.precision == 1.0
    # no care GT: recall 1, precision 1 without care detections, else 0
    dc = ImageWords([sq], np.array([True]))
    empty = iou.evaluate_image(dc, ImageWords([]))
    assert (empty.precision, empty.recall) == (1.0, 1.0)
    assert iou.evaluate_image(dc, ImageWords([sq + 100])).precision == 0.0
    with pytest.raises(ValueError, match="ImageWords"):
        iou.evaluate_image([sq], ImageWords([]))


def _random_words(rng, n, dc_rate):
    polys = []
    for _ in range(n):
        k = rng.choice([3, 4, 4, 4, 6, 8])
        cx, cy = rng.uniform(0, 200, 2)
        r = rng.uniform(3, 30)
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = r * rng.uniform(0.4, 1.0, k)
        p = np.stack([cx + rad * np.cos(ang), cy + 0.5 * rad * np.sin(ang)], axis=1)
        if rng.random() < 0.5:
            p = np.round(p)
        polys.append(p)
    return ImageWords(polys, rng.random(n) < dc_rate)


def test_fast_equals_reference_randomized():
    rng = np.random.default_rng(7)
    for _ in range(40):
        gt = _random_words(rng, int(rng.integers(0, 12)), 0.2)
        det = ImageWords([p + rng.normal(0, 2, p.shape) for p in gt.polygons]
                         + list(_random_words(rng, int(rng.integers(0, 5)), 0).polygons))
        a = iou.evaluate_image(gt, det)
        b = iou.evaluate_image_reference(gt, det)
        assert a.extra == b.extra
        assert (a.recall, a.precision, a.hmean) == (b.recall, b.precision, b.hmean)


def test_clip_area_matches_shapely():
    import shapely

    rng = np.random.default_rng(11)
    for _ in range(200):
        a = _random_words(rng, 1, 0).polygons[0]
        b = a + rng.normal(0, 5, a.shape)
        ga, gb = shapely.Polygon(a), shapely.Polygon(b)
        if not (ga.is_valid and gb.is_valid):
            continue
        want = ga.intersection(gb).area
        if iou._is_convex(a):
            assert iou._clip_area(b, a) == pytest.approx(want, rel=1e-9, abs=1e-9)
        if iou._is_convex(b):
            assert iou._clip_area(a, b) == pytest.approx(want, rel=1e-9, abs=1e-9)


@pytest.mark.shared_data
def test_published_cross_check_100_images(shared_data):
    gt = read_dataset(shared_data / "cleval" / "gt_eval_doc_v1_kr.zip")
    res = read_dataset(shared_data / "cleval" / "res_eval_doc_v1_kr.zip")
    names = list(gt)
    scores = [iou.evaluate_image(gt[n], res[n]) for n in names]
    total = aggregate("iou", names, scores, official=iou.OFFICIAL)
    assert total.precision == 0.9288396916386638
    assert total.recall == 0.8984703632887189
    assert total.hmean == 0.9134026630381961
    # the plain reference gives the same counts on a few real pages
    for n in names[:2]:
        assert iou.evaluate_image_reference(gt[n], res[n]).extra == scores[names.index(n)].extra
