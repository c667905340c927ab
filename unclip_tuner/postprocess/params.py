"""Post-processing parameters: the one place where their defaults and limits live.

:class:`PostProcessParams` holds everything the DB decoder reads. Its defaults are the
baseline class's own (``DBPostProcessor.__init__``: ``thresh=0.3, box_thresh=0.7,
max_candidates=1000, use_polygon=False``, the box ratio 1.5 as ``unclip``'s default and
the polygon ratio 2.0 hard-coded), not the competition's configuration files, which
override several of them (``configs/preset/models/head/db_head.yaml``: ``thresh 0.3,
box_thresh 0.4, max_candidates 500, use_polygon True``; the winning fork used
``box_thresh 0.4, max_candidates 300, use_polygon False``). Read a run's Hydra config for
the values a model was validated with.

Three versions of the decoder exist in the wild, and they differ in which unclip ratios a
user can set (:data:`PRESETS`):

``seed-original``
    the original baseline: no ratio key; box 1.5 and polygon 2.0, fixed.
``seed-head``
    juny79's HEAD: one ``unclip_ratio`` (default 2.0) used by BOTH modes.
``karmakaryx``
    the winning team's fork: ``box_unclip_ratio`` (1.5) and ``polygon_unclip_ratio`` (2.0).

Two options come from other DB decoders and are off in all three versions:
``use_dilation`` (PaddleOCR's 2x2 dilation of the bitmap) and ``score_mode="slow"``
(PaddleOCR's mean over the raw contour instead of its approximation or rectangle).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace as _dc_replace
from typing import Any, Dict, Mapping, Tuple

__all__ = ["PostProcessParams", "CodeVersion", "PRESETS", "preset"]

SCORE_MODES = ("fast", "slow")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class PostProcessParams:
    """Parameters of the DB post-processing (immutable, validated on creation).

    Attributes
    ----------
    thresh : float
        Binarisation threshold, in (0, 1): a pixel is text when ``prob > float32(thresh)``.
    box_thresh : float
        Minimum box score, in [0, 1]: a candidate is dropped when ``box_thresh > score``.
    max_candidates : int
        Only the first ``max_candidates`` contours are looked at (>= 1).
    use_polygon : bool
        Polygon output (unclipped approximated contour) instead of a rotated rectangle.
    box_unclip_ratio : float
        Unclip ratio in box mode (> 0).
    polygon_unclip_ratio : float
        Unclip ratio in polygon mode (> 0).
    min_size : float
        Minimum short side of the rectangle before unclipping (box mode); the unclipped
        polygon's rectangle must reach ``min_size + 2`` (>= 0; 3 in every known version).
    use_dilation : bool
        Dilate the bitmap with a 2x2 square before finding contours (PaddleOCR option).
    score_mode : str
        ``"fast"``: mean over the approximated polygon / rectangle (the baseline);
        ``"slow"``: mean over the raw contour (PaddleOCR option).
    """

    thresh: float = 0.3
    box_thresh: float = 0.7
    max_candidates: int = 1000
    use_polygon: bool = False
    box_unclip_ratio: float = 1.5
    polygon_unclip_ratio: float = 2.0
    min_size: float = 3
    use_dilation: bool = False
    score_mode: str = "fast"

    def __post_init__(self) -> None:
        for name in ("thresh", "box_thresh", "box_unclip_ratio", "polygon_unclip_ratio", "min_size"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if not 0.0 < self.thresh < 1.0:
            raise ValueError(f"thresh must be in (0, 1), got {self.thresh!r}")
        if not 0.0 <= self.box_thresh <= 1.0:
            raise ValueError(f"box_thresh must be in [0, 1], got {self.box_thresh!r}")
        if self.box_unclip_ratio <= 0:
            raise ValueError(f"box_unclip_ratio must be > 0, got {self.box_unclip_ratio!r}")
        if self.polygon_unclip_ratio <= 0:
            raise ValueError(f"polygon_unclip_ratio must be > 0, got {self.polygon_unclip_ratio!r}")
        if self.min_size < 0:
            raise ValueError(f"min_size must be >= 0, got {self.min_size!r}")
        mc = self.max_candidates
        if isinstance(mc, bool) or not isinstance(mc, int):
            if _is_number(mc) and float(mc).is_integer():
                object.__setattr__(self, "max_candidates", int(mc))
            else:
                raise ValueError(f"max_candidates must be an integer, got {mc!r}")
        if self.max_candidates < 1:
            raise ValueError(f"max_candidates must be >= 1, got {self.max_candidates!r}")
        for name in ("use_polygon", "use_dilation"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.score_mode not in SCORE_MODES:
            raise ValueError(f"score_mode must be one of {', '.join(SCORE_MODES)}, got {self.score_mode!r}")

    @property
    def unclip_ratio(self) -> float:
        """The ratio the active mode uses (polygon or box)."""
        return self.polygon_unclip_ratio if self.use_polygon else self.box_unclip_ratio

    def replace(self, **changes: Any) -> "PostProcessParams":
        """A copy with some fields changed (validated); unknown names are an error."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ValueError(f"unknown post-processing parameter(s): {', '.join(unknown)}")
        return _dc_replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        """Plain ``{name: value}`` dict (YAML/JSON friendly, Python scalars only)."""
        out = asdict(self)
        for key in ("thresh", "box_thresh", "box_unclip_ratio", "polygon_unclip_ratio"):
            out[key] = float(out[key])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PostProcessParams":
        """Build from a mapping such as :meth:`to_dict` returns; unknown keys are an error.

        Missing keys take the defaults. A YAML ``unclip_ratio`` key (the one-ratio code
        version) is not accepted here: use :meth:`CodeVersion.params` for that version.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"post-processing parameters must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown post-processing parameter(s): {', '.join(map(str, unknown))}")
        return cls(**dict(data))


@dataclass(frozen=True)
class CodeVersion:
    """One version of the baseline's decoder: its defaults and the ratio keys it accepts.

    Attributes
    ----------
    name : str
    description : str
    ratio_keys : tuple of str
        The Hydra keys under ``models.head.postprocess`` that set unclip ratios
        (empty when the version has none).
    shared_ratio : bool
        True when one ratio drives both modes.
    defaults : PostProcessParams
        The class defaults of that version.
    """

    name: str
    description: str
    ratio_keys: Tuple[str, ...]
    shared_ratio: bool
    defaults: PostProcessParams

    def params(self, **overrides: Any) -> PostProcessParams:
        """Parameters as this version would run them, from its own keyword names.

        ``seed-head`` takes ``unclip_ratio`` (applied to both modes); ``karmakaryx`` takes
        ``box_unclip_ratio`` / ``polygon_unclip_ratio``; ``seed-original`` takes no ratio.
        """
        kw = dict(overrides)
        if self.shared_ratio and "unclip_ratio" in kw:
            r = kw.pop("unclip_ratio")
            kw["box_unclip_ratio"] = r
            kw["polygon_unclip_ratio"] = r
        bad = {"box_unclip_ratio", "polygon_unclip_ratio", "unclip_ratio"} & (set(kw) - set(self._accepted()))
        if bad:
            raise ValueError(f"code version {self.name!r} has no {', '.join(sorted(bad))} parameter")
        return self.defaults.replace(**kw)

    def _accepted(self) -> Tuple[str, ...]:
        if self.shared_ratio:
            return ("box_unclip_ratio", "polygon_unclip_ratio")
        return self.ratio_keys

    def check(self, params: PostProcessParams) -> None:
        """Raise ``ValueError`` when ``params`` cannot be run by this code version.

        With one shared ratio (``seed-head``) only the active mode's ratio reaches the
        decoder, so the two ratios may differ here; an export writes the active one.
        """
        d = self.defaults
        if not self.ratio_keys:
            if (params.box_unclip_ratio, params.polygon_unclip_ratio) != (d.box_unclip_ratio, d.polygon_unclip_ratio):
                raise ValueError(
                    f"code version {self.name!r} has fixed unclip ratios "
                    f"(box {d.box_unclip_ratio}, polygon {d.polygon_unclip_ratio}); editing the code is needed"
                )
        if params.use_dilation or params.score_mode != "fast":
            raise ValueError(f"code version {self.name!r} has no dilation and no slow score mode")


PRESETS: Dict[str, CodeVersion] = {
    "seed-original": CodeVersion(
        name="seed-original",
        description="original baseline: polygon ratio fixed at 2.0, box ratio 1.5 (unclip's default)",
        ratio_keys=(),
        shared_ratio=False,
        defaults=PostProcessParams(),
    ),
    "seed-head": CodeVersion(
        name="seed-head",
        description="juny79/ocr HEAD: one unclip_ratio (default 2.0) used by box AND polygon mode",
        ratio_keys=("unclip_ratio",),
        shared_ratio=True,
        defaults=PostProcessParams(box_unclip_ratio=2.0, polygon_unclip_ratio=2.0),
    ),
    "karmakaryx": CodeVersion(
        name="karmakaryx",
        description="karmakaryx/ocr-receipt-text-detection: box_unclip_ratio 1.5, polygon_unclip_ratio 2.0",
        ratio_keys=("box_unclip_ratio", "polygon_unclip_ratio"),
        shared_ratio=False,
        defaults=PostProcessParams(box_unclip_ratio=1.5, polygon_unclip_ratio=2.0),
    ),
}


def preset(name: str) -> CodeVersion:
    """The :class:`CodeVersion` called ``name`` (``seed-original``, ``seed-head``, ``karmakaryx``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown code version {name!r}; known: {', '.join(PRESETS)}") from None


def _coerce(name: str, text: str) -> Any:
    """Convert the text of ``--set name=text`` to the type of field ``name``."""
    kinds = {f.name: f.type for f in fields(PostProcessParams)}
    if name not in kinds:
        raise ValueError(f"unknown post-processing parameter {name!r}; known: {', '.join(kinds)}")
    kind = str(kinds[name])
    t = text.strip()
    if kind == "bool":
        low = t.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name} must be true or false, not {text!r}")
    if kind == "int":
        try:
            return int(t)
        except ValueError:
            raise ValueError(f"{name} must be an integer, not {text!r}") from None
    if kind == "float":
        try:
            return float(t)
        except ValueError:
            raise ValueError(f"{name} must be a number, not {text!r}") from None
    return t


