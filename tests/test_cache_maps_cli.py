"""``unclip-tuner cache-maps`` end to end: checkpoint and ONNX sources, ground truth, odd images,
warnings, resume after ``kill -9``, and the ``--maps`` import."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
from PIL import Image  # noqa: E402

from unclip_tuner.cache.store import MapCache  # noqa: E402
from unclip_tuner.cli import main  # noqa: E402
from unclip_tuner.models.checkpoint import DBNetSpec  # noqa: E402
from unclip_tuner.models.dbnet import DBNet  # noqa: E402
from unclip_tuner.models.preprocess import load_image, preprocess, seed_inverse_matrix  # noqa: E402

from model_weights import formula_state  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIZE = 64
R18 = DBNetSpec("resnet18", [1, 2, 3, 4], [64, 128, 256, 512])


@pytest.fixture(scope="module")
def model_and_ckpt(tmp_path_factory):
    """A resnet18 DBNet with fixed weights, and its checkpoint saved as the baseline saves it."""
    model = DBNet(R18).eval()
    shapes = {"model." + k: tuple(v.shape) for k, v in model.state_dict().items()}
    sd = formula_state(shapes)
    model.load_state_dict({k[len("model."):]: v for k, v in sd.items()})
    path = tmp_path_factory.mktemp("ckpt") / "best.ckpt"
    torch.save({"epoch": 1, "global_step": 10, "state_dict": sd}, path)
    return model, path


def direct_map(model, path, tta=False):
    """The map computed without the cache-maps machinery (one image, one forward)."""
    prep = preprocess(load_image(path), "seed", SIZE)
    x = torch.from_numpy(prep.image[None])
    with torch.no_grad():
        out = model(x)[0, 0].numpy()
        if tta:
            out = (out + model(torch.flip(x, dims=[3]))[0, 0].numpy()[:, ::-1]) * np.float32(0.5)
    return out, prep


def _image(seed: int, h: int, w: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    a = np.full((h, w, 3), 230, np.uint8)
    for _ in range(6):  # dark "words" on a light page
        y, x = rng.integers(0, h - 4), rng.integers(0, w - 10)
        a[y:y + 4, x:x + rng.integers(5, 20)] = rng.integers(0, 60)
    return Image.fromarray(a)


def make_images(folder: Path, n: int, prefix: str = "img") -> list:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        name = f"{prefix}_{i:02d}.png"
        _image(i, 30 + 5 * (i % 4), 70 - 6 * (i % 5)).save(folder / name)
        names.append(name)
    return names


def run_cli(*args) -> int:
    return main(["cache-maps", *map(str, args)])


# ------------------------------------------------------------------------------------------
# Checkpoint source
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tta", [False, True])
def test_cached_maps_equal_direct_forward(tmp_path, model_and_ckpt, capsys, tta):
    model, ckpt = model_and_ckpt
    names = make_images(tmp_path / "images", 5)
    out = tmp_path / "cache"
    args = ["--ckpt", ckpt, "--images", tmp_path / "images", "--out", out,
            "--input-size", SIZE, "--batch-size", 2, "--workers", 2, "--device", "cpu"]
    if tta:
        args += ["--tta", "hflip"]
    assert run_cli(*args) == 0
    stdout = capsys.readouterr().out
    assert "5 cached now" in stdout
    cache = MapCache.open(out, verify="full")
    assert cache.names() == names
    for name in names:
        rec = cache.get(name)
        expected, prep = direct_map(model, tmp_path / "images" / name, tta)
        assert rec.prob.shape == (SIZE, SIZE)
        np.testing.assert_allclose(rec.prob, expected, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(rec.inverse_matrix, prep.inverse_matrix)
        w, h = Image.open(tmp_path / "images" / name).size
        assert (rec.width, rec.height) == (w, h)
        np.testing.assert_array_equal(rec.inverse_matrix, seed_inverse_matrix(w, h, SIZE))
    meta = cache.meta
    assert meta["target"] == "seed-original" and meta["params"] is None
    assert meta["model"]["structure"] == "inferred" and meta["model"]["assumed"]
    assert meta["preprocessing"]["profile"] == "seed" and meta["preprocessing"]["input_size"] == SIZE
    parts = cache.fingerprint_parts
    assert set(parts) == {"model_sha256", "config", "preprocessing", "dtype"}
    assert parts["config"]["tta"] == ("hflip" if tta else None)

    # A second run resumes: nothing is recomputed.
    assert run_cli(*args) == 0
    assert "0 cached now, 5 already cached" in capsys.readouterr().out
    # Other settings are refused without --overwrite.
    assert run_cli(*args[:-2 if tta else len(args)], "--dtype", "float16") == 2
    assert "different fingerprint" in capsys.readouterr().err


def _hydra_config(path: Path, postprocess: dict) -> Path:
    pp = "\n".join(f"      {k}: {json.dumps(v)}" for k, v in postprocess.items())
    path.write_text(f"""encoder_path: ocr.models.encoder
