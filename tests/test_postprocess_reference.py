"""The reference decoder against the baseline's own DBPostProcessor (OpenCV 4.8.1 era).

Committed vectors (``tests/data/postprocess``, see its README) hold the baseline's outputs
on synthetic maps and the results of the OpenCV 4.8.1 calls the decoder pins. Polygons
must match vertex for vertex and in order, scores bit for bit.

The real-map parity test reads PP-OCRv4 maps of SROIE receipts from ``../realmaps/
sroie_dev`` (or ``$UNCLIP_TUNER_REALMAPS``) and is skipped when they are absent (they are
not committed); set ``UNCLIP_TUNER_FULL_PARITY=1`` to check all 200 maps instead of 25.
"""

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import real_maps_dir

from unclip_tuner.postprocess.params import PostProcessParams
from unclip_tuner.postprocess.raster import box_score_slow_reference
from unclip_tuner.postprocess.reference import (
    DecodeStats,
    approx_poly_dp,
    box_points,
    decode_reference,
    decode_reference_network,
    dilate_2x2,
    find_contours,
    get_mini_boxes,
    map_to_image,
    min_area_rect,
    unclip_reference,
)
from unclip_tuner.synthetic import inverse_matrix_for, synthetic_page

DATA = Path(__file__).resolve().parent / "data" / "postprocess"
REPO = Path(__file__).resolve().parents[1]
REALMAPS = real_maps_dir()


def _synthetic_maps():
    d = np.load(DATA / "synthetic_maps.npz")
    maps = [q.astype(np.float32) / np.float32(255) for q in list(d["small"]) + list(d["large"])]
    return maps, d["matrices"]


def _params(setting, use_polygon):
    return PostProcessParams(
        thresh=setting["thresh"], box_thresh=setting["box_thresh"], max_candidates=setting["max_candidates"],
        use_polygon=bool(use_polygon), box_unclip_ratio=setting["box_ratio"],
        polygon_unclip_ratio=setting["polygon_ratio"],
    )


def _expected_runs(npz):
    """Yield (map index, setting, use_polygon, [(int16 points, score), ...]) per seed run."""
    d = dict(npz)
    settings = json.loads(str(d["settings"]))
    nverts, points, scores = d["nverts"], d["points"], d["scores"]
    det = vert = 0
    for (mi, si, up), count in zip(d["runs"], d["counts"]):
        dets = []
        for _ in range(count):
            n = nverts[det]
            dets.append((points[vert : vert + n], scores[det]))
            det += 1
            vert += n
        yield int(mi), settings[si], bool(up), dets


def _assert_same(mine, expected, what):
    assert len(mine) == len(expected), f"{what}: {len(mine)} detections, baseline {len(expected)}"
    for k, ((p, s), (q, t)) in enumerate(zip(mine, expected)):
        assert p.dtype == np.int16
        assert np.array_equal(p, q), f"{what}, detection {k}: {p.tolist()} != {q.tolist()}"
        assert s == t, f"{what}, detection {k}: score {s!r} != {t!r}"


def test_identical_to_baseline_on_synthetic_maps():
    maps, mats = _synthetic_maps()
    n_runs = n_dets = 0
    for mi, setting, up, expected in _expected_runs(np.load(DATA / "seed_synthetic.npz")):
        mine = decode_reference(maps[mi], mats[mi], _params(setting, up))
        _assert_same(mine, expected, f"map {mi} {setting} polygon={up}")
        n_runs += 1
        n_dets += len(expected)
    assert n_runs == 360 and n_dets > 3000


def test_identical_to_baseline_on_real_maps():
    npz = np.load(DATA / "seed_sroie_dev.npz")
    if not REALMAPS.is_dir():
        pytest.skip(f"real probability maps not found at {REALMAPS}")
    names, shas = [str(n) for n in npz["names"]], [str(s) for s in npz["sha256"]]
    step = 1 if os.environ.get("UNCLIP_TUNER_FULL_PARITY") else 8
    checked, loaded = 0, {}
    for mi, setting, up, expected in _expected_runs(npz):
        if mi % step:
            continue
        if mi not in loaded:
            path = REALMAPS / names[mi]
            if not path.is_file():
                pytest.skip(f"{path} is missing")
            d = np.load(path)
            prob = np.ascontiguousarray(d["prob"], dtype=np.float32)
            if hashlib.sha256(prob.tobytes()).hexdigest() != shas[mi]:
                pytest.skip(f"{path} differs from the map the vectors were made from; regenerate them")
            loaded = {mi: (prob, d["inverse_matrix"])}
        prob, mat = loaded[mi]
        _assert_same(decode_reference(prob, mat, _params(setting, up)), expected, f"{names[mi]} {setting} polygon={up}")
        checked += 1
    assert checked >= 100