def _expand_unclip_ratio(data: Dict[str, Any], override: bool) -> Dict[str, Any]:
    """Map the one-ratio code version's ``unclip_ratio`` key onto both ratios.

    With ``override`` (``--set unclip_ratio=...``) both ratios take the value; otherwise
    (a parameter file) explicit ``box_unclip_ratio`` / ``polygon_unclip_ratio`` keys win.
    """
    if "unclip_ratio" in data:
        r = data.pop("unclip_ratio")
        for key in ("box_unclip_ratio", "polygon_unclip_ratio"):
            if override:
                data[key] = r
            else:
                data.setdefault(key, r)
    return data


def read_params_file(path) -> Dict[str, Any]:
    """A parameter file as a dict: a flat mapping (``best.yaml`` of ``tune-post``, YAML or
    JSON) or one under a top-level ``params:`` key; ``unclip_ratio`` sets both ratios.
    """
    import yaml

    try:
        with open(path, "r", encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ValueError(f"{path}: parameter file not found") from None
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML/JSON ({str(exc).splitlines()[0]})") from None
    if isinstance(data, Mapping) and isinstance(data.get("params"), Mapping):
        data = data["params"]
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping of parameter names to values")
    return _expand_unclip_ratio(dict(data), override=False)


def parse_assignments(assignments) -> Dict[str, Any]:
    """``["thresh=0.22", "use_polygon=true"]`` -> typed ``{name: value}``.

    Values are converted to the field's type; ``unclip_ratio=...`` sets both ratios.
    """
    changes: Dict[str, Any] = {}
    for a in assignments:
        key, sep, value = a.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {a!r}")
        if key == "unclip_ratio":
            changes[key] = _coerce("polygon_unclip_ratio", value)
        else:
            changes[key] = _coerce(key, value)
    return _expand_unclip_ratio(changes, override=True)


def params_from_sources(base: "PostProcessParams | None" = None, params_file=None,
                        assignments=()) -> PostProcessParams:
    """Parameters from a YAML/JSON file and ``name=value`` assignments, in that order.

    Parameters
    ----------
    base : PostProcessParams, optional
        Starting point (the defaults when omitted).
    params_file : path, optional
        See :func:`read_params_file`.
    assignments : sequence of str
        ``name=value`` overrides (``--set thresh=0.22``), see :func:`parse_assignments`.
    """
    p = base if base is not None else PostProcessParams()
    if params_file is not None:
        p = p.replace(**read_params_file(params_file))
    changes = parse_assignments(assignments)
    return p.replace(**changes) if changes else p