models:
  encoder:
    _target_: ${{encoder_path}}.TimmBackbone
    model_name: resnet18
    select_features: [1, 2, 3, 4]
    pretrained: true
  decoder:
    _target_: ocr.models.decoder.UNet
    in_channels: [64, 128, 256, 512]
    strides: [4, 8, 16, 32]
  head:
    _target_: ocr.models.head.DBHead
    in_channels: 256
    upscale: 4
    postprocess:
{pp}
transforms:
  val_transform:
    _target_: ocr.datasets.DBTransforms
    transforms:
    - {{_target_: albumentations.LongestMaxSize, max_size: {SIZE}, p: 1.0}}
    - {{_target_: albumentations.PadIfNeeded, min_width: {SIZE}, min_height: {SIZE}, border_mode: 0}}
    - {{_target_: albumentations.Normalize, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}}
""")
    return path


def test_hydra_config_and_ufo_gt(tmp_path, model_and_ckpt, capsys):
    model, ckpt = model_and_ckpt
    names = make_images(tmp_path / "images", 4)
    words = {"0001": {"points": [[1, 1], [20, 1], [20, 6], [1, 6]]}}
    ufo = {"images": {names[2]: {"words": words}, "missing.jpg": {"words": words},
                      names[0]: {"words": words}}}
    (tmp_path / "val.json").write_text(json.dumps(ufo))
    cfg = _hydra_config(tmp_path / "config.yaml", {
        "thresh": 0.23, "box_thresh": 0.43, "max_candidates": 500, "use_polygon": True,
        "box_unclip_ratio": 1.4, "polygon_unclip_ratio": 1.9})
    out = tmp_path / "cache"
    assert run_cli("--ckpt", ckpt, "--config", cfg, "--images", tmp_path / "images",
                   "--gt", tmp_path / "val.json", "--out", out, "--device", "cpu") == 0
    captured = capsys.readouterr()
    assert "1 GT image(s) have no image file" in captured.err and "missing.jpg" in captured.err
    assert "2 image(s) in" in captured.err and "have no GT entry" in captured.err
    cache = MapCache.open(out)
    assert cache.names() == [names[2], names[0]]  # GT order, GT images only
    assert list(cache.gt.keys()) == [names[2], names[0]]
    assert cache.meta["target"] == "karmakaryx"
    assert cache.meta["params"] == {"thresh": 0.23, "box_thresh": 0.43, "max_candidates": 500,
                                    "use_polygon": True, "box_unclip_ratio": 1.4,
                                    "polygon_unclip_ratio": 1.9}
    assert cache.meta["model"]["structure"] == "config"
    expected, _ = direct_map(model, tmp_path / "images" / names[0])
    np.testing.assert_allclose(cache.get(names[0]).prob, expected, rtol=0, atol=1e-5)

    # --strict turns the GT entry without an image into an error.
    assert run_cli("--ckpt", ckpt, "--config", cfg, "--images", tmp_path / "images", "--gt",
                   tmp_path / "val.json", "--out", tmp_path / "c2", "--strict") == 2
    assert "have no image file" in capsys.readouterr().err


def test_icdar_gt_names_by_stem(tmp_path, model_and_ckpt, capsys):
    _, ckpt = model_and_ckpt
    make_images(tmp_path / "images", 2)
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    for i in range(2):
        (gt_dir / f"gt_img_{i:02d}.txt").write_text("1,1,20,1,20,6,1,6,word\n", encoding="utf-8")
    out = tmp_path / "cache"
    assert run_cli("--ckpt", ckpt, "--images", tmp_path / "images", "--gt", gt_dir,
                   "--out", out, "--input-size", SIZE) == 0
    cache = MapCache.open(out)
    assert cache.names() == ["img_00", "img_01"] and list(cache.gt) == ["img_00", "img_01"]
    # --limit keeps the first images and restricts the stored GT to them.
    assert run_cli("--ckpt", ckpt, "--images", tmp_path / "images", "--gt", gt_dir,
                   "--out", tmp_path / "c2", "--input-size", SIZE, "--limit", 1) == 0
    small = MapCache.open(tmp_path / "c2")
    assert small.names() == ["img_00"] and list(small.gt) == ["img_00"]


def test_unreadable_images_are_listed(tmp_path, model_and_ckpt, capsys):
    _, ckpt = model_and_ckpt
    names = make_images(tmp_path / "images", 3)
    (tmp_path / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff this is not a jpeg")
    (tmp_path / "images" / "empty.png").write_bytes(b"")
    out = tmp_path / "cache"
    assert run_cli("--ckpt", ckpt, "--images", tmp_path / "images", "--out", out,
                   "--input-size", SIZE) == 0
    captured = capsys.readouterr()
    assert "2 image(s) could not be read and were skipped" in captured.err
    assert "broken.jpg" in captured.err and "empty.png" in captured.err
    assert "3 cached now" in captured.out and "2 skipped" in captured.out
    cache = MapCache.open(out)
    assert sorted(cache.names()) == sorted(names)
    assert {s["image"] for s in cache.meta["skipped"]} == {"broken.jpg", "empty.png"}
    assert run_cli("--ckpt", ckpt, "--images", tmp_path / "images", "--out", tmp_path / "c2",
                   "--input-size", SIZE, "--strict") == 2
    assert "broken.jpg" in capsys.readouterr().err


def test_odd_image_modes_follow_the_baseline(tmp_path, model_and_ckpt):
    """Gray, RGBA, CMYK and EXIF-rotated files go through convert('RGB') and the EXIF tag."""
    model, ckpt = model_and_ckpt
    folder = tmp_path / "images"
    folder.mkdir()
    base = np.asarray(_image(7, 40, 60))
    gray = Image.fromarray(base[:, :, 0])
    gray.save(folder / "gray.png")
    rgba = Image.fromarray(np.dstack([base, np.full(base.shape[:2], 128, np.uint8)]), "RGBA")
    rgba.save(folder / "rgba.png")
    Image.fromarray(base).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    exif = Image.Exif()
    exif[274] = 6  # "rotate 90 CW to view"
    Image.fromarray(base).save(folder / "exif6.png", exif=exif)
    out = tmp_path / "cache"
    assert run_cli("--ckpt", ckpt, "--images", folder, "--out", out, "--input-size", SIZE) == 0
    cache = MapCache.open(out, verify="full")
    assert sorted(cache.names()) == ["cmyk.jpg", "exif6.png", "gray.png", "rgba.png"]
    # Independent expectations for the decoded pixels.
    np.testing.assert_array_equal(load_image(folder / "gray.png"), np.dstack([base[:, :, 0]] * 3))
    np.testing.assert_array_equal(load_image(folder / "rgba.png"), base)
    np.testing.assert_array_equal(load_image(folder / "exif6.png"), np.rot90(base, k=-1))
    rec = cache.get("exif6.png")
    assert (rec.width, rec.height) == (40, 60)  # size after the rotation
    for name in cache.names():
        expected, prep = direct_map(model, folder / name)
        got = cache.get(name)
        np.testing.assert_allclose(got.prob, expected, rtol=0, atol=1e-5)
        assert (got.width, got.height) == prep.original_size


def test_checkpoint_that_does_not_fit_gives_one_line(tmp_path, model_and_ckpt, capsys):
    _, ckpt = model_and_ckpt
    make_images(tmp_path / "images", 1)
    cfg = _hydra_config(tmp_path / "config.yaml", {"thresh": 0.3})
    text = cfg.read_text().replace("resnet18", "resnet34")
    cfg.write_text(text)
    assert run_cli("--ckpt", ckpt, "--config", cfg, "--images", tmp_path / "images",
                   "--out", tmp_path / "cache") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "does not fit resnet34" in err and "timm" in err


# ------------------------------------------------------------------------------------------
# kill -9 and resume
# ------------------------------------------------------------------------------------------

def test_kill_during_run_then_resume(tmp_path, model_and_ckpt, capsys):
    model, ckpt = model_and_ckpt
    names = make_images(tmp_path / "images", 20)
    out = tmp_path / "cache"
    args = ["--ckpt", str(ckpt), "--images", str(tmp_path / "images"), "--out", str(out),
            "--input-size", str(SIZE), "--batch-size", "1", "--workers", "1", "--no-progress"]
    # The child slows every network call so that the kill lands in the middle of the run.
    code = ("import sys, time\n"
            "from unclip_tuner.models import inference\n"
            "start = inference.TorchDetector.start\n"
            "def slow(self, batch):\n"
            "    time.sleep(0.2)\n"
            "    return start(self, batch)\n"
            "inference.TorchDetector.start = slow\n"
            "from unclip_tuner.cli import main\n"
            f"sys.exit(main(['cache-maps', *{args!r}]))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    maps_dir = out / "maps"
    deadline = time.monotonic() + 300
    done = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if maps_dir.is_dir():
                done = sum(1 for p in maps_dir.iterdir() if not p.name.startswith("."))
                if done >= 5:
                    break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        stderr = proc.communicate()[1].decode(errors="replace")
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill: {stderr[-500:]}"
    assert 5 <= done < 20
    assert (out / "index.pending.jsonl").exists()  # killed before close()

    assert run_cli(*args) == 0
    summary = capsys.readouterr().out
    resumed = int(summary.split(" already cached")[0].rsplit(", ", 1)[1])
    assert resumed >= 5
    assert f"{20 - resumed} cached now" in summary
    cache = MapCache.open(out, verify="full")
    assert sorted(cache.names()) == sorted(names) and len(cache.names()) == 20
    assert sorted(p.name for p in maps_dir.iterdir() if not p.name.startswith(".")) == \
        sorted(cache.map_file(n).name for n in names)
    for name in (names[0], names[-1]):
        expected, _ = direct_map(model, tmp_path / "images" / name)
        np.testing.assert_allclose(cache.get(name).prob, expected, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------
# ONNX source and imported maps
# ------------------------------------------------------------------------------------------

def _ppocr_model() -> Path:
    from unclip_tuner.models.onnx_detector import find_ppocr_v4_model

    pytest.importorskip("onnxruntime")
    try:
        return find_ppocr_v4_model()
    except FileNotFoundError:
        pytest.skip("rapidocr-onnxruntime (PP-OCRv4 detector) is not installed")


@pytest.mark.parametrize("profile, size", [("seed-ppocr", 128), ("rapidocr", 96)])
def test_onnx_ppocr(tmp_path, capsys, profile, size):
    import onnxruntime as ort

    onnx_path = _ppocr_model()
    folder = tmp_path / "images"
    folder.mkdir()
    _image(1, 60, 150).save(folder / "a.png")
    _image(2, 140, 90).save(folder / "b.png")
    out = tmp_path / "cache"
    assert run_cli("--onnx", onnx_path, "--profile", profile, "--input-size", size,
                   "--images", folder, "--out", out, "--batch-size", 2) == 0
    cache = MapCache.open(out, verify="full")
    assert cache.names() and sorted(cache.names()) == ["a.png", "b.png"]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for name in ("a.png", "b.png"):
        prep = preprocess(load_image(folder / name), profile, size)
        ref = sess.run(None, {sess.get_inputs()[0].name: prep.image[None]})[0][0, 0]
        rec = cache.get(name)
        np.testing.assert_allclose(rec.prob, ref, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(rec.inverse_matrix, prep.inverse_matrix)
    assert cache.meta["model"]["kind"] == "onnx"
    assert cache.fingerprint_parts["preprocessing"]["profile"] == profile


def test_import_maps(tmp_path, capsys):
    src = tmp_path / "maps"
    src.mkdir()
    rng = np.random.default_rng(3)
    for name in ("p.jpg", "q.jpg"):
        np.savez(src / f"{Path(name).stem}.npz", prob=rng.random((32, 32)).astype(np.float32),
                 inverse_matrix=seed_inverse_matrix(64, 40, 32), width=64, height=40,
                 filename=name)
    out = tmp_path / "cache"
    assert run_cli("--maps", src, "--out", out) == 0
    assert "2 map(s) imported" in capsys.readouterr().out
    cache = MapCache.open(out, verify="full")
    assert sorted(cache.names()) == ["p.jpg", "q.jpg"]
    assert run_cli("--maps", src, "--out", tmp_path / "c2", "--images", tmp_path) == 2
    assert "does not apply to --maps" in capsys.readouterr().err


def test_help_does_not_import_torch():
    code = ("import sys, contextlib, io\n"
            "from unclip_tuner.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            "        main(['cache-maps', '--help'])\n"
            "    except SystemExit:\n"
            "        pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
