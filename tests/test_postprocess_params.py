"""PostProcessParams: defaults, validation, conversions and the three code versions."""

import dataclasses
import math

import pytest
import yaml

from unclip_tuner.postprocess.params import PRESETS, PostProcessParams, preset


def test_defaults_are_the_baseline_class_defaults():
    p = PostProcessParams()
    assert (p.thresh, p.box_thresh, p.max_candidates, p.use_polygon) == (0.3, 0.7, 1000, False)
    assert (p.box_unclip_ratio, p.polygon_unclip_ratio, p.min_size) == (1.5, 2.0, 3)
    assert (p.use_dilation, p.score_mode) == (False, "fast")
    assert p.unclip_ratio == 1.5
    assert p.replace(use_polygon=True).unclip_ratio == 2.0


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(thresh=0.0), "thresh"),
        (dict(thresh=1.0), "thresh"),
        (dict(thresh=-0.2), "thresh"),
        (dict(thresh=math.nan), "thresh"),
        (dict(thresh="0.3"), "thresh"),
        (dict(box_thresh=1.5), "box_thresh"),
        (dict(box_thresh=-0.01), "box_thresh"),
        (dict(box_unclip_ratio=0.0), "box_unclip_ratio"),
        (dict(polygon_unclip_ratio=-1.0), "polygon_unclip_ratio"),
        (dict(polygon_unclip_ratio=math.inf), "polygon_unclip_ratio"),
        (dict(max_candidates=0), "max_candidates"),
        (dict(max_candidates=2.5), "max_candidates"),
        (dict(max_candidates=True), "max_candidates"),
        (dict(min_size=-1), "min_size"),
        (dict(use_polygon="yes"), "use_polygon"),
        (dict(use_dilation=1), "use_dilation"),
        (dict(score_mode="medium"), "score_mode"),
    ],
)
def test_invalid_values_raise_one_line_errors(changes, field):
    with pytest.raises(ValueError) as err:
        PostProcessParams(**changes)
    msg = str(err.value)
    assert field in msg and "\n" not in msg


def test_integral_float_max_candidates_becomes_int():
    p = PostProcessParams(max_candidates=500.0)
    assert p.max_candidates == 500 and isinstance(p.max_candidates, int)


def test_frozen_and_replace():
    p = PostProcessParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.thresh = 0.5  # type: ignore[misc]
    q = p.replace(thresh=0.22, box_thresh=0.4)
    assert (q.thresh, q.box_thresh) == (0.22, 0.4) and p.thresh == 0.3
    with pytest.raises(ValueError, match="thresh"):
        p.replace(thresh=2.0)
    with pytest.raises(ValueError, match="unknown post-processing parameter"):
        p.replace(unclip_ratio=2.0)


def test_dict_and_yaml_round_trip():
    p = PostProcessParams(thresh=0.23105253214239585, box_thresh=0.4324259445084524, max_candidates=500,
                          use_polygon=True, box_unclip_ratio=1.7, polygon_unclip_ratio=2.15,
                          use_dilation=True, score_mode="slow")
    d = p.to_dict()
    assert all(type(v) in (int, float, bool, str) for v in d.values())
    assert PostProcessParams.from_dict(d) == p
    assert PostProcessParams.from_dict(yaml.safe_load(yaml.safe_dump(d))) == p
    assert PostProcessParams.from_dict({}) == PostProcessParams()
    with pytest.raises(ValueError, match="unknown post-processing parameter.*unclip_ratio"):
        PostProcessParams.from_dict({"unclip_ratio": 2.0})
    with pytest.raises(ValueError, match="mapping"):
        PostProcessParams.from_dict([("thresh", 0.3)])


def test_code_versions():
    assert set(PRESETS) == {"seed-original", "seed-head", "karmakaryx"}
    head = preset("seed-head")
    assert head.defaults.box_unclip_ratio == head.defaults.polygon_unclip_ratio == 2.0
    p = head.params(unclip_ratio=1.8, use_polygon=True)
    assert p.box_unclip_ratio == p.polygon_unclip_ratio == 1.8
    head.check(p)

    kk = preset("karmakaryx")
    p = kk.params(box_unclip_ratio=1.6, polygon_unclip_ratio=2.2)
    assert (p.box_unclip_ratio, p.polygon_unclip_ratio) == (1.6, 2.2)
    kk.check(p)
    with pytest.raises(ValueError, match="unclip_ratio"):
        kk.params(unclip_ratio=2.0)

    orig = preset("seed-original")
    assert orig.defaults == PostProcessParams()
    orig.check(orig.params(thresh=0.22, box_thresh=0.4))
    with pytest.raises(ValueError, match="polygon_unclip_ratio"):
        orig.params(polygon_unclip_ratio=2.2)
    with pytest.raises(ValueError, match="fixed unclip ratios"):
        orig.check(PostProcessParams(polygon_unclip_ratio=2.2))
    with pytest.raises(ValueError, match="dilation"):
        kk.check(PostProcessParams(use_dilation=True))
    with pytest.raises(ValueError, match="unknown code version"):
        preset("paddle")
