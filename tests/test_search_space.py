"""The search space: defaults, exact grid values, overrides, and one-line errors."""

from __future__ import annotations

from decimal import Decimal

import pytest

from unclip_tuner.postprocess.params import PostProcessParams
from unclip_tuner.search.space import (ChoiceDim, GridDim, SpaceError, build_space, parse_fix,
                                       parse_param)


def test_defaults_polygon_and_box():
    s = build_space()
    assert s.mode == "polygon"
    assert s.names == ["thresh", "box_thresh", "polygon_unclip_ratio"]
    assert [s.dim(n).size for n in s.names] == [31, 61, 29]
    b = build_space(mode="box")
    assert b.names == ["thresh", "box_thresh", "box_unclip_ratio"]
    assert b.dim("box_unclip_ratio").size == 25
    assert b.dim("box_unclip_ratio").values()[-1] == 2.4


def test_grid_values_are_exact_decimals():
    s = build_space(params=["thresh=0.15:0.35:0.005"])
    for name in s.names:
        d = s.dim(name)
        for i, v in enumerate(d.values()):
            exact = d.low + i * d.step
            # the float nearest the exact decimal: its shortest repr is the decimal itself
            assert v == float(exact)
            assert Decimal(repr(v)) == exact, (name, i, v)
            assert d.index_of(v) == i
    t = s.dim("thresh")
    assert t.size == 41 and t.value(1) == 0.155 and t.value(40) == 0.35
    # a naive accumulation drifts; the grid does not
    assert 0.1 + 2 * 0.1 != 0.3
    assert build_space(params=["thresh=0.1:0.3:0.1"]).dim("thresh").value(2) == 0.3


def test_index_and_off_grid_baseline():
    s = build_space()
    base = PostProcessParams(thresh=0.3, box_thresh=0.4, use_polygon=True, polygon_unclip_ratio=2.0)
    coords, off = s.indices_of(base)
    assert off == []
    assert coords == {"thresh_index": 20, "box_thresh_index": 20, "polygon_unclip_ratio_index": 16}
    odd = base.replace(thresh=0.305, polygon_unclip_ratio=3.0)
    coords, off = s.indices_of(odd)
    assert off == ["thresh", "polygon_unclip_ratio"]
    assert coords["thresh_index"] in (20, 21)               # nearest grid point
    assert coords["polygon_unclip_ratio_index"] == 28       # clamped to the end


def test_overrides_fix_opt_in_and_file(tmp_path):
    s = build_space(params=["max_candidates", "use_dilation", "score_mode=slow,fast"],
                    fix=["box_thresh=0.4", "min_size=2"])
    assert s.names == ["thresh", "polygon_unclip_ratio", "max_candidates", "use_dilation",
                       "score_mode"]
    assert s.dim("max_candidates").values() == list(range(100, 1001, 100))
    assert isinstance(s.dim("use_dilation"), ChoiceDim) and s.dim("use_dilation").choices == (False, True)
    assert s.dim("score_mode").choices == ("slow", "fast")
    assert s.fixed_dict == {"box_thresh": 0.4, "min_size": 2.0}
    p = s.params_for(PostProcessParams(), {"thresh": 0.2, "polygon_unclip_ratio": 1.5,
                                           "max_candidates": 300, "use_dilation": True,
                                           "score_mode": "slow"})
    assert (p.use_polygon, p.box_thresh, p.min_size, p.max_candidates) == (True, 0.4, 2.0, 300)

    f = tmp_path / "space.yaml"
    f.write_text("mode: box\nparams:\n  thresh: {low: 0.2, high: 0.3, step: 0.05}\n"
                 "  box_thresh: false\n  use_dilation: [true, false]\nfix:\n  max_candidates: 300\n")
    s2 = build_space(space_file=f)
    assert s2.mode == "box" and s2.names == ["thresh", "box_unclip_ratio", "use_dilation"]
    assert s2.dim("thresh").values() == [0.2, 0.25, 0.3]
    assert s2.fixed_dict == {"max_candidates": 300}
    # the command line wins over the file
    s3 = build_space(mode="polygon", space_file=f, params=["box_thresh=0.3:0.5:0.1"],
                     fix=["use_dilation=false"])
    assert s3.names == ["thresh", "box_thresh", "polygon_unclip_ratio"]
    assert s3.fixed_dict == {"max_candidates": 300, "use_dilation": False}


