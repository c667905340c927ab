"""The search space of ``tune-post``: the one place where it is defined.

A space holds a *mode* (``polygon`` or ``box``: the decoder's ``use_polygon``), the
dimensions searched, and the values held fixed. Every numeric dimension is a **grid**
``low:high:step`` written in decimal: the sampler draws an integer index ``i`` and the value
is the exact decimal ``low + i * step`` converted to the nearest float, so ``0.1 + 3 * 0.01``
is ``0.13`` and never ``0.13000000000000003``. Grids let the fast engine reuse its per-image
work: every trial at ``thresh=0.22`` shares the same bitmaps and contours.

Defaults (:data:`DEFAULT_GRIDS`):

======================  ===========================  ===========================
parameter               grid                         searched
======================  ===========================  ===========================
thresh                  0.10 .. 0.40 step 0.01       always (unless fixed)
box_thresh              0.20 .. 0.80 step 0.01       always (unless fixed)
polygon_unclip_ratio    1.20 .. 2.60 step 0.05       in polygon mode
box_unclip_ratio        1.20 .. 2.40 step 0.05       in box mode
max_candidates          100 .. 1000 step 100         opt-in
use_dilation            false, true                  opt-in
score_mode              fast, slow                   opt-in
======================  ===========================  ===========================

Sources, later ones winning: the defaults, a YAML file (``--space``), ``--param`` and
``--fix`` options. A YAML file looks like::

    mode: polygon
    params:
      thresh: 0.15:0.35:0.005          # or {low: 0.15, high: 0.35, step: 0.005}
      use_dilation: [false, true]      # opt-in with explicit choices
      max_candidates: true             # opt-in with the default grid
      box_thresh: false                # not searched: keeps the first trial's value
    fix:
      min_size: 3

Every mistake (unknown parameter, ``low > high``, a step that does not divide the range, a
ratio <= 0, a threshold outside its interval...) raises :class:`SpaceError` with one line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..postprocess.params import PostProcessParams

__all__ = [
    "SpaceError", "GridDim", "ChoiceDim", "SearchSpace", "DEFAULT_GRIDS", "OPT_IN", "MODES",
    "build_space", "parse_param", "parse_fix", "load_space_file",
]

MODES = ("polygon", "box")

#: Default grids ``(low, high, step)`` as decimal strings.
DEFAULT_GRIDS: Dict[str, Tuple[str, str, str]] = {
    "thresh": ("0.10", "0.40", "0.01"),
    "box_thresh": ("0.20", "0.80", "0.01"),
    "polygon_unclip_ratio": ("1.20", "2.60", "0.05"),
    "box_unclip_ratio": ("1.20", "2.40", "0.05"),
}

#: Parameters searched only when asked for, with what asking without values means.
OPT_IN: Dict[str, Union[Tuple[str, str, str], Tuple[Any, ...]]] = {
    "max_candidates": ("100", "1000", "100"),
    "use_dilation": (False, True),
    "score_mode": ("fast", "slow"),
}

_CHOICE_PARAMS = ("use_dilation", "score_mode")
_INT_PARAMS = ("max_candidates",)
_RATIO_OF_MODE = {"polygon": "polygon_unclip_ratio", "box": "box_unclip_ratio"}
#: Parameters that may be fixed (``use_polygon`` is the mode).
_FIXABLE = ("thresh", "box_thresh", "max_candidates", "box_unclip_ratio", "polygon_unclip_ratio",
            "min_size", "use_dilation", "score_mode")
#: Order of the dimensions (and of the report's columns).
_ORDER = ("thresh", "box_thresh", "polygon_unclip_ratio", "box_unclip_ratio", "max_candidates",
          "use_dilation", "score_mode")
#: Largest grid accepted (a typo such as step 0.0001 over 0..1 would otherwise be silent).
MAX_GRID = 100_000


class SpaceError(ValueError):
    """A search space that cannot be used; the message is one line naming the culprit."""


# --------------------------------------------------------------------------------------------
# Dimensions
# --------------------------------------------------------------------------------------------

def _dec(value: Any, what: str) -> Decimal:
    """A decimal from a string or a number, exactly as written (``0.1`` is ``Decimal('0.1')``)."""
    if isinstance(value, bool):
        raise SpaceError(f"{what}: expected a number, got {value!r}")
    text = repr(value) if isinstance(value, float) else str(value).strip()
    try:
        d = Decimal(text)
    except (InvalidOperation, ValueError):
        raise SpaceError(f"{what}: {value!r} is not a number") from None
    if not d.is_finite():
        raise SpaceError(f"{what}: {value!r} is not a finite number")
    return d


def _dec_text(d: Decimal) -> str:
    """Canonical text of a decimal: ``0.10`` and ``0.1`` are both ``'0.1'``."""
    t = format(d.normalize(), "f")
    return "0" if t in ("-0", "") else t


@dataclass(frozen=True)
class GridDim:
    """A numeric grid ``low, low + step, ..., high`` sampled through an integer index.

    Attributes
    ----------
    name : str
        The :class:`PostProcessParams` field.
    low, high, step : Decimal
        The grid, exactly as written.
    integer : bool
        Values are ``int`` (``max_candidates``) instead of ``float``.
    """

    name: str
    low: Decimal
    high: Decimal
    step: Decimal
    integer: bool = False

    @property
    def size(self) -> int:
        """Number of grid values."""
        return int((self.high - self.low) / self.step) + 1

    @property
    def param_name(self) -> str:
        """Name of the integer index in the Optuna study."""
        return f"{self.name}_index"

    def value(self, index: int) -> Union[int, float]:
        """The grid value at ``index``: the exact decimal ``low + index * step``, as a number."""
        if not 0 <= index < self.size:
            raise IndexError(f"{self.name}: index {index} outside 0..{self.size - 1}")
        d = self.low + int(index) * self.step
        return int(d) if self.integer else float(d)

    def values(self) -> List[Union[int, float]]:
        return [self.value(i) for i in range(self.size)]

    def index_of(self, value: Any) -> Optional[int]:
        """The index whose value equals ``value`` (as its shortest decimal), or ``None``."""
        try:
            d = _dec(value, self.name)
        except SpaceError:
            return None
        q, r = divmod(d - self.low, self.step)
        if r != 0 or not 0 <= q < self.size:
            return None
        return int(q)

    def nearest_index(self, value: Any) -> int:
        """The index of the grid value closest to ``value`` (clamped to the grid)."""
        d = _dec(value, self.name)
        i = int(((d - self.low) / self.step).to_integral_value())
        return min(max(i, 0), self.size - 1)

    def suggest(self, trial) -> Union[int, float]:
        return self.value(trial.suggest_int(self.param_name, 0, self.size - 1))

    def describe(self) -> str:
        return f"{_dec_text(self.low)}:{_dec_text(self.high)}:{_dec_text(self.step)} ({self.size} values)"

    def to_dict(self) -> Dict[str, Any]:
        return {"grid": [_dec_text(self.low), _dec_text(self.high), _dec_text(self.step)]}


@dataclass(frozen=True)
class ChoiceDim:
    """A categorical dimension (``use_dilation``, ``score_mode``)."""

    name: str
    choices: Tuple[Any, ...]

    @property
    def size(self) -> int:
        return len(self.choices)

    @property
    def param_name(self) -> str:
        return self.name

    def value(self, index: int) -> Any:
        return self.choices[index]

    def values(self) -> List[Any]:
        return list(self.choices)

    def index_of(self, value: Any) -> Optional[int]:
        for i, c in enumerate(self.choices):
            if type(c) is type(value) and c == value:
                return i
        return None

    def nearest_index(self, value: Any) -> int:
        i = self.index_of(value)
        return 0 if i is None else i

    def suggest(self, trial) -> Any:
        return trial.suggest_categorical(self.param_name, list(self.choices))

    def describe(self) -> str:
        return ", ".join(_fmt_choice(c) for c in self.choices)

    def to_dict(self) -> Dict[str, Any]:
        return {"choices": list(self.choices)}


Dim = Union[GridDim, ChoiceDim]


def _fmt_choice(c: Any) -> str:
    return str(c).lower() if isinstance(c, bool) else str(c)


# --------------------------------------------------------------------------------------------
# The space
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SearchSpace:
    """What ``tune-post`` searches, and what it holds fixed.

    Attributes
    ----------
    mode : {"polygon", "box"}
        ``use_polygon`` of every trial (the first trial excepted: it is the user's own).
    dims : tuple of GridDim or ChoiceDim
        The searched dimensions, in a fixed order.
    fixed : dict
        Values that replace the base parameters' in every searched trial (``--fix``).
    """

    mode: str
    dims: Tuple[Dim, ...]
    fixed: Tuple[Tuple[str, Any], ...] = ()

    @property
    def names(self) -> List[str]:
        return [d.name for d in self.dims]

    @property
    def fixed_dict(self) -> Dict[str, Any]:
        return dict(self.fixed)

    def dim(self, name: str) -> Dim:
        for d in self.dims:
            if d.name == name:
                return d
        raise KeyError(name)

    @property
    def ratio_name(self) -> str:
        """The unclip ratio this mode uses."""
        return _RATIO_OF_MODE[self.mode]

    def base(self, params: PostProcessParams) -> PostProcessParams:
        """``params`` with the mode and the fixed values applied: what unsearched fields take."""
        try:
            return params.replace(use_polygon=self.mode == "polygon", **self.fixed_dict)
        except ValueError as exc:
            raise SpaceError(f"--fix: {exc}") from None

    def suggest(self, trial) -> Dict[str, Any]:
        """Ask ``trial`` for every dimension; returns ``{parameter: value}``."""
        return {d.name: d.suggest(trial) for d in self.dims}

    def params_for(self, base: PostProcessParams, values: Mapping[str, Any]) -> PostProcessParams:
        """The parameters of a trial: the base (see :meth:`base`) with the sampled values."""
        return self.base(base).replace(**dict(values))

    def indices_of(self, params: PostProcessParams) -> Tuple[Dict[str, Any], List[str]]:
        """Sampler coordinates of ``params`` and the names of the dimensions it is off-grid in.

        An off-grid value is given the nearest grid point: the sampler learns from the trial
        as if it were there, while the trial evaluates (and reports) the exact value.
        """
        coords: Dict[str, Any] = {}
        off: List[str] = []
        for d in self.dims:
            v = getattr(params, d.name)
            i = d.index_of(v)
            if i is None:
                off.append(d.name)
                i = d.nearest_index(v)
            coords[d.param_name] = i if isinstance(d, GridDim) else d.value(i)
        return coords, off

    def to_dict(self) -> Dict[str, Any]:
        """Canonical description (what the study name's hash covers)."""
        return {"mode": self.mode, "dims": {d.name: d.to_dict() for d in self.dims},
                "fixed": {k: v for k, v in self.fixed}}

    def digest(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def n_points(self) -> int:
        n = 1
        for d in self.dims:
            n *= d.size
        return n

    def describe(self) -> List[str]:
        """Human-readable lines: one per dimension, then the fixed values."""
        lines = [f"mode: {self.mode}"]
        for d in self.dims:
            lines.append(f"  {d.name:<22} {d.describe()}")
        for k, v in self.fixed:
            lines.append(f"  {k:<22} fixed at {_fmt_choice(v)}")
        return lines


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------

def _known(name: str, where: str) -> None:
    if name == "use_polygon":
        raise SpaceError(f"{where}: use_polygon is chosen with --mode polygon|box (or 'mode:' in "
                         f"the space file), not searched or fixed")
    if name not in _ORDER and name not in _FIXABLE:
        known = ", ".join(_ORDER)
        raise SpaceError(f"{where}: unknown parameter {name!r} (searchable: {known}; "
                         f"fixable also: min_size)")


def _grid(name: str, low: Any, high: Any, step: Any, where: str) -> GridDim:
    lo = _dec(low, f"{where}: {name} low")
    hi = _dec(high, f"{where}: {name} high")
    st = _dec(step, f"{where}: {name} step")
    if lo > hi:
        raise SpaceError(f"{where}: {name} min {_dec_text(lo)} > max {_dec_text(hi)}")
    if st <= 0:
        raise SpaceError(f"{where}: {name} step must be > 0, got {_dec_text(st)}")
    if (hi - lo) % st != 0:
        raise SpaceError(f"{where}: {name} step {_dec_text(st)} does not divide the range "
                         f"{_dec_text(lo)}..{_dec_text(hi)} (width {_dec_text(hi - lo)})")
    integer = name in _INT_PARAMS
    if integer and any(v != v.to_integral_value() for v in (lo, hi, st)):
        raise SpaceError(f"{where}: {name} takes whole numbers, got "
                         f"{_dec_text(lo)}:{_dec_text(hi)}:{_dec_text(st)}")
    dim = GridDim(name, lo, hi, st, integer)
    if dim.size > MAX_GRID:
        raise SpaceError(f"{where}: {name} grid has {dim.size} values (at most {MAX_GRID}); "
                         f"use a larger step")
    if name.endswith("unclip_ratio") and lo <= 0:
        raise SpaceError(f"{where}: {name} must be > 0, got min {_dec_text(lo)}")
    # The end points must be valid parameter values (thresh in (0, 1), box_thresh in [0, 1]...).
    for end in (dim.value(0), dim.value(dim.size - 1)):
        try:
            PostProcessParams().replace(**{name: end})
        except ValueError as exc:
            raise SpaceError(f"{where}: {exc}") from None
    return dim


def _parse_bool(text: Any, where: str) -> bool:
    if isinstance(text, bool):
        return text
    t = str(text).strip().lower()
    if t in ("true", "yes", "1", "on"):
        return True
    if t in ("false", "no", "0", "off"):
        return False
    raise SpaceError(f"{where}: expected true or false, got {text!r}")


def _choices(name: str, items: Sequence[Any], where: str) -> ChoiceDim:
    if not items:
        raise SpaceError(f"{where}: {name} needs at least one choice")
    if name == "use_dilation":
        vals = tuple(_parse_bool(x, f"{where}: {name}") for x in items)
    else:
        vals = tuple(str(x).strip() for x in items)
        for v in vals:
            try:
                PostProcessParams(score_mode=v)
            except ValueError as exc:
                raise SpaceError(f"{where}: {exc}") from None
    if len(set(vals)) != len(vals):
        raise SpaceError(f"{where}: {name} lists a choice twice")
    return ChoiceDim(name, vals)


def _dim_from_text(name: str, text: Optional[str], where: str) -> Dim:
    """A dimension from ``--param`` text after ``name=`` (``None``: the default range)."""
    if name in _CHOICE_PARAMS:
        if text is None or text.strip() == "":
            return ChoiceDim(name, tuple(OPT_IN[name]))
        return _choices(name, [t for t in text.split(",")], where)
    default = DEFAULT_GRIDS.get(name) or OPT_IN.get(name)
    if name not in DEFAULT_GRIDS and name not in OPT_IN:
        raise SpaceError(f"{where}: {name} cannot be searched (fix it with --fix {name}=VALUE)")
    if text is None or text.strip() == "":
        return _grid(name, *default, where)
    parts = [p.strip() for p in text.split(":")]
    if len(parts) == 2:
        parts.append(default[2])
    if len(parts) != 3 or any(p == "" for p in parts):
        raise SpaceError(f"{where}: {name} must be LOW:HIGH:STEP (or LOW:HIGH), got {text!r}")
    return _grid(name, parts[0], parts[1], parts[2], where)


def _dim_from_yaml(name: str, node: Any, where: str) -> Optional[Dim]:
    """A dimension from a YAML ``params`` entry (``None``/``false``: not searched)."""
    if node is None or node is False:
        return None
    if node is True:
        return _dim_from_text(name, None, where)
    if isinstance(node, str):
        return _dim_from_text(name, node, where)
    if isinstance(node, list):
        if name not in _CHOICE_PARAMS:
            raise SpaceError(f"{where}: {name} is a grid: write LOW:HIGH:STEP or "
                             f"{{low, high, step}}, not a list")
        return _choices(name, node, where)
    if isinstance(node, dict):
        if name in _CHOICE_PARAMS:
            if set(node) != {"choices"}:
                raise SpaceError(f"{where}: {name} takes a list of choices")
            return _choices(name, list(node["choices"] or []), where)
        extra = sorted(set(node) - {"low", "high", "step"})
        if extra:
            raise SpaceError(f"{where}: {name}: unknown key(s) {', '.join(map(str, extra))} "
                             f"(expected low, high, step)")
        default = DEFAULT_GRIDS.get(name) or OPT_IN.get(name)
        if default is None:
            raise SpaceError(f"{where}: {name} cannot be searched")
        return _grid(name, node.get("low", default[0]), node.get("high", default[1]),
                     node.get("step", default[2]), where)
    raise SpaceError(f"{where}: {name}: cannot read {node!r} as a range")


def _fix_value(name: str, value: Any, where: str) -> Any:
    if name in ("use_dilation",):
        return _parse_bool(value, f"{where}: {name}")
    if name == "score_mode":
        v = str(value).strip()
        try:
            PostProcessParams(score_mode=v)
        except ValueError as exc:
            raise SpaceError(f"{where}: {exc}") from None
        return v
    d = _dec(value, f"{where}: {name}")
    out: Union[int, float]
    if name == "max_candidates":
        if d != d.to_integral_value():
            raise SpaceError(f"{where}: max_candidates must be a whole number, got {value!r}")
        out = int(d)
    else:
        out = float(d)
    try:
        PostProcessParams().replace(**{name: out})
    except ValueError as exc:
        raise SpaceError(f"{where}: {exc}") from None
    return out


def parse_param(spec: str) -> Tuple[str, Dim]:
    """Parse one ``--param`` option: ``name``, ``name=LOW:HIGH:STEP``, ``name=a,b``."""
    name, sep, text = spec.partition("=")
    name = name.strip()
    where = f"--param {spec}"
    _known(name, where)
    return name, _dim_from_text(name, text if sep else None, where)


def parse_fix(spec: str) -> Tuple[str, Any]:
    """Parse one ``--fix`` option: ``name=VALUE``."""
    name, sep, text = spec.partition("=")
    name = name.strip()
    where = f"--fix {spec}"
    if not sep or not text.strip():
        raise SpaceError(f"{where}: expected NAME=VALUE")
    _known(name, where)
    if name not in _FIXABLE:
        raise SpaceError(f"{where}: {name} cannot be fixed")
    return name, _fix_value(name, text, where)


def load_space_file(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a space YAML file into ``{"mode", "params": {name: Dim|None}, "fix": {...}}``."""
    import yaml

    path = Path(path)
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpaceError(f"{where}: no such space file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"{where}: cannot be read ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise SpaceError(f"{where}: invalid YAML{at}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpaceError(f"{where}: expected a mapping with 'mode', 'params' and 'fix' keys")
    extra = sorted(set(raw) - {"mode", "params", "fix"})
    if extra:
        raise SpaceError(f"{where}: unknown key(s) {', '.join(map(str, extra))} "
                         f"(expected mode, params, fix)")
    mode = raw.get("mode")
    if mode is not None and mode not in MODES:
        raise SpaceError(f"{where}: mode must be polygon or box, got {mode!r}")
    params = raw.get("params") or {}
    fix = raw.get("fix") or {}
    if not isinstance(params, dict) or not isinstance(fix, dict):
        raise SpaceError(f"{where}: 'params' and 'fix' must be mappings")
    out_params: Dict[str, Optional[Dim]] = {}
    for name, node in params.items():
        name = str(name)
        _known(name, f"{where}: params")
        out_params[name] = _dim_from_yaml(name, node, f"{where}: params")
    out_fix: Dict[str, Any] = {}
    for name, value in fix.items():
        name = str(name)
        _known(name, f"{where}: fix")
        if name not in _FIXABLE:
            raise SpaceError(f"{where}: fix: {name} cannot be fixed")
        out_fix[name] = _fix_value(name, value, f"{where}: fix")
    both = sorted(n for n, d in out_params.items() if d is not None and n in out_fix)
    if both:
        raise SpaceError(f"{where}: {both[0]} is both searched (params) and fixed (fix)")
    return {"mode": mode, "params": out_params, "fix": out_fix}


def build_space(mode: Optional[str] = None, space_file: Optional[Union[str, Path]] = None,
                params: Sequence[str] = (), fix: Sequence[str] = ()) -> SearchSpace:
    """The search space from the defaults, a YAML file and ``--param`` / ``--fix`` options.

    Parameters
    ----------
    mode : {"polygon", "box"}, optional
        ``--mode``; default: the file's ``mode``, else ``polygon``.
    space_file : path, optional
        ``--space`` YAML file.
    params : sequence of str
        ``--param`` options (``name``, ``name=LOW:HIGH:STEP``, ``name=a,b``).
    fix : sequence of str
        ``--fix`` options (``name=VALUE``).

    Raises
    ------
    SpaceError
        One line naming the option or file entry at fault.
    """
    file = load_space_file(space_file) if space_file is not None else \
        {"mode": None, "params": {}, "fix": {}}
    mode = mode or file["mode"] or "polygon"
    if mode not in MODES:
        raise SpaceError(f"--mode must be polygon or box, got {mode!r}")
    ratio = _RATIO_OF_MODE[mode]
    other_ratio = _RATIO_OF_MODE["box" if mode == "polygon" else "polygon"]

    dims: Dict[str, Optional[Dim]] = {
        "thresh": _grid("thresh", *DEFAULT_GRIDS["thresh"], "defaults"),
        "box_thresh": _grid("box_thresh", *DEFAULT_GRIDS["box_thresh"], "defaults"),
        ratio: _grid(ratio, *DEFAULT_GRIDS[ratio], "defaults"),
    }
    fixed: Dict[str, Any] = {}
    for name, dim in file["params"].items():
        dims[name] = dim
        fixed.pop(name, None)
    for name, value in file["fix"].items():
        fixed[name] = value
        dims.pop(name, None)

    cli_params: Dict[str, Dim] = {}
    for spec in params:
        name, dim = parse_param(spec)
        if name in cli_params:
            raise SpaceError(f"--param {spec}: {name} is given twice")
        cli_params[name] = dim
    cli_fix: Dict[str, Any] = {}
    for spec in fix:
        name, value = parse_fix(spec)
        if name in cli_fix:
            raise SpaceError(f"--fix {spec}: {name} is given twice")
        if name in cli_params:
            raise SpaceError(f"--fix {spec}: {name} is also given with --param")
        cli_fix[name] = value
    for name, dim in cli_params.items():
        dims[name] = dim
        fixed.pop(name, None)
    for name, value in cli_fix.items():
        fixed[name] = value
        dims.pop(name, None)

    if dims.get(other_ratio) is not None:
        raise SpaceError(f"{other_ratio} is not used in {mode} mode: search {ratio} instead, "
                         f"or pass --mode {'box' if mode == 'polygon' else 'polygon'}")
    ordered = tuple(dims[n] for n in _ORDER if dims.get(n) is not None)
    if not ordered:
        raise SpaceError("nothing to search: every parameter is fixed")
    fixed_items = tuple((n, fixed[n]) for n in _FIXABLE if n in fixed)
    space = SearchSpace(mode, ordered, fixed_items)
    # The fixed values must be valid together with any searched value.
    space.base(PostProcessParams())
    return space
