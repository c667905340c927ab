"""The DBNet model code: key layouts, forward parity with the baseline, checkpoint and config loading.

Reference data (``tests/data/models``) was produced with the baseline's own model classes
under timm 0.9.12; see the README there.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from unclip_tuner.models.checkpoint import (  # noqa: E402
    DBNetSpec, detect_target, infer_spec, load_model, postprocess_params, read_run_config,
    read_state_dict,
)
from unclip_tuner.models.dbnet import DBNet  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "models"
from model_weights import formula_state  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------
# Deterministic weights and inputs (the same rule produced the reference forward)
# ------------------------------------------------------------------------------------------

def formula_input(shape):
    n = int(np.prod(shape))
    return (2.0 * np.sin(np.arange(n, dtype=np.float64) * 0.013)).astype(np.float32).reshape(shape)


R18 = dict(encoder="resnet18", select_features=[1, 2, 3, 4], in_channels=[64, 128, 256, 512])


def lightning_state(spec: DBNetSpec):
    """The baseline's Lightning ``state_dict`` (``model.`` prefix) with formula weights."""
    model = DBNet(spec)
    shapes = {"model." + k: tuple(v.shape) for k, v in model.state_dict().items()}
    return formula_state(shapes)


@pytest.fixture(scope="module")
def r18_ckpt(tmp_path_factory):
    """A resnet18 checkpoint saved the way the baseline's Lightning trainer saves it."""
    path = tmp_path_factory.mktemp("ckpt") / "epoch=3-step=100.ckpt"
    torch.save({"epoch": 3, "global_step": 100, "pytorch-lightning_version": "2.1.2",
                "state_dict": lightning_state(DBNetSpec(**R18)),
                "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 3}}}},
                "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.95),
                                                  "best_model_path": "x.ckpt"}},
                "optimizer_states": [], "lr_schedulers": []}, path)
    return path


# ------------------------------------------------------------------------------------------
# Key layouts
# ------------------------------------------------------------------------------------------

def _layouts():
    with gzip.open(DATA / "dbnet_seed_layouts.json.gz", "rt") as fh:
        return json.load(fh)


def _build(spec: DBNetSpec):
    try:
        with torch.device("meta"):
            return DBNet(spec)
    except Exception:  # older timm versions cannot initialise some backbones on meta
        return DBNet(spec)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "hrnet_w44", "efficientnet_b3",
                                  "convnext_tiny"])
def test_key_layout_matches_baseline(name):
    ref = _layouts()["models"][name]
    t0 = time.perf_counter()
    model = _build(DBNetSpec(name, ref["select_features"], ref["in_channels"], ref["strides"]))
    built = time.perf_counter() - t0
    ours = [["model." + k, list(v.shape)] for k, v in model.state_dict().items()]
    assert dict(ours) == dict((k, s) for k, s in ref["keys"]), f"{name} (built in {built:.2f} s)"
    # Same order too: the decoder and head modules are declared as in the baseline.
    assert [k for k, _ in ours] == [k for k, _ in ref["keys"]]


def test_pruned_backbone_stage_is_exactly_the_unused_keys():
    """maxvit keeps 4 of its 5 features: timm's out_indices drops the last stage, whose
    weights the baseline's checkpoint still carries; the loader accepts exactly those."""
    from unclip_tuner.models.checkpoint import _unused_stage_keys

    ref = _layouts()["models"]["maxvit_tiny_rw_256"]
    spec = DBNetSpec("maxvit_tiny_rw_256", ref["select_features"], ref["in_channels"], ref["strides"])
    model = _build(spec)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k[len("model."):]: tuple(s) for k, s in ref["keys"]}
    extra = set(theirs) - set(ours)
    assert not set(ours) - set(theirs)
    assert all(ours[k] == theirs[k] for k in ours)
    assert extra and all(k.startswith("encoder.model.stages_3.") for k in extra)
    assert _unused_stage_keys(spec, set(ours), theirs) == extra


# ------------------------------------------------------------------------------------------
# Forward parity with the baseline's model code
# ------------------------------------------------------------------------------------------

