"""Tests of unclip_tuner.models.onnx_detector and scripts/make_real_maps.py.

The detector is exercised with tiny ONNX graphs written here byte by byte (no ``onnx`` package
needed): ``Sigmoid`` over the input, whose channel 0 must come back as the map, and a 2x2
``MaxPool`` whose output size does not match its input. The PP-OCRv4 test runs only when the
``rapidocr_onnxruntime`` package is installed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from unclip_tuner.models import onnx_detector as od
from unclip_tuner.models import preprocess as pp

ort = pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------
# Minimal ONNX protobuf writer
# ------------------------------------------------------------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _int(num: int, value: int) -> bytes:
    return _varint(num << 3) + _varint(value)


def _bytes(num: int, payload) -> bytes:
    payload = payload.encode() if isinstance(payload, str) else payload
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _value_info(name, dims) -> bytes:
    shape = b"".join(_bytes(1, _bytes(2, d) if isinstance(d, str) else _int(1, d)) for d in dims)
    tensor_type = _int(1, 1) + _bytes(2, shape)  # elem_type 1 = FLOAT
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


def _ints_attribute(name, values) -> bytes:
    return _bytes(1, name) + b"".join(_int(8, v) for v in values) + _int(20, 7)  # type 7 = INTS


def onnx_model(op: str, attributes: bytes = b"", out_channels: int = 3) -> bytes:
    """ModelProto (IR 7, opset 13) of one node ``op`` from input ``x`` to output ``y``."""
    node = _bytes(1, "x") + _bytes(2, "y") + _bytes(3, "n0") + _bytes(4, op) + attributes
    graph = (_bytes(1, node) + _bytes(2, "g")
             + _bytes(11, _value_info("x", ["n", 3, "h", "w"]))
             + _bytes(12, _value_info("y", ["n", out_channels, "h2", "w2"])))
    return _int(1, 7) + _bytes(7, graph) + _bytes(8, _bytes(1, "") + _int(2, 13))


@pytest.fixture()
def sigmoid_model(tmp_path):
    path = tmp_path / "sigmoid.onnx"
    path.write_bytes(onnx_model("Sigmoid"))
    return path


def synthetic_page(h=90, w=60):
    """White page with dark text-like bars."""
    img = np.full((h, w, 3), 235, np.uint8)
    for y in range(8, h - 8, 14):
        img[y:y + 5, 6:w - 10 - (y % 20)] = 30
    return img


# ------------------------------------------------------------------------------------------
# Detector
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["seed", "seed-ppocr", "ppocr", "rapidocr"])
def test_prob_is_channel_zero_of_output(sigmoid_model, profile):
    det = od.OnnxDetector(sigmoid_model, profile=profile, input_size=64, intra_op_num_threads=1)
    rgb = synthetic_page()
    out = det.predict(rgb)
    net_input, inverse, size = pp.preprocess(rgb, profile, 64)
    expected = 1.0 / (1.0 + np.exp(-net_input[0].astype(np.float64)))
    assert out.prob.dtype == np.float32 and out.prob.shape == net_input.shape[1:]
    np.testing.assert_allclose(out.prob, expected, rtol=0, atol=1e-6)
    assert np.array_equal(out.inverse_matrix, inverse) and out.original_size == size == (60, 90)


def test_predict_from_path_equals_array(sigmoid_model, tmp_path):
    rgb = synthetic_page()
    Image.fromarray(rgb).save(tmp_path / "page.png")
    det = od.OnnxDetector(sigmoid_model, input_size=32)
    a, b = det(tmp_path / "page.png"), det(rgb)
    assert np.array_equal(a.prob, b.prob) and np.array_equal(a.inverse_matrix, b.inverse_matrix)


def test_output_size_mismatch_is_reported(tmp_path):
    path = tmp_path / "pool.onnx"
    path.write_bytes(onnx_model("MaxPool", _bytes(5, _ints_attribute("kernel_shape", [2, 2]))
                                + _bytes(5, _ints_attribute("strides", [2, 2]))))
    det = od.OnnxDetector(path, input_size=32)
    with pytest.raises(ValueError, match="probability map of shape"):
        det(synthetic_page())


def test_detector_errors(sigmoid_model, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="ONNX model not found"):
        od.OnnxDetector(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="no output 'prob'"):
        od.OnnxDetector(sigmoid_model, output_name="prob")
    with pytest.raises(ValueError, match="unknown preprocessing profile"):
        od.OnnxDetector(sigmoid_model, profile="paddle")
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01junk")
    with pytest.raises(ValueError, match="cannot load"):
        od.OnnxDetector(tmp_path / "junk.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"unclip-tuner\[onnx\]"):
        od.OnnxDetector(sigmoid_model)


def test_find_model_messages(monkeypatch, tmp_path):
    monkeypatch.setattr(od.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps rapidocr-onnxruntime"):
        od.find_ppocr_v4_model()
    spec = importlib.util.spec_from_loader(od.PPOCR_V4_PACKAGE, loader=None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(od.importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(FileNotFoundError, match="has no models/ch_PP-OCRv4_det_infer.onnx"):
        od.find_ppocr_v4_model()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "ch_PP-OCRv4_det_infer.onnx").write_bytes(b"x")
    assert od.find_ppocr_v4_model() == tmp_path / "models" / "ch_PP-OCRv4_det_infer.onnx"


def test_ppocr_v4_seed_ppocr_matches_direct_run():
    if importlib.util.find_spec("rapidocr_onnxruntime") is None:
        pytest.skip("rapidocr_onnxruntime is not installed")
    model = od.find_ppocr_v4_model()
    rgb = np.full((120, 200, 3), 240, np.uint8)
    for i, text in enumerate(["TOTAL 12.50", "CASH 20.00", "THANK YOU"]):
        cv2.putText(rgb, text, (10, 30 + 35 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (20, 20, 20), 2, cv2.LINE_AA)
    det = od.OnnxDetector(model, profile="seed-ppocr", input_size=256, intra_op_num_threads=1)
    out = det(rgb)
    # independent input: resize the long side to 256, centre-pad, (x / 255 - 0.5) / 0.5 on BGR
    resized = cv2.resize(rgb, (256, 154), interpolation=cv2.INTER_LINEAR)
    padded = np.zeros((256, 256, 3), np.uint8)
    padded[51:205] = resized
    x = ((padded[:, :, ::-1].astype(np.float64) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (direct,) = session.run(None, {session.get_inputs()[0].name: x[None].astype(np.float32)})
    assert out.prob.shape == (256, 256)
    # the two inputs differ by at most one float32 ulp (different arithmetic), which the
    # network amplifies to ~1e-5 on a few pixels
    np.testing.assert_allclose(out.prob, direct[0, 0], rtol=0, atol=1e-4)
    assert out.prob.min() >= 0.0 and out.prob.max() <= 1.0
    # the text is detected inside the image area; the padding stays background
    assert out.prob[51:205].max() > 0.9 and out.prob[:40].max() < 0.3 and out.prob[215:].max() < 0.3
    np.testing.assert_array_equal(out.inverse_matrix, pp.seed_inverse_matrix(200, 120, 256))


# ------------------------------------------------------------------------------------------
# scripts/make_real_maps.py
# ------------------------------------------------------------------------------------------

def test_make_real_maps_script(sigmoid_model, tmp_path):
    images, gt, out = tmp_path / "images", tmp_path / "gt", tmp_path / "out"
    images.mkdir()
    gt.mkdir()
    pages = {"img_2.png": synthetic_page(50, 70), "img_10.png": synthetic_page(80, 40),
             "img_3.png": synthetic_page(30, 30)}
    for name, rgb in pages.items():
        Image.fromarray(rgb).save(images / name)
    gt_text = "\ufeff1,2,30,2,30,9,1,9,HELLO, WORLD\r\n\r\n5,5,6,5,6,6,5,6,###\r\n"
    (gt / "gt_img_2.txt").write_bytes(gt_text.encode())
    (gt / "img_10.txt").write_text("0,0,10,0,10,10,0,10,x\n", encoding="utf-8")
    cmd = [sys.executable, str(REPO / "scripts" / "make_real_maps.py"), "--images", str(images),
           "--gt", str(gt), "--out", str(out), "--model", str(sigmoid_model), "--profile", "seed",
           "--input-size", "64", "--threads", "1", "--limit", "5"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "no ground truth for img_3.png" in res.stderr
    assert sorted(p.name for p in out.glob("*.npz")) == ["img_10.npz", "img_2.npz"]
    det = od.OnnxDetector(sigmoid_model, profile="seed", input_size=64)
    for name in ("img_2.png", "img_10.png"):
        d = np.load(out / (Path(name).stem + ".npz"))
        expected = det(images / name)
        assert d["prob"].dtype == np.float32 and d["inverse_matrix"].dtype == np.float64
        assert np.array_equal(d["prob"], expected.prob)
        assert np.array_equal(d["inverse_matrix"], expected.inverse_matrix)
        assert (int(d["width"]), int(d["height"])) == expected.original_size
        assert str(d["filename"]) == name
    doc = json.loads((out / "gt.json").read_text(encoding="utf-8"))
    words = doc["images"]["img_2.png"]["words"]
    assert list(words) == ["0001", "0002"]
    assert words["0001"] == {"points": [[1, 2], [30, 2], [30, 9], [1, 9]], "transcription": "HELLO, WORLD"}
    assert words["0002"]["transcription"] == "###"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["images"] == 2 and manifest["profile"] == "seed" and manifest["input_size"] == 64

    bad = subprocess.run([sys.executable, str(REPO / "scripts" / "make_real_maps.py"), "--images",
                          str(images), "--out", str(out), "--model", str(tmp_path / "none.onnx")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "ONNX model not found" in bad.stderr
