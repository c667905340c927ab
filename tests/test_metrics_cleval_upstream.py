"""The ``cleval-upstream`` profile: detection rules of the PyPI ``cleval`` 0.1.1 package.

Expected values come from the package itself: ``tests/data/cleval_upstream/
synthetic_vectors.json`` (our synthetic images scored by it, through its CLI path for
integer coordinates and through its ``evaluation`` function for float ones) and the
figures published for the 100-image and one-image CLEval pairs (``../shared/data``).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from unclip_tuner.io import ImageWords, read_dataset
from unclip_tuner.io.icdar import parse_text
from unclip_tuner.metrics import cleval_upstream as U
from unclip_tuner.metrics.base import aggregate

VECTORS = Path(__file__).parent / "data" / "cleval_upstream" / "synthetic_vectors.json"
# our ImageScore.extra key -> the package's per-sample stat
KEYS = {
    "num_char_gt": "num_char_gt", "num_char_det": "num_char_det", "tp": "num_char_tp_recall",
    "fp": "num_char_fp", "gran_score_recall": "gran_score_recall",
    "gran_score_precision": "gran_score_precision", "num_merged": "num_merged",
    "num_splitted": "num_splitted", "num_char_overlapped": "num_char_overlapped",
}
ENGINES = pytest.mark.parametrize("engine", [U.evaluate_image, U.evaluate_image_reference],
                                  ids=["fast", "reference"])


def _words(lines, where):
    return parse_text("\r\n".join(lines), where) if lines else ImageWords()


def _check_set(engine, block):
    names, scores = [], []
    for img in block["images"]:
        gt = _words(img["gt"], img["name"])
        det = _words(img["det"], img["name"])
        s = engine(gt, det)
        want = img["oracle"]
        for ours, theirs in KEYS.items():
            assert s.extra[ours] == want[theirs], (img["name"], ours)
        assert (s.recall, s.precision, s.hmean) == (want["recall"], want["precision"],
                                                    want["hmean"]), img["name"]
        names.append(img["name"])
        scores.append(s)
    total = aggregate("cleval-upstream", names, scores, official=U.OFFICIAL)
    want = block["global"]
    assert (total.recall, total.precision, total.hmean) == (want["recall"], want["precision"],
                                                            want["hmean"])
    for ours, theirs in KEYS.items():
        assert sum(s.extra[ours] for s in scores) == want[theirs], ours


@ENGINES
def test_integer_vectors_through_package_cli(engine):
    _check_set(engine, json.loads(VECTORS.read_text(encoding="utf-8"))["cli"])


@ENGINES
def test_float_vectors_through_package_api(engine):
    _check_set(engine, json.loads(VECTORS.read_text(encoding="utf-8"))["api"])


def _quad(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def test_rules_by_hand():
    # (every expected value below was confirmed by running the package on the same boxes)
    # 10 characters, centres at x = 5, 15, ..., 95; a detection over the first half holds
    # 5 of them: one-to-one, recall 5/10, precision 5/5
    gt = ImageWords([_quad(0, 0, 100, 10)], texts=["abcdefghij"])
    s = U.evaluate_image(gt, ImageWords([_quad(0, 0, 50, 10)]))
    assert (s.extra["tp"], s.extra["num_char_gt"], s.extra["num_char_det"]) == (5, 10, 5)
    # split into two: recall penalty 1
    s = U.evaluate_image(gt, ImageWords([_quad(0, 0, 50, 10), _quad(50, 0, 100, 10)]))
    assert (s.extra["tp"], s.extra["gran_score_recall"], s.extra["num_splitted"]) == (10, 1, 1)
    assert s.recall_num == 9 and s.recall == 0.9
    # quoted transcription is unwrapped; "###" marks don't-care even when quoted
    assert U.gt_transcription('"a\\"b"') == 'a"b'
    s = U.evaluate_image(ImageWords([_quad(0, 0, 30, 10)], texts=['"###"']), ImageWords([]))
    assert s.extra["num_char_gt"] == 0
    # false positives: 100x20 costs 1, 20x100 costs 5, a point 1 (ar = 1), a vertical
    # line 10 (the cap), a horizontal line 1
    fps = [U.evaluate_image(ImageWords(), ImageWords([q])).extra["fp"]
           for q in (_quad(0, 0, 100, 20), _quad(0, 0, 20, 100), _quad(5, 5, 5, 5),
                     _quad(0, 0, 0, 100), _quad(0, 0, 100, 0))]
    assert fps == [1, 5, 1, 10, 1]
    # no transcriptions: the don't-care formula gives the characters (100x10 -> 10)
    no_text = U.evaluate_image(ImageWords([_quad(0, 0, 100, 10)]), ImageWords())
    assert no_text.extra["num_char_gt"] == 10


def test_bad_input_messages():
    with pytest.raises(ValueError, match="quadrilaterals: det word 0 has 5 points"):
        U.evaluate_image(ImageWords(), ImageWords([np.zeros((5, 2))]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        U.evaluate_image(ImageWords([np.full((4, 2), np.nan)], texts=["a"]), ImageWords())
    with pytest.raises(ValueError, match="ImageWords"):
        U.evaluate_image(None, ImageWords())


def test_vectorised_centres_equal_single():
    rng = np.random.default_rng(3)
    q = rng.uniform(-50, 50, (30, 4, 2))
    n = rng.integers(0, 12, 30)
    ar = U.quad_aspect_ratio(q)
    want = np.concatenate([U.character_centres(q[i], int(n[i]), float(ar[i])) for i in range(30)])
    np.testing.assert_array_equal(U._all_centres(q, n, ar), want)


def _random_image(rng):
    """Words on a grid with jittered detections, splits, merges and don't-care regions."""
    gts, texts, dets = [], [], []
    for _ in range(int(rng.integers(0, 10))):
        x, y = rng.integers(0, 300), rng.integers(0, 300)
        w, h = rng.integers(5, 80), rng.integers(5, 30)
        gts.append(_quad(x, y, x + w, y + h))
        texts.append("###" if rng.random() < 0.15 else "x" * int(rng.integers(0, 9)))
        r = rng.random()
        if r < 0.5:
            dets.append(_quad(x, y, x + w, y + h) + rng.normal(0, 2, (4, 2)))
        elif r < 0.7:
            dets += [_quad(x, y, x + w / 2, y + h), _quad(x + w / 2, y, x + w, y + h)]
        elif r < 0.8:
            dets.append(_quad(x - 20, y, x + w + 40, y + h))
    for _ in range(int(rng.integers(0, 3))):
        x, y = rng.uniform(0, 300, 2)
        dets.append(_quad(x, y, x + rng.uniform(0, 60), y + rng.uniform(0, 60)))
    return ImageWords(gts, texts=texts, dont_care=[t == "###" for t in texts]), ImageWords(dets)