def test_forward_matches_baseline_model():
    ref = np.load(DATA / "dbnet_seed_forward.npz")
    model = DBNet(DBNetSpec(**R18)).eval()
    sd = lightning_state(DBNetSpec(**R18))
    model.load_state_dict({k[len("model."):]: v for k, v in sd.items()}, strict=True)
    x = torch.from_numpy(formula_input(tuple(ref["input_shape"])))
    with torch.no_grad():
        out = model(x).numpy()
    assert out.shape == ref["prob"].shape
    assert ref["prob"].std() > 0.01  # the reference is not a constant map
    np.testing.assert_allclose(out, ref["prob"], rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------

def test_lightning_ckpt_loads_strictly_without_config(r18_ckpt):
    loaded = load_model(r18_ckpt, find_config=False)
    assert loaded.spec.encoder == "resnet18"
    assert loaded.spec.select_features == [1, 2, 3, 4]
    assert loaded.spec.strides == [4, 8, 16, 32]
    assert loaded.description["structure"] == "inferred"
    assert any("inferred" in n for n in loaded.notes)
    assert loaded.run.params is None and loaded.run.target == "seed-original"
    x = torch.from_numpy(formula_input((1, 3, 64, 64)))
    ref = np.load(DATA / "dbnet_seed_forward.npz")["prob"][:1]
    with torch.no_grad():
        np.testing.assert_allclose(loaded.model(x).numpy(), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("prefix", ["", "model.", "module."])
def test_plain_state_dict_prefixes(tmp_path, prefix):
    sd = {prefix + k[len("model."):]: v for k, v in lightning_state(DBNetSpec(**R18)).items()}
    path = tmp_path / "weights.pth"
    torch.save(sd, path)
    loaded = load_model(path, find_config=False)
    assert loaded.spec.encoder == "resnet18"


def test_infer_spec_other_backbone():
    """Inference is not tied to resnet18: an efficientnet_b3 layout is recognised from shapes."""
    ref = _layouts()["models"]["efficientnet_b3"]
    sd = {k[len("model."):]: torch.empty(s, device="meta") for k, s in ref["keys"]}
    spec, notes = infer_spec(sd)
    assert spec.encoder == "efficientnet_b3"
    assert spec.select_features == [1, 2, 3, 4] and spec.in_channels == [32, 48, 136, 384]
    assert any("tf_efficientnet_b3" in n for n in notes)


def _one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_mis_shaped_checkpoint_message(tmp_path):
    sd = lightning_state(DBNetSpec(**R18))
    sd["model.decoder.inners.1.weight"] = torch.zeros(256, 100, 1, 1)
    path = tmp_path / "bad.ckpt"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(ValueError) as exc:
        load_model(path, config=_write_config(tmp_path, encoder="resnet18"))
    text = _one_line(exc)
    assert "mis-shaped (first: decoder.inners.1.weight" in text
    assert f"timm {timm.__version__}" in text


def test_config_that_does_not_match_the_checkpoint(tmp_path, r18_ckpt):
    cfg = _write_config(tmp_path, encoder="resnet50", in_channels=[256, 512, 1024, 2048])
    with pytest.raises(ValueError) as exc:
        load_model(r18_ckpt, config=cfg)
    text = _one_line(exc)
    assert "does not fit resnet50" in text and "missing key" in text
    assert "look like resnet18" in text and f"timm {timm.__version__}" in text


def test_config_decoder_channels_inconsistent_with_backbone(tmp_path, r18_ckpt):
    cfg = _write_config(tmp_path, encoder="resnet18", in_channels=[256, 512, 1024, 2048])
    with pytest.raises(ValueError) as exc:
        load_model(r18_ckpt, config=cfg)
    assert "in_channels [256, 512, 1024, 2048] do not match resnet18's channels" in _one_line(exc)


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x00\x01 definitely not a checkpoint" * 10)
    with pytest.raises(ValueError) as exc:
        read_state_dict(junk)
    assert "not a PyTorch checkpoint" in _one_line(exc)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, other)
    with pytest.raises(ValueError) as exc:
        load_model(other, find_config=False)
    assert "no DBNet weights found" in _one_line(exc)


class _Opaque:
    """A pickled object that weights-only loading refuses."""


def test_pickled_objects_need_allow_pickle(tmp_path):
    sd = lightning_state(DBNetSpec(**R18))
    path = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": sd, "hyper_parameters": _Opaque()}, path)
    with pytest.raises(ValueError) as exc:
        read_state_dict(path)
    assert "--allow-pickle" in _one_line(exc)
    assert len(read_state_dict(path, allow_pickle=True)) == len(sd)


# ------------------------------------------------------------------------------------------
# Hydra configs
# ------------------------------------------------------------------------------------------

def _write_config(folder: Path, encoder="resnet18", select=(1, 2, 3, 4),
                  in_channels=(64, 128, 256, 512), size=64, postprocess=None,
                  name="config.yaml") -> Path:
    """A config as Hydra saves it: interpolations left unresolved."""
    pp = postprocess if postprocess is not None else {
        "thresh": 0.3, "box_thresh": 0.4, "max_candidates": 500, "use_polygon": True}
    pp_text = "\n".join(f"        {k}: {json.dumps(v)}" for k, v in pp.items()) or "        {}"
    text = f"""dataset_path: ocr.datasets
encoder_path: ocr.models.encoder
decoder_path: ocr.models.decoder
head_path: ocr.models.head
image_size: {size}
exp_name: test_run
models:
  encoder:
    _target_: ${{encoder_path}}.TimmBackbone
    model_name: {encoder}
    select_features: {list(select)}
    pretrained: true
  decoder:
    _target_: ${{decoder_path}}.UNet
    in_channels: {list(in_channels)}
    strides: [4, 8, 16, 32]
    inner_channels: 256
    output_channels: 64
    bias: false
  head:
    _target_: ${{head_path}}.DBHead
    in_channels: 256
    upscale: 4
    k: 50
    bias: false
    smooth: false
    postprocess:
{pp_text}
datasets:
  val_dataset:
    _target_: ${{dataset_path}}.OCRDataset
    image_path: /data/images/val
    transform: ${{transforms.val_transform}}
transforms:
  val_transform:
    _target_: ${{dataset_path}}.DBTransforms
    transforms:
    - _target_: albumentations.LongestMaxSize
      max_size: ${{image_size}}
      p: 1.0
    - _target_: albumentations.PadIfNeeded
      min_width: ${{image_size}}
      min_height: ${{image_size}}
      border_mode: 0
      p: 1.0
    - _target_: albumentations.Normalize
      mean: [0.485, 0.456, 0.406]
      std: [0.229, 0.224, 0.225]
    keypoint_params:
      _target_: albumentations.KeypointParams
      format: xy
      remove_invisible: true
"""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("pp, target, box, poly", [
    ({"thresh": 0.22, "box_thresh": 0.4, "max_candidates": 500, "use_polygon": True},
     "seed-original", 1.5, 2.0),
    ({"thresh": 0.24, "box_thresh": 0.27, "max_candidates": 500, "use_polygon": True,
      "unclip_ratio": 1.8}, "seed-head", 1.8, 1.8),
    ({"thresh": 0.3, "box_thresh": 0.4, "max_candidates": 300, "use_polygon": False,
      "box_unclip_ratio": 1.6, "polygon_unclip_ratio": 2.1}, "karmakaryx", 1.6, 2.1),
])
def test_hydra_config(tmp_path, pp, target, box, poly):
    run = read_run_config(_write_config(tmp_path, size=1024, postprocess=pp))
    assert run.target == target == detect_target(pp)
    assert run.input_size == 1024 and run.transform == "transforms.val_transform"
    assert run.normalisation.mean == (0.485, 0.456, 0.406)
    assert run.normalisation.std == (0.229, 0.224, 0.225)
    assert run.spec.encoder == "resnet18" and run.spec.select_features == [1, 2, 3, 4]
    assert run.params == {"thresh": pp["thresh"], "box_thresh": pp["box_thresh"],
                          "max_candidates": pp["max_candidates"],
                          "use_polygon": pp["use_polygon"],
                          "box_unclip_ratio": box, "polygon_unclip_ratio": poly}


def test_hydra_run_folder_and_target_override(tmp_path):
    (tmp_path / ".hydra").mkdir()
    _write_config(tmp_path / ".hydra")
    run = read_run_config(tmp_path, target="seed-head")
    assert run.target == "seed-head"
    assert run.params["box_unclip_ratio"] == run.params["polygon_unclip_ratio"] == 2.0
    params, notes = postprocess_params({}, "karmakaryx")
    assert params["box_unclip_ratio"] == 1.5 and params["thresh"] == 0.3 and notes


def test_config_found_beside_checkpoint(tmp_path):
    run_dir = tmp_path / "outputs" / "exp"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / ".hydra").mkdir()
    _write_config(run_dir / ".hydra", postprocess={"thresh": 0.25, "box_thresh": 0.3,
                                                   "max_candidates": 500, "use_polygon": True,
                                                   "unclip_ratio": 1.9})
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    torch.save({"state_dict": lightning_state(DBNetSpec(**R18))}, ckpt)
    loaded = load_model(ckpt)
    assert loaded.description["structure"] == "config"
    assert loaded.run.target == "seed-head" and loaded.run.params["thresh"] == 0.25
    assert loaded.run.input_size == 64