def test_digest_ignores_spelling_but_not_content(tmp_path):
    a = build_space(params=["thresh=0.10:0.40:0.01"])
    b = build_space(params=["thresh=0.1:0.4:0.010"])
    assert a.digest() == b.digest() == build_space().digest()
    assert build_space(params=["thresh=0.1:0.4:0.02"]).digest() != a.digest()
    assert build_space(mode="box").digest() != a.digest()
    assert build_space(fix=["box_thresh=0.4"]).digest() != a.digest()


@pytest.mark.parametrize("params, fix, expect", [
    (["thresh=0.4:0.1:0.01"], [], "thresh min 0.4 > max 0.1"),
    (["foo=1:2:1"], [], "unknown parameter 'foo'"),
    ([], ["foo=1"], "unknown parameter 'foo'"),
    (["thresh=0.1:0.4:0.07"], [], "step 0.07 does not divide the range 0.1..0.4"),
    (["polygon_unclip_ratio=0:2:0.5"], [], "polygon_unclip_ratio must be > 0"),
    (["polygon_unclip_ratio=-1:2:0.5"], [], "polygon_unclip_ratio must be > 0"),
    ([], ["polygon_unclip_ratio=0"], "polygon_unclip_ratio must be > 0"),
    (["thresh=0.1:1.0:0.1"], [], "thresh must be in (0, 1)"),
    (["box_thresh=0.5:1.5:0.5"], [], "box_thresh must be in [0, 1]"),
    (["thresh=0.1:0.4:0"], [], "step must be > 0"),
    (["thresh=0.1:abc:0.1"], [], "'abc' is not a number"),
    (["thresh=0.1"], [], "must be LOW:HIGH:STEP"),
    (["max_candidates=100:1000:0.5"], [], "whole numbers"),
    (["use_polygon"], [], "use_polygon is chosen with --mode"),
    (["box_unclip_ratio"], [], "box_unclip_ratio is not used in polygon mode"),
    (["score_mode=fast,medium"], [], "score_mode must be one of"),
    (["use_dilation=maybe"], [], "expected true or false"),
    (["thresh=0.2:0.3:0.01"], ["thresh=0.2"], "also given with --param"),
    (["min_size=1:3:1"], [], "min_size cannot be searched"),
    ([], ["box_thresh"], "expected NAME=VALUE"),
    (["thresh=0.1:0.9:0.000001"], [], "use a larger step"),
])
def test_bad_spaces_give_one_clear_line(params, fix, expect):
    with pytest.raises(SpaceError) as info:
        build_space(params=params, fix=fix)
    msg = str(info.value)
    assert expect in msg, msg
    assert "\n" not in msg


@pytest.mark.parametrize("text, expect", [
    ("mode: triangle\n", "mode must be polygon or box"),
    ("params:\n  thresh: {low: 0.3, high: 0.2, step: 0.01}\n", "thresh min 0.3 > max 0.2"),
    ("params:\n  wobble: 0.1:0.2:0.1\n", "unknown parameter 'wobble'"),
    ("params:\n  thresh: {low: 0.1, high: 0.2, stp: 0.1}\n", "unknown key(s) stp"),
    ("params:\n  thresh: 0.1:0.2:0.1\nfix:\n  thresh: 0.2\n", "both searched (params) and fixed"),
    ("colour: red\n", "unknown key(s) colour"),
    ("params: [1, 2\n", "invalid YAML"),
    ("- 1\n- 2\n", "expected a mapping"),
])
def test_bad_space_files(tmp_path, text, expect):
    f = tmp_path / "space.yaml"
    f.write_text(text)
    with pytest.raises(SpaceError) as info:
        build_space(space_file=f)
    assert expect in str(info.value) and "\n" not in str(info.value)
    assert str(f) in str(info.value) or "mode" in expect


def test_missing_space_file(tmp_path):
    with pytest.raises(SpaceError, match="no such space file"):
        build_space(space_file=tmp_path / "none.yaml")


def test_parse_helpers():
    name, dim = parse_param("box_thresh=0.3:0.5")
    assert name == "box_thresh" and isinstance(dim, GridDim) and dim.step == Decimal("0.01")
    assert parse_fix("use_dilation=yes") == ("use_dilation", True)
    assert parse_fix("max_candidates=300") == ("max_candidates", 300)
