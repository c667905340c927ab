"""Paste lines per code version: the keys each version has, and nothing else."""

from __future__ import annotations

import pytest
import yaml

from unclip_tuner.postprocess.params import PostProcessParams
from unclip_tuner.report.export import TARGETS, export_lines

P = PostProcessParams(thresh=0.22, box_thresh=0.43, max_candidates=500, use_polygon=True,
                      box_unclip_ratio=1.5, polygon_unclip_ratio=1.85)


def _hydra(line: str) -> dict:
    out = {}
    for tok in line.split():
        key, val = tok.split("=")
        assert key.startswith("models.head.postprocess.")
        out[key.rsplit(".", 1)[1]] = val
    return out


@pytest.mark.parametrize("target", ["seed-original", "seed-head", "karmakaryx"])
def test_hydra_lines_carry_the_common_keys(target):
    kv = _hydra(export_lines(P, target).lines[0])
    assert float(kv["thresh"]) == P.thresh and float(kv["box_thresh"]) == P.box_thresh
    assert int(kv["max_candidates"]) == 500 and kv["use_polygon"] == "true"
    assert kv["thresh"] == "0.22"                   # shortest decimal, no float noise


def test_karmakaryx_has_both_ratio_keys():
    ex = export_lines(P, "karmakaryx")
    kv = _hydra(ex.lines[0])
    assert kv["box_unclip_ratio"] == "1.5" and kv["polygon_unclip_ratio"] == "1.85"
    assert "unclip_ratio" not in kv and ex.notes == []


def test_seed_head_has_one_ratio_and_warns_when_they_differ():
    ex = export_lines(P, "seed-head")
    kv = _hydra(ex.lines[0])
    assert kv["unclip_ratio"] == "1.85"
    assert "box_unclip_ratio" not in kv and "polygon_unclip_ratio" not in kv
    assert any("one unclip_ratio for box AND polygon" in n for n in ex.notes)
    box = P.replace(use_polygon=False, box_unclip_ratio=1.7)
    assert _hydra(export_lines(box, "seed-head").lines[0])["unclip_ratio"] == "1.7"
    same = P.replace(box_unclip_ratio=1.85)
    assert export_lines(same, "seed-head").notes == []


def test_seed_original_explains_the_code_change():
    ex = export_lines(P, "seed-original")
    kv = _hydra(ex.lines[0])
    assert not any("ratio" in k for k in kv)
    assert len(ex.notes) == 1 and "unclip_ratio=2.0" in ex.notes[0]
    assert "change 2.0 to 1.85" in ex.notes[0] and "db_postprocess.py" in ex.notes[0]
    box = export_lines(P.replace(use_polygon=False, box_unclip_ratio=1.7), "seed-original")
    assert "self.unclip(points, unclip_ratio=1.7)" in box.notes[0]
    fixed = export_lines(P.replace(polygon_unclip_ratio=2.0), "seed-original")
    assert "no code change needed" in fixed.notes[0]


def test_paddleocr_flags_and_yaml_block():
    q = P.replace(use_dilation=True, score_mode="slow")
    ex = export_lines(q, "paddleocr")
    flags = ex.lines[0].split()
    pairs = dict(zip(flags[::2], flags[1::2]))
    assert pairs == {"--det_db_thresh": "0.22", "--det_db_box_thresh": "0.43",
                     "--det_db_unclip_ratio": "1.85", "--use_dilation": "True",
                     "--det_db_score_mode": "slow", "--det_box_type": "poly"}
    block = yaml.safe_load("\n".join(ex.lines[1:]))["PostProcess"]
    assert block == {"name": "DBPostProcess", "thresh": 0.22, "box_thresh": 0.43,
                     "max_candidates": 500, "unclip_ratio": 1.85, "use_dilation": True,
                     "score_mode": "slow", "box_type": "poly"}
    assert export_lines(P.replace(use_polygon=False), "paddleocr").lines[0].endswith("quad")


def test_decoder_options_the_seed_lacks_are_flagged():
    q = P.replace(use_dilation=True)
    for target in ("seed-original", "seed-head", "karmakaryx"):
        assert any("use_dilation=true is a PaddleOCR option" in n for n in export_lines(q, target).notes)


def test_unknown_target():
    assert set(TARGETS) == {"seed-original", "seed-head", "karmakaryx", "paddleocr"}
    with pytest.raises(ValueError, match="unknown target"):
        export_lines(P, "mmocr")