def test_pinned_geometry_identical_to_opencv_481():
    d = dict(np.load(DATA / "geometry_481.npz"))
    a_in, a_out = d["approx_in"], d["approx_out"]
    s_in = np.concatenate([[0], np.cumsum(d["approx_n"])])
    s_out = np.concatenate([[0], np.cumsum(d["approx_out_n"])])
    for i, eps in enumerate(d["approx_eps"]):
        mine = approx_poly_dp(a_in[s_in[i] : s_in[i + 1]], float(eps))
        assert np.array_equal(mine, a_out[s_out[i] : s_out[i + 1]]), f"approxPolyDP case {i}"
    r_in = d["rect_in"]
    s_r = np.concatenate([[0], np.cumsum(d["rect_n"])])
    for i, (rect, box) in enumerate(zip(d["rect"], d["box"])):
        (cx, cy), (w, h), ang = min_area_rect(r_in[s_r[i] : s_r[i + 1]])
        assert np.array_equal(np.float32([cx, cy, w, h, ang]), rect), f"minAreaRect case {i}"
        assert np.array_equal(box_points(((cx, cy), (w, h), ang)), box), f"boxPoints case {i}"
    assert len(d["approx_eps"]) > 1500 and len(d["rect"]) > 2000


def test_library_calls_used_directly_are_the_ones_checked():
    # the functions kept as library calls: contours and arc length (stable across 4.8/5.0)
    prob = synthetic_page(np.random.default_rng(4), size=256, n_words=20, text_scale=1.0)[0]
    bitmap = prob > np.float32(0.3)
    ref, _ = cv2.findContours(bitmap.astype(np.uint8) * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    mine = find_contours(bitmap)
    assert len(mine) == len(ref) and all(np.array_equal(a, b.reshape(-1, 2)) for a, b in zip(mine, ref))


def test_dilation_matches_cv2_dilate():
    rng = np.random.default_rng(8)
    for _ in range(50):
        bm = rng.random((int(rng.integers(1, 40)), int(rng.integers(1, 40)))) < rng.random()
        ref = cv2.dilate(bm.astype(np.uint8), np.ones((2, 2), np.uint8)).astype(bool)
        assert np.array_equal(dilate_2x2(bm), ref)


def test_network_stage_and_mapping_compose():
    prob, _, mat = synthetic_page(np.random.default_rng(5), size=512, n_words=50)
    for up in (False, True):
        params = PostProcessParams(thresh=0.25, box_thresh=0.45, use_polygon=up)
        net = decode_reference_network(prob, params)
        img = decode_reference(prob, mat, params)
        assert len(net) == len(img) > 10
        for (p, s), (q, t) in zip(net, img):
            assert s == t and np.array_equal(map_to_image(p, mat), q)
            assert p.dtype == (np.int64 if up else np.float32)


def test_stats_account_for_every_candidate():
    prob = synthetic_page(np.random.default_rng(6), size=512, n_words=60)[0]
    for up in (False, True):
        st = DecodeStats()
        dets = decode_reference_network(prob, PostProcessParams(thresh=0.2, box_thresh=0.5, use_polygon=up,
                                                                max_candidates=40), st)
        d = st.as_dict()
        dropped = d["too_few_points"] + d["too_small"] + d["low_score"] + d["unclip_failed"] + d["too_small_unclipped"]
        assert d["considered"] == min(d["contours"], 40) == dropped + d["kept"]
        assert d["kept"] == len(dets) and d["low_score"] > 0


def test_slow_score_mode_scores_the_raw_contour():
    prob = synthetic_page(np.random.default_rng(7), size=512, n_words=60)[0]
    contours = find_contours(prob > np.float32(0.3))
    for up in (False, True):
        fast = decode_reference_network(prob, PostProcessParams(box_thresh=0.0, use_polygon=up), with_index=True)
        slow = decode_reference_network(prob, PostProcessParams(box_thresh=0.0, use_polygon=up, score_mode="slow"),
                                        with_index=True)
        # with box_thresh 0 no candidate is dropped for its score: same candidates, other scores
        assert [i for _, _, i in fast] == [i for _, _, i in slow]
        for (p, _, i), (q, s, j) in zip(fast, slow):
            assert np.array_equal(p, q) and s == box_score_slow_reference(prob, contours[j])


def test_dilation_option_decodes_the_dilated_bitmap():
    prob = synthetic_page(np.random.default_rng(9), size=256, n_words=30, text_scale=1.0)[0]
    params = PostProcessParams(thresh=0.3, box_thresh=0.3, use_polygon=True, use_dilation=True)
    st = DecodeStats()
    decode_reference_network(prob, params, st)
    assert st.contours == len(find_contours(dilate_2x2(prob > np.float32(0.3))))


def test_unclip_and_mini_boxes():
    square = np.array([[10, 10], [30, 10], [30, 30], [10, 30]], dtype=np.int32)
    out = unclip_reference(square, 1.5)  # distance = 400 * 1.5 / 80 = 7.5
    assert out.dtype == np.int64 and out[:, 0].min() in (2, 3) and out[:, 0].max() in (37, 38)
    assert unclip_reference(np.array([[0, 0], [5, 0], [10, 0], [5, 0]]), 2.0) is None  # zero area
    box, side = get_mini_boxes(square)
    assert side == 20.0 and box.dtype == np.float32
    assert np.array_equal(box, np.float32([[10, 10], [30, 10], [30, 30], [10, 30]]))


def test_mapping_rounds_half_to_even():
    m = inverse_matrix_for(2048, 1024, 1024)  # scale 2, top padding 256
    pts = np.array([[0.25, 256.75], [1.25, 257.25], [-3.0, 0.0]], dtype=np.float32)
    out = map_to_image(pts, m)
    assert out.dtype == np.int16
    assert out.tolist() == [[0, 2], [2, 2], [-6, -512]]  # x: 0.5 -> 0, 2.5 -> 2; y: 1.5 -> 2, 2.5 -> 2


def test_bad_inputs_give_clear_errors():
    p = PostProcessParams()
    eye = np.eye(3)
    good = np.zeros((32, 32), np.float32)
    bad = good.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        decode_reference(bad, eye, p)
    bad[3, 4] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        decode_reference_network(bad, p)
    with pytest.raises(ValueError, match=r"2-D \(H, W\)"):
        decode_reference(np.zeros((1, 32, 32), np.float32), eye, p)
    with pytest.raises(ValueError, match="floating-point"):
        decode_reference(np.zeros((32, 32), np.uint8), eye, p)
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        decode_reference(good, np.eye(2), p)
    with pytest.raises(ValueError, match="inverse_matrix contains NaN"):
        decode_reference(good, np.full((3, 3), np.nan), p)
    with pytest.raises(ValueError, match="PostProcessParams"):
        decode_reference(good, eye, {"thresh": 0.3})


def test_empty_maps_give_no_detections():
    for up in (False, True):
        p = PostProcessParams(use_polygon=up, box_thresh=0.0)
        assert decode_reference(np.zeros((0, 0), np.float32), np.eye(3), p) == []
        assert decode_reference(np.zeros((64, 48), np.float32), np.eye(3), p) == []
        assert decode_reference(np.full((64, 48), 0.3, np.float32), np.eye(3), p) == []  # not > thresh


def test_synthetic_page_contract():
    a = synthetic_page(np.random.default_rng(12), size=320, n_words=25, image_size=(500, 900))
    b = synthetic_page(np.random.default_rng(12), size=320, n_words=25, image_size=(500, 900))
    prob, polys, m = a
    assert np.array_equal(prob, b[0]) and all(np.array_equal(p, q) for p, q in zip(polys, b[1]))
    assert prob.shape == (320, 320) and prob.dtype == np.float32 and 0 <= prob.min() and prob.max() <= 1
    assert 0 < len(polys) <= 25 and all(p.ndim == 2 and p.shape[1] == 2 for p in polys)
    # letterbox of 500x900 into 320: scale 320/900, new size 177x320, left padding 71
    assert np.allclose(m, [[500 / 177, 0, -71 * 500 / 177], [0, 900 / 320, 0], [0, 0, 1]])
    assert np.array_equal(m, inverse_matrix_for(500, 900, 320))
    with pytest.raises(ValueError, match="size"):
        synthetic_page(np.random.default_rng(0), size=8)
    with pytest.raises(ValueError, match="text_scale"):
        synthetic_page(np.random.default_rng(0), size=64, text_scale=0.0)
