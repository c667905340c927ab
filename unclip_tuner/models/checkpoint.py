"""The user's trained model: its Hydra config, its checkpoint, and the network they describe.

The competition baseline trains with Hydra + PyTorch Lightning. What inference needs is split
over two files:

* the checkpoint (``best.ckpt``): the weights only, under ``state_dict`` with keys
  ``model.encoder.model.<timm keys>``, ``model.decoder...``, ``model.head...``; no
  hyper-parameters are saved in it;
* the run's configuration, which Hydra writes to ``outputs/<exp>/.hydra/config.yaml``: the
  timm backbone name and ``select_features`` (``models.encoder``), the decoder and head
  settings, the network input size and normalisation (``transforms``) and the user's current
  post-processing parameters (``models.head.postprocess``).

:func:`read_run_config` reads the second (plain YAML, no Hydra or torch needed),
:func:`load_model` builds the network and loads the first strictly. Without a config the
backbone is inferred from the checkpoint's key names and shapes and every assumption is
recorded in :attr:`LoadedModel.notes`.

Code versions
-------------
Three versions of the baseline's post-processor exist; the keys under
``models.head.postprocess`` tell them apart:

``seed-original``
    No unclip key: polygon ratio 2.0 hard-coded, box ratio 1.5 (``unclip``'s default).
``seed-head``
    One ``unclip_ratio`` used by both modes (default 2.0).
``karmakaryx``
    ``box_unclip_ratio`` (1.5) and ``polygon_unclip_ratio`` (2.0).

Only this module's torch-dependent functions import torch (inside the function), so reading a
config works in an environment without it.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .preprocess import Normalisation

PathLike = Union[str, os.PathLike]

__all__ = [
    "TARGETS",
    "DBNetSpec",
    "RunConfig",
    "LoadedModel",
    "find_run_config",
    "read_run_config",
    "detect_target",
    "postprocess_params",
    "file_sha256",
    "read_state_dict",
    "infer_spec",
    "load_model",
]

#: Code versions of the baseline's post-processor.
TARGETS = ("seed-original", "seed-head", "karmakaryx")

#: ``DBPostProcessor`` defaults, used for keys a config leaves out.
_PP_DEFAULTS = {"thresh": 0.3, "box_thresh": 0.7, "max_candidates": 1000, "use_polygon": False}

#: timm names used by the baseline's presets, tried first when inferring a backbone.
_PRESET_BACKBONES = ("resnet18", "resnet50", "hrnet_w44", "efficientnet_b3", "efficientnet_b4",
                     "convnext_tiny", "convnext_small", "swin_tiny_patch4_window7_224",
                     "maxvit_tiny_rw_256")


# --------------------------------------------------------------------------------------------
# Structure
# --------------------------------------------------------------------------------------------

@dataclass
class DBNetSpec:
    """Everything that decides the network's structure (not its weights).

    Parameters
    ----------
    encoder : str
        timm model name (``resnet18``, ``hrnet_w44``, ``convnext_tiny``...).
    select_features : list of int
        Indices into timm's ``features_only`` outputs kept for the decoder (the baseline's
        ``models.encoder.select_features``: ``[1, 2, 3, 4]`` for resnet, hrnet and
        efficientnet presets, ``[0, 1, 2, 3]`` for convnext, swin and maxvit).
    in_channels : list of int, optional
        Channels of the selected features (``models.decoder.in_channels``); taken from timm's
        feature information when ``None``.
    strides : list of int
        Strides of the selected features (``models.decoder.strides``); their ratios decide
        the decoder's upsampling factors.
    inner_channels, output_channels : int
        Decoder widths (256 and 64 in every preset).
    decoder_bias : bool
        Whether the decoder convolutions have a bias.
    head_in_channels : int
        Head input channels (``models.head.in_channels``, 256).
    upscale : int
        Head upsampling factor (a power of two; 4 in every preset).
    head_bias : bool
        Whether the head's first convolutions have a bias.
    smooth : bool
        The threshold branch's ``smooth`` layout (upsample + conv instead of transposed
        convolutions).
    """

    encoder: str
    select_features: List[int]
    in_channels: Optional[List[int]] = None
    strides: List[int] = field(default_factory=lambda: [4, 8, 16, 32])
    inner_channels: int = 256
    output_channels: int = 64
    decoder_bias: bool = False
    head_in_channels: int = 256
    upscale: int = 4
    head_bias: bool = False
    smooth: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.encoder, str) or not self.encoder:
            raise ValueError("the encoder must be a timm model name")
        try:
            self.select_features = [int(i) for i in self.select_features]
            self.strides = [int(s) for s in self.strides]
            if self.in_channels is not None:
                self.in_channels = [int(c) for c in self.in_channels]
        except (TypeError, ValueError):
            raise ValueError("select_features, strides and in_channels must be lists of "
                             "integers") from None
        if not self.select_features:
            raise ValueError("select_features must list at least one encoder stage")
        if len(self.strides) != len(self.select_features):
            raise ValueError(f"the decoder has {len(self.strides)} strides for "
                             f"{len(self.select_features)} selected encoder stages")
        if self.in_channels is not None and len(self.in_channels) != len(self.select_features):
            raise ValueError(f"the decoder has {len(self.in_channels)} input channel counts for "
                             f"{len(self.select_features)} selected encoder stages")
        for a, b in zip(self.strides, self.strides[1:]):
            if a <= 0 or b < a or b % a:
                raise ValueError(f"decoder strides must grow by integer factors, got {self.strides}")
        up = int(self.upscale)
        if up < 2 or up & (up - 1):
            raise ValueError(f"head upscale must be a power of two >= 2, got {self.upscale}")
        self.upscale = up
        if int(self.head_in_channels) % 4:
            raise ValueError(f"head in_channels must be a multiple of 4, got {self.head_in_channels}")

    def as_dict(self) -> Dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# The Hydra config
# --------------------------------------------------------------------------------------------

@dataclass
class RunConfig:
    """What a run's Hydra config says about inference.

    Attributes
    ----------
    path : str or None
        The config file.
    spec : DBNetSpec or None
        The network structure (``None`` when the config has no ``models`` section).
    input_size : int or None
        Side of the square network input (``LongestMaxSize`` / ``PadIfNeeded``).
    normalisation : Normalisation or None
        The ``Normalize`` statistics.
    target : str
        Code version of the post-processor (see the module documentation).
    params : dict or None
        The user's post-processing parameters: ``thresh``, ``box_thresh``,
        ``max_candidates``, ``use_polygon``, ``box_unclip_ratio``, ``polygon_unclip_ratio``.
    transform : str or None
        Which transform list was read (``transforms.val_transform``...).
    notes : list of str
        Assumptions and things worth knowing.
    """

    path: Optional[str] = None
    spec: Optional[DBNetSpec] = None
    input_size: Optional[int] = None
    normalisation: Optional[Normalisation] = None
    target: str = "seed-original"
    params: Optional[Dict[str, Any]] = None
    transform: Optional[str] = None
    notes: List[str] = field(default_factory=list)


def find_run_config(ckpt: PathLike) -> Optional[Path]:
    """The Hydra config of the run a checkpoint belongs to, when it sits in the usual place.

    The baseline saves ``outputs/<exp>/checkpoints/*.ckpt`` and Hydra writes
    ``outputs/<exp>/.hydra/config.yaml``.
    """
    ckpt = Path(ckpt).resolve()
    for folder in (ckpt.parent, ckpt.parent.parent):
        candidate = folder / ".hydra" / "config.yaml"
        if candidate.is_file():
            return candidate
    return None


_INTERP = re.compile(r"\$\{([^${}]+)\}")


def _lookup(root: Mapping, dotted: str):
    node: Any = root
    for part in dotted.strip().split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(dotted)
    return node


def _resolve(root: Mapping, value, depth: int = 0):
    """Resolve OmegaConf ``${a.b}`` references in a value (Hydra saves them unresolved)."""
    if depth > 20:
        raise ValueError("config interpolation nests too deeply (a reference cycle?)")
    if isinstance(value, str) and "${" in value:
        whole = _INTERP.fullmatch(value.strip())
        if whole and ":" not in whole.group(1):
            try:
                return _resolve(root, _lookup(root, whole.group(1)), depth + 1)
            except KeyError:
                return value

        def sub(m):
            if ":" in m.group(1):  # a resolver such as ${oc.env:X}: left as written
                return m.group(0)
            try:
                return str(_resolve(root, _lookup(root, m.group(1)), depth + 1))
            except KeyError:
                return m.group(0)
        return _INTERP.sub(sub, value)
    return value


def _get(root: Mapping, node: Mapping, key: str, default=None):
    if not isinstance(node, Mapping) or key not in node:
        return default
    return _resolve(root, node[key])


def _target_name(root: Mapping, node: Mapping) -> str:
    target = _get(root, node, "_target_", "")
    return str(target).rsplit(".", 1)[-1] if target else ""


def detect_target(postprocess: Mapping) -> str:
    """Code version from the keys of ``models.head.postprocess`` (see the module docs)."""
    keys = set(postprocess or {})
    if keys & {"box_unclip_ratio", "polygon_unclip_ratio"}:
        return "karmakaryx"
    if "unclip_ratio" in keys:
        return "seed-head"
    return "seed-original"


def postprocess_params(postprocess: Mapping, target: str) -> Tuple[Dict[str, Any], List[str]]:
    """The user's post-processing parameters in the tuner's vocabulary.

    Parameters
    ----------
    postprocess : mapping
        ``models.head.postprocess`` of the config.
    target : str
        Code version (one of :data:`TARGETS`).

    Returns
    -------
    params : dict
        ``thresh``, ``box_thresh``, ``max_candidates``, ``use_polygon``,
        ``box_unclip_ratio``, ``polygon_unclip_ratio``.
    notes : list of str
        Defaults that were filled in.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown code version {target!r}; choose one of {', '.join(TARGETS)}")
    pp = dict(postprocess or {})
    notes = []
    params: Dict[str, Any] = {}
    for key, default in _PP_DEFAULTS.items():
        if key in pp and pp[key] is not None:
            params[key] = pp[key]
        else:
            params[key] = default
            notes.append(f"postprocess.{key} not set: the post-processor's default {default!r}")
    try:
        params["thresh"] = float(params["thresh"])
        params["box_thresh"] = float(params["box_thresh"])
        params["max_candidates"] = int(params["max_candidates"])
        params["use_polygon"] = _as_bool(params["use_polygon"])
    except (TypeError, ValueError):
        raise ValueError(f"models.head.postprocess holds a non-numeric value: {pp}") from None
    if target == "seed-original":
        params["box_unclip_ratio"], params["polygon_unclip_ratio"] = 1.5, 2.0
    elif target == "seed-head":
        ratio = pp.get("unclip_ratio")
        if ratio is None:
            ratio = 2.0
            notes.append("postprocess.unclip_ratio not set: the default 2.0 (both modes)")
        params["box_unclip_ratio"] = params["polygon_unclip_ratio"] = float(ratio)
    else:
        for key, default in (("box_unclip_ratio", 1.5), ("polygon_unclip_ratio", 2.0)):
            value = pp.get(key)
            if value is None:
                value = default
                notes.append(f"postprocess.{key} not set: the default {default}")
            params[key] = float(value)
    return params, notes


def _as_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise ValueError(value)


def _read_preprocessing(root: Mapping, where: str, items) -> Tuple[int, Normalisation]:
    """Input size and normalisation from an albumentations transform list."""
    if not isinstance(items, list):
        raise ValueError(f"{where}.transforms is not a list")
    size = pad = None
    norm = None
    for i, item in enumerate(items):
        item = _resolve(root, item)
        name = _target_name(root, item) if isinstance(item, Mapping) else ""
        here = f"{where}.transforms[{i}] ({name or '?'})"
        if name == "LongestMaxSize":
            size = _get(root, item, "max_size", 1024)
            interp = _get(root, item, "interpolation", 1)
            if not isinstance(size, int) or isinstance(size, bool):
                raise ValueError(f"{here}: max_size must be one integer, got {size!r}")
            if interp != 1:
                raise ValueError(f"{here}: interpolation {interp!r} is not the baseline's "
                                 f"INTER_LINEAR (1); the seed preprocessing cannot reproduce it")
        elif name == "PadIfNeeded":
            h, w = _get(root, item, "min_height", 1024), _get(root, item, "min_width", 1024)
            if h != w:
                raise ValueError(f"{here}: a {h}x{w} pad is not square; the seed preprocessing "
                                 f"pads to a square")
            border = _get(root, item, "border_mode", 4)
            value = _get(root, item, "value", None)
            position = str(_get(root, item, "position", "center"))
            if border != 0 or value not in (None, 0, 0.0) or position != "center":
                raise ValueError(f"{here}: only a centred constant pad with zeros "
                                 f"(border_mode 0) is reproduced, got border_mode={border!r}, "
                                 f"value={value!r}, position={position!r}")
            pad = int(h)
        elif name == "Normalize":
            mean = _get(root, item, "mean", [0.485, 0.456, 0.406])
            std = _get(root, item, "std", [0.229, 0.224, 0.225])
            max_pixel = _get(root, item, "max_pixel_value", 255.0)
            try:
                norm = Normalisation(tuple(float(v) for v in mean), tuple(float(v) for v in std),
                                     float(max_pixel), "RGB", "albumentations")
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{here}: {exc}") from None
        elif name == "ToTensorV2":
            continue
        else:
            raise ValueError(f"{here}: the seed preprocessing reproduces LongestMaxSize, "
                             f"PadIfNeeded and Normalize only")
    if size is None or pad is None or norm is None:
        missing = [n for n, v in (("LongestMaxSize", size), ("PadIfNeeded", pad),
                                  ("Normalize", norm)) if v is None]
        raise ValueError(f"{where} has no {', '.join(missing)}; the seed preprocessing needs "
                         f"LongestMaxSize, PadIfNeeded and Normalize")
    if size != pad:
        raise ValueError(f"{where}: LongestMaxSize({size}) with PadIfNeeded({pad}) is not the "
                         f"baseline's square letterbox")
    return int(size), norm


def read_run_config(path: PathLike, target: Optional[str] = None) -> RunConfig:
    """Read a run's Hydra ``config.yaml``.

    Parameters
    ----------
    path : path
        The config file, or a run folder holding ``.hydra/config.yaml`` (or ``config.yaml``).
    target : str, optional
        Code version; detected from the post-processing keys when ``None``.

    Returns
    -------
    RunConfig

    Raises
    ------
    ValueError
        For a file that is not such a config or describes something the tool cannot
        reproduce (one line naming the key).
    """
    import yaml

    path = Path(path)
    if path.is_dir():
        for candidate in (path / ".hydra" / "config.yaml", path / "config.yaml"):
            if candidate.is_file():
                path = candidate
                break
        else:
            raise FileNotFoundError(f"{path}: no .hydra/config.yaml or config.yaml in this folder")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"config not found: {path}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file") from None
    try:
        root = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{path}: invalid YAML{where}") from None
    if not isinstance(root, dict) or not isinstance(root.get("models"), dict):
        raise ValueError(f"{path}: not a baseline run config (no 'models' section)")
    return _run_config_from_dict(root, str(path), target)


def _run_config_from_dict(root: Dict, where: str, target: Optional[str]) -> RunConfig:
    models = root["models"]
    out = RunConfig(path=where)
    enc = models.get("encoder")
    dec = models.get("decoder") or {}
    head = models.get("head") or {}
    if not isinstance(enc, dict):
        raise ValueError(f"{where}: no models.encoder section")
    for section, node, expected in (("encoder", enc, "TimmBackbone"), ("decoder", dec, "UNet"),
                                    ("head", head, "DBHead")):
        name = _target_name(root, node) if node else expected
        if name and name != expected:
            raise ValueError(f"{where}: models.{section} is {name}; only the baseline's "
                             f"{expected} is supported")
    model_name = _get(root, enc, "model_name", "resnet18")
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f"{where}: models.encoder.model_name must be a timm model name")
    postprocess = _resolve(root, head.get("postprocess") or {})
    if not isinstance(postprocess, dict):
        raise ValueError(f"{where}: models.head.postprocess is not a mapping")
    postprocess = {k: _resolve(root, v) for k, v in postprocess.items()}
    try:
        out.spec = DBNetSpec(
            encoder=model_name,
            select_features=_get(root, enc, "select_features", [1, 2, 3, 4]),
            in_channels=_get(root, dec, "in_channels", [64, 128, 256, 512]),
            strides=_get(root, dec, "strides", [4, 8, 16, 32]),
            inner_channels=int(_get(root, dec, "inner_channels", 256)),
            output_channels=int(_get(root, dec, "output_channels", 64)),
            decoder_bias=bool(_get(root, dec, "bias", False)),
            head_in_channels=int(_get(root, head, "in_channels", 256)),
            upscale=int(_get(root, head, "upscale", 4)),
            head_bias=bool(_get(root, head, "bias", False)),
            smooth=bool(_get(root, head, "smooth", False)),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: models: {exc}") from None
    if target is None:
        out.target = detect_target(postprocess)
        if out.target == "seed-original":
            out.notes.append("no unclip key in models.head.postprocess: the original baseline "
                             "assumed (box ratio 1.5, polygon ratio 2.0); juny79's HEAD uses one "
                             "unclip_ratio (2.0) for both: pass --target seed-head if you run it")
    else:
        if target not in TARGETS:
            raise ValueError(f"unknown code version {target!r}; choose one of {', '.join(TARGETS)}")
        out.target = target
    out.params, pp_notes = postprocess_params(postprocess, out.target)
    out.notes += pp_notes
    transforms = root.get("transforms")
    if isinstance(transforms, dict):
        for key in ("val_transform", "test_transform", "predict_transform"):
            node = _resolve(root, transforms.get(key))
            if isinstance(node, dict) and "transforms" in node:
                where_t = f"transforms.{key}"
                out.input_size, out.normalisation = _read_preprocessing(
                    root, f"{where}: {where_t}", _resolve(root, node["transforms"]))
                out.transform = where_t
                break
    if out.input_size is None:
        out.notes.append("the config has no transforms.val_transform: input size and "
                         "normalisation not read from it")
    return out


# --------------------------------------------------------------------------------------------
# Checkpoint files
# --------------------------------------------------------------------------------------------

def file_sha256(path: PathLike, chunk: int = 1 << 22) -> str:
    """sha256 of a file's bytes, as 64 hex digits."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                return h.hexdigest()
            h.update(block)


_WEIGHTS_ONLY_HINT = ("the checkpoint holds pickled Python objects besides tensors and loading "
                      "them can run code from the file; pass --allow-pickle if you trust it")


def _torch_load(path: Path, allow_pickle: bool):
    import pickle

    import torch

    with open(path, "rb") as fh:
        head = fh.read(4)
    # torch.save writes a zip archive (PK..) or, in the legacy format, a pickle (0x80 = PROTO).
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":
        raise ValueError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")

    def load(**extra):
        try:
            return torch.load(str(path), map_location="cpu", weights_only=not allow_pickle, **extra)
        except pickle.UnpicklingError as exc:
            if not allow_pickle and "Unsupported global" in str(exc):
                raise ValueError(f"{path}: {_WEIGHTS_ONLY_HINT}") from None
            raise ValueError(f"{path}: not a PyTorch checkpoint ({_weights_only_reason(exc)})") \
                from None
        except (EOFError, OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a PyTorch checkpoint ({_first_line(exc)})") from None

    if head[:4] == b"PK\x03\x04":
        try:
            return load(mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise ValueError(f"{path}: not a PyTorch checkpoint ({_first_line(exc)})") from None
    try:
        return load()
    except RuntimeError as exc:
        raise ValueError(f"{path}: not a PyTorch checkpoint ({_first_line(exc)})") from None


def _weights_only_reason(exc: BaseException) -> str:
    """The useful line of torch's long weights-only error ("Unsupported operand 0"...)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if ln.startswith("WeightsUnpickler error") and i + 1 < len(lines):
            return lines[i + 1][:200]
    return lines[0][:200] if lines else type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _is_tensor_map(obj) -> bool:
    import torch

    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def read_state_dict(path: PathLike, allow_pickle: bool = False) -> Dict[str, Any]:
    """The raw ``state_dict`` of a Lightning ``.ckpt``, a saved state_dict or a safetensors file.

    Parameters
    ----------
    path : path
        ``.ckpt`` / ``.pt`` / ``.pth`` (``torch.save``) or ``.safetensors``.
    allow_pickle : bool
        Let ``torch.load`` unpickle arbitrary objects (only for trusted files).

    Returns
    -------
    dict
        Key -> tensor, keys as saved (prefixes included).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ImportError("reading .safetensors files needs the safetensors package") from None
        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:  # safetensors raises its own error type
            raise ValueError(f"{path}: not a safetensors file ({_first_line(exc)})") from None
    obj = _torch_load(path, allow_pickle)
    if isinstance(obj, torch.nn.Module):
        return dict(obj.state_dict())
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model", "module"):
            inner = obj.get(key)
            if isinstance(inner, torch.nn.Module):
                return dict(inner.state_dict())
            if _is_tensor_map(inner):
                return dict(inner)
        if _is_tensor_map(obj):
            return dict(obj)
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) >= len(obj) - 1:
            return tensors
        raise ValueError(f"{path}: no state_dict in this checkpoint (top-level keys: "
                         f"{', '.join(map(str, list(obj)[:8]))})")
    raise ValueError(f"{path}: holds a {type(obj).__name__}, not a checkpoint or state_dict")


_ANCHOR = "decoder.inners.0.weight"


def _strip_prefix(sd: Mapping[str, Any], where: str) -> Tuple[Dict[str, Any], List[str], str]:
    """Keys relative to the ``OCRModel`` (``encoder.model.*``, ``decoder.*``, ``head.*``).

    Returns the stripped state dict, the keys left out (outside the model) and the prefix.
    """
    prefix = None
    for key in sd:
        if key.endswith(_ANCHOR):
            prefix = key[: -len(_ANCHOR)]
            if prefix in ("", "model.", "module.", "model.module.", "module.model."):
                break
    if prefix is None:
        raise ValueError(f"{where}: no DBNet weights found (no key ending in {_ANCHOR!r}); "
                         f"this is not a checkpoint of the baseline's OCRModel")
    out, other = {}, []
    for key, value in sd.items():
        if key.startswith(prefix):
            rel = key[len(prefix):]
            if rel.startswith(("encoder.", "decoder.", "head.")):
                out[rel] = value
                continue
            if rel.startswith("loss."):  # the loss module has no weights the network needs
                continue
        other.append(key)
    return out, other, prefix


# --------------------------------------------------------------------------------------------
# Backbone inference
# --------------------------------------------------------------------------------------------

def _shape(sd: Mapping, key: str) -> Optional[Tuple[int, ...]]:
    v = sd.get(key)
    return None if v is None else tuple(v.shape)


def _backbone_candidates(enc: Mapping[str, Any]) -> Tuple[str, List[str]]:
    """Family and ordered timm names worth trying for an encoder state dict."""
    keys = list(enc)

    def has(fragment):
        return any(fragment in k for k in keys)

    if has("incre_modules."):
        w = _shape(enc, "stage2.0.branches.0.0.conv1.weight")
        widths = [18, 30, 32, 40, 44, 48, 64]
        names = [f"hrnet_w{n}" for n in widths] + ["hrnet_w18_small", "hrnet_w18_small_v2"]
        if w is not None:
            names.sort(key=lambda n: 0 if n == f"hrnet_w{w[0]}" else 1)
        return "hrnet", names
    if "layer1.0.conv1.weight" in enc:
        bottleneck = "layer1.0.conv3.weight" in enc
        blocks = []
        for layer in range(1, 5):
            idx = {int(m.group(1)) for k in keys
                   for m in [re.match(rf"layer{layer}\.(\d+)\.", k)] if m}
            blocks.append(len(idx))
        depths = {(False, (2, 2, 2, 2)): 18, (False, (3, 4, 6, 3)): 34, (True, (2, 2, 2, 2)): 26,
                  (True, (3, 4, 6, 3)): 50, (True, (3, 4, 23, 3)): 101,
                  (True, (3, 8, 36, 3)): 152, (True, (3, 24, 36, 3)): 200}
        depth = depths.get((bottleneck, tuple(blocks)))
        deep = "conv1.0.weight" in enc
        se = "se" if has(".se.") else ""
        names: List[str] = []
        if depth is not None:
            c1, c2 = _shape(enc, "layer1.0.conv1.weight"), _shape(enc, "layer1.0.conv2.weight")
            groups = c1[0] // c2[1] if c1 and c2 and c2[1] else 1
            if groups > 1:
                base = f"{se}resnext{depth}{'d' if deep else ''}_{groups}x{c2[1]}d"
                names.append(base)
            elif bottleneck and c1 and c1[0] == 128:
                names.append(f"wide_resnet{depth}_2")
            else:
                base = f"{se}resnet{depth}"
                names += [base + s for s in ("d", "c", "s", "t")] if deep else [base]
        names += ["resnet18", "resnet34", "resnet50", "resnet101", "resnet18d", "resnet50d"]
        return "resnet", list(dict.fromkeys(names))
    if "conv_stem.weight" in enc:
        names = (["efficientnet_b3", "efficientnet_b4"]
                 + [f"efficientnet_b{i}" for i in (0, 1, 2, 5, 6, 7)]
                 + [f"efficientnet_lite{i}" for i in range(5)]
                 + ["efficientnetv2_rw_t", "efficientnetv2_rw_s", "efficientnetv2_rw_m",
                    "tf_efficientnetv2_s", "tf_efficientnetv2_m", "tf_efficientnetv2_l",
                    "mobilenetv3_large_100", "mobilenetv2_100"])
        return "efficientnet", names
    if has("conv_dw") and (has("stem_0.") or has("stem.0.")):
        dims = _shape(enc, "stem_0.weight") or _shape(enc, "stem.0.weight")
        by_dim = {40: ["convnext_atto"], 48: ["convnext_femto"], 64: ["convnext_pico"],
                  80: ["convnext_nano"], 96: ["convnext_tiny", "convnext_small"],
                  128: ["convnext_base"], 192: ["convnext_large"], 256: ["convnext_xlarge"]}
        names = list(by_dim.get(dims[0] if dims else 0, []))
        names += [n for v in by_dim.values() for n in v if n not in names]
        return "convnext", names
    if has("attn_block") or has("attn_grid"):
        return "maxvit", ["maxvit_tiny_rw_256", "maxvit_rmlp_tiny_rw_256", "maxvit_nano_rw_256",
                          "maxvit_tiny_tf_224", "maxvit_small_tf_224", "maxvit_base_tf_224"]
    if "patch_embed.proj.weight" in enc and has("attn.qkv"):
        return "swin", ["swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224",
                        "swin_base_patch4_window7_224", "swin_base_patch4_window12_384",
                        "swin_large_patch4_window7_224"]
    return "unknown", []


def _select_from_channels(channels: Sequence[int], wanted: Sequence[int]) -> Optional[List[int]]:
    """Feature indices whose channels are ``wanted``: the last contiguous run, else any."""
    n, k = len(channels), len(wanted)
    runs = [list(range(s, s + k)) for s in range(n - k + 1)
            if list(channels[s:s + k]) == list(wanted)]
    if runs:
        return runs[-1]
    from itertools import combinations

    combos = [list(c) for c in combinations(range(n), k) if [channels[i] for i in c] == list(wanted)]
    return combos[-1] if combos else None


def infer_spec(sd: Mapping[str, Any]) -> Tuple[DBNetSpec, List[str]]:
    """Infer the network structure from a state dict (keys relative to ``OCRModel``).

    The decoder and head are read from their weight shapes; the backbone is found by
    building likely timm candidates (on the ``meta`` device) and comparing every key and
    shape; ``select_features`` and the strides follow from the decoder's input channels.

    Returns
    -------
    spec : DBNetSpec
    notes : list of str
        What was assumed.

    Raises
    ------
    ValueError
        When no candidate backbone matches the weights exactly.
    """
    import timm

    from .dbnet import timm_feature_info

    notes: List[str] = []
    inners = []
    while f"decoder.inners.{len(inners)}.weight" in sd:
        inners.append(tuple(sd[f"decoder.inners.{len(inners)}.weight"].shape))
    in_channels = [s[1] for s in inners]
    inner_channels = inners[0][0]
    out0 = _shape(sd, "decoder.outers.0.0.weight") or _shape(sd, "decoder.outers.0.weight")
    output_channels = out0[0] if out0 else 64
    b0 = _shape(sd, "head.binarize.0.weight")
    if b0 is None:
        raise ValueError("the checkpoint has no head.binarize.0.weight: not a DB head")
    n_up = sum(1 for k, v in sd.items() if re.fullmatch(r"head\.binarize\.\d+\.weight", k)
               and len(v.shape) == 4 and tuple(v.shape[2:]) == (2, 2))
    enc = {k[len("encoder.model."):]: v for k, v in sd.items() if k.startswith("encoder.model.")}
    enc_shapes = {k: tuple(v.shape) for k, v in enc.items()}
    family, candidates = _backbone_candidates(enc)
    if not candidates:
        raise ValueError("cannot tell which timm backbone these weights belong to (first "
                         f"encoder key: {next(iter(enc), 'none')!r}); pass --config with the "
                         "run's .hydra/config.yaml")
    found = None
    for name in candidates:
        try:
            channels, reductions, shapes = timm_feature_info(name)
        except Exception:  # a name this timm version does not know
            continue
        if shapes == enc_shapes:
            found = (name, channels, reductions)
            break
    if found is None:
        raise ValueError(f"the encoder weights look like a {family} backbone but match none of "
                         f"{', '.join(candidates[:6])}... under timm {timm.__version__}; pass "
                         f"--config with the run's .hydra/config.yaml")
    name, channels, reductions = found
    select = _select_from_channels(channels, in_channels)
    if select is None:
        raise ValueError(f"{name} features have channels {channels}; the decoder expects "
                         f"{in_channels}: no select_features fits")
    strides = [reductions[i] for i in select]
    spec = DBNetSpec(encoder=name, select_features=select, in_channels=in_channels,
                     strides=strides, inner_channels=inner_channels,
                     output_channels=output_channels,
                     decoder_bias="decoder.inners.0.bias" in sd,
                     head_in_channels=b0[1], upscale=2 ** max(n_up, 1),
                     head_bias="head.binarize.0.bias" in sd,
                     smooth="head.thresh.3.1.weight" in sd)
    notes.append(f"backbone {name} inferred from the checkpoint's keys and shapes "
                 f"(timm {timm.__version__})")
    if name.startswith("efficientnet_b"):
        notes.append(f"tf_{name} has the same weight layout; pass --config if the run used it")
    notes.append(f"select_features {select} and strides {strides} inferred from the decoder's "
                 f"input channels {in_channels}")
    return spec, notes


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

@dataclass
class LoadedModel:
    """A network ready for inference and what is known about it.

    Attributes
    ----------
    model : torch.nn.Module
        :class:`~unclip_tuner.models.dbnet.DBNet` in evaluation mode, on the CPU.
    spec : DBNetSpec
        Its structure.
    run : RunConfig
        Input size, normalisation, post-processing parameters and code version (from the
        config, or assumed).
    sha256 : str
        sha256 of the checkpoint file.
    notes : list of str
        Every assumption made.
    description : dict
        JSON description for the cache manifest.
    """

    model: Any
    spec: DBNetSpec
    run: RunConfig
    sha256: str
    notes: List[str]
    description: Dict[str, Any]


def _fit_report(model_shapes: Mapping[str, Tuple], sd_shapes: Mapping[str, Tuple]) -> Optional[str]:
    missing = [k for k in model_shapes if k not in sd_shapes]
    unexpected = [k for k in sd_shapes if k not in model_shapes]
    wrong = [k for k in model_shapes if k in sd_shapes and tuple(sd_shapes[k]) != tuple(model_shapes[k])]
    if not (missing or unexpected or wrong):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) (first: {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) (first: {unexpected[0]})")
    if wrong:
        k = wrong[0]
        parts.append(f"{len(wrong)} mis-shaped (first: {k}: checkpoint {tuple(sd_shapes[k])} "
                     f"vs model {tuple(model_shapes[k])})")
    return "; ".join(parts)


def _unused_stage_keys(spec: DBNetSpec, model_keys: set, sd_shapes: Mapping[str, Tuple]) -> set:
    """Encoder keys the baseline's full backbone has but the pruned one (``out_indices``) lacks."""
    from .dbnet import timm_feature_info

    extra = {k for k in sd_shapes if k.startswith("encoder.model.") and k not in model_keys}
    if not extra:
        return set()
    _, _, full = timm_feature_info(spec.encoder)
    full = {"encoder.model." + k: v for k, v in full.items()}
    return {k for k in extra if k in full and tuple(full[k]) == tuple(sd_shapes[k])}


def _check_structure(model, spec: DBNetSpec, source: str) -> None:
    """The config's decoder inputs must be what the backbone gives (else the baseline fails)."""
    channels = model.encoder.channels()
    if spec.in_channels is not None and list(spec.in_channels) != channels:
        raise ValueError(f"{source}: models.decoder.in_channels {spec.in_channels} do not match "
                         f"{spec.encoder}'s channels {channels} for select_features "
                         f"{spec.select_features}")
    reductions = model.encoder.reductions()
    ratio = [b / a for a, b in zip(reductions, reductions[1:])]
    want = [b / a for a, b in zip(spec.strides, spec.strides[1:])]
    if ratio != want:
        raise ValueError(f"{source}: models.decoder.strides {spec.strides} do not match "
                         f"{spec.encoder}'s feature strides {reductions}")


def load_model(ckpt: PathLike, config: Optional[PathLike] = None, target: Optional[str] = None,
               allow_pickle: bool = False, find_config: bool = True) -> LoadedModel:
    """Build the network a checkpoint was trained as and load its weights strictly.

    Parameters
    ----------
    ckpt : path
        Lightning ``.ckpt`` or a saved state_dict (``.pt``/``.pth``/``.safetensors``).
    config : path, optional
        The run's Hydra ``config.yaml`` (or its run folder). When ``None`` and
        ``find_config`` is true, ``<run>/.hydra/config.yaml`` beside the checkpoint's
        folder is used if it exists; otherwise the structure is inferred from the weights.
    target : str, optional
        Code version of the post-processor; detected from the config when ``None``.
    allow_pickle : bool
        Let ``torch.load`` unpickle arbitrary objects (only for trusted files).
    find_config : bool
        Look for the run's config beside the checkpoint.

    Returns
    -------
    LoadedModel

    Raises
    ------
    ValueError
        One line: a file that is not a checkpoint, weights that do not fit the configured
        network (naming the first missing, unexpected or mis-shaped key and the installed
        timm version), a config the tool cannot reproduce.
    """
    import timm
    import torch

    from .dbnet import DBNet

    ckpt = Path(ckpt)
    raw = read_state_dict(ckpt, allow_pickle)
    sd, outside, _prefix = _strip_prefix(raw, str(ckpt))
    notes: List[str] = []
    if config is None and find_config:
        found = find_run_config(ckpt)
        if found is not None:
            config = found
            notes.append(f"run config found beside the checkpoint: {found}")
    if config is not None:
        run = read_run_config(config, target)
        spec = run.spec
        source = str(run.path)
    else:
        spec, inferred = infer_spec(sd)
        notes += inferred
        run = RunConfig(spec=spec)
        if target is not None:
            if target not in TARGETS:
                raise ValueError(f"unknown code version {target!r}; choose one of {', '.join(TARGETS)}")
            run.target = target
        else:
            run.notes.append("no run config: code version seed-original assumed and the user's "
                             "post-processing parameters are unknown")
        source = f"{ckpt} (structure inferred)"
    notes += run.notes

    try:
        model = DBNet(spec)
    except RuntimeError as exc:  # timm cannot build this backbone
        raise ValueError(f"{source}: timm {timm.__version__} cannot build {spec.encoder!r} "
                         f"({_first_line(exc)})") from None
    _check_structure(model, spec, source)
    model_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    sd_shapes = {k: tuple(v.shape) for k, v in sd.items()}
    unused = _unused_stage_keys(spec, set(model_shapes), sd_shapes)
    if unused:
        for k in unused:
            del sd[k]
            del sd_shapes[k]
        notes.append(f"{len(unused)} weights of backbone stages the decoder does not use were "
                     f"not loaded")
    report = _fit_report(model_shapes, sd_shapes)
    if report is not None:
        hint = ""
        if config is not None:
            try:
                guess, _ = infer_spec(sd)
                hint = (f"; the weights look like {guess.encoder} with select_features "
                        f"{guess.select_features}")
            except ValueError:
                pass
        raise ValueError(f"{ckpt.name} does not fit {spec.encoder} (select_features "
                         f"{spec.select_features}, from {source}): {report}{hint} "
                         f"[timm {timm.__version__}, torch {torch.__version__}]")
    model.load_state_dict(sd, strict=True)
    model.eval()
    if outside:
        notes.append(f"{len(outside)} checkpoint key(s) outside the model ignored "
                     f"(first: {outside[0]})")
    sha = file_sha256(ckpt)
    description = {
        "kind": "torch",
        "checkpoint": str(ckpt.resolve()),
        "checkpoint_sha256": sha,
        "config": run.path,
        "structure": "config" if config is not None else "inferred",
        "spec": spec.as_dict(),
        "timm": timm.__version__,
        "torch": torch.__version__,
        "assumed": list(notes),
    }
    return LoadedModel(model, spec, run, sha, notes, description)