def test_fast_equals_reference_randomized():
    rng = np.random.default_rng(5)
    for _ in range(40):
        gt, det = _random_image(rng)
        a = U.evaluate_image(gt, det)
        b = U.evaluate_image_reference(gt, det)
        assert a.extra == b.extra
        assert (a.recall, a.precision, a.hmean) == (b.recall, b.precision, b.hmean)


def _published(shared_data, suffix):
    gt = read_dataset(shared_data / "cleval" / f"gt_eval_doc_v1_kr{suffix}.zip")
    res = read_dataset(shared_data / "cleval" / f"res_eval_doc_v1_kr{suffix}.zip")
    names = list(gt)
    scores = [U.evaluate_image(gt[n], res[n]) for n in names]
    return gt, res, names, scores, aggregate("cleval-upstream", names, scores,
                                             official=U.OFFICIAL)


@pytest.mark.shared_data
def test_published_figures_100_images(shared_data):
    _, _, _, scores, total = _published(shared_data, "")
    assert total.precision == 0.9707792207792207
    assert total.recall == 0.9853074043798132
    assert total.hmean == 0.977989360950786
    sums = {k: sum(s.extra[k] for s in scores) for k in KEYS}
    assert sums == {"num_char_gt": 46486, "num_char_det": 46816, "tp": 46218, "fp": 150,
                    "gran_score_recall": 415, "gran_score_precision": 770,
                    "num_merged": 470, "num_splitted": 377, "num_char_overlapped": 448}


@pytest.mark.shared_data
def test_published_figures_single_image(shared_data):
    gt, res, names, scores, total = _published(shared_data, "_single")
    assert total.precision == 0.9719745222929936
    assert total.recall == 0.9948914431673053
    assert total.hmean == 0.9832994745827764
    ref = U.evaluate_image_reference(gt[names[0]], res[names[0]])
    assert ref.extra == scores[0].extra