@pytest.mark.parametrize("bad, message", [
    ("- _target_: albumentations.Resize\n      height: 64\n      width: 64\n",
     "reproduces LongestMaxSize, PadIfNeeded and Normalize only"),
    ("- _target_: albumentations.LongestMaxSize\n      max_size: 64\n",
     "has no PadIfNeeded, Normalize"),
])
def test_config_preprocessing_not_reproducible(tmp_path, bad, message):
    path = _write_config(tmp_path)
    text = path.read_text()
    start = text.index("    - _target_: albumentations.LongestMaxSize")
    end = text.index("    keypoint_params:")
    path.write_text(text[:start] + "    " + bad + text[end:])
    with pytest.raises(ValueError) as exc:
        read_run_config(path)
    assert message in _one_line(exc)


def test_not_a_run_config(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("trainer:\n  max_epochs: 3\n")
    with pytest.raises(ValueError) as exc:
        read_run_config(path)
    assert "no 'models' section" in _one_line(exc)
    path.write_text("models: [unbalanced\n")
    with pytest.raises(ValueError) as exc:
        read_run_config(path)
    assert "invalid YAML" in _one_line(exc)


def test_reading_a_config_does_not_import_torch(tmp_path):
    cfg = _write_config(tmp_path)
    code = ("import sys; from unclip_tuner.models.checkpoint import read_run_config; "
            f"r = read_run_config({str(cfg)!r}); assert r.spec.encoder == 'resnet18'; "
            "from unclip_tuner.cli import build_parser; build_parser(); "
            "assert 'torch' not in sys.modules and 'timm' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
