"""``unclip-tuner evaluate``: formats, outputs, bad input, and a light import path."""

import csv
import json
import subprocess
import sys

import pytest

from unclip_tuner.cli import main
from unclip_tuner.io import Dataset, ImageWords, write_dataset
from unclip_tuner.metrics import evaluate

BOX = [[10, 10], [60, 10], [60, 30], [10, 30]]
BOX2 = [[100, 10], [160, 10], [160, 40], [100, 40]]


@pytest.fixture
def files(tmp_path):
    gt = Dataset({"a.jpg": ImageWords([BOX, BOX2]), "b.jpg": ImageWords([BOX])})
    pred = Dataset({"a.jpg": ImageWords([BOX, [[90, 5], [170, 5], [170, 45], [90, 45]]])})
    write_dataset(gt, tmp_path / "gt.json")
    write_dataset(pred, tmp_path / "pred.csv")
    return tmp_path, gt, pred


def test_table_json_and_per_image(files, capsys):
    d, gt, pred = files
    assert main(["evaluate", "--gt", str(d / "gt.json"), "--pred", str(d / "pred.csv"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "cleval (macro)" in out and "micro (pooled counts)" in out and "2 images" in out
    assert main(["evaluate", "--gt", str(d / "gt.json"), "--pred", str(d / "pred.csv"), "--json",
                 "--per-image", str(d / "per.csv")]) == 0
    res = json.loads(capsys.readouterr().out)
    expected = evaluate(gt, pred)
    assert res["hmean"] == expected.hmean and res["recall"] == expected.recall
    assert set(res["micro"]) == {"recall", "precision", "hmean"}
    rows = list(csv.reader(open(d / "per.csv")))
    assert rows[0][:4] == ["image", "recall", "precision", "hmean"]
    # b.jpg has no prediction: scored as no detections (0, as in the competition)
    assert [r[0] for r in rows[1:]] == ["a.jpg", "b.jpg"]
    assert float(rows[2][3]) == 0.0 and float(rows[1][3]) > 0.5


@pytest.mark.parametrize("metric", ["cleval", "iou", "cleval-upstream"])
def test_engines_agree(files, metric):
    _, gt, pred = files
    a = evaluate(gt, pred, metric=metric, engine="fast")
    b = evaluate(gt, pred, metric=metric, engine="reference")
    assert abs(a.hmean - b.hmean) <= 1e-6


def test_bad_input_is_one_line(tmp_path, capsys):
    (tmp_path / "gt.json").write_text('{"images": {"a.jpg": {"words": {}}}}')
    (tmp_path / "bad.json").write_text('{"images": {"a.jpg": {"words": {"0001": {"points": [[1, 2], [3')
    (tmp_path / "nan.csv").write_text("filename,polygons\na.jpg,1 2 nan 4 5 6 7 8\n")
    (tmp_path / "other.json").write_text('{"images": {"zzz.jpg": {"words": {}}}}')
    for pred, msg in (("bad.json", "invalid JSON"), ("nan.csv", "NaN"), ("other.json", "not in the ground truth"),
                      ("missing.json", "no such file")):
        assert main(["evaluate", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / pred)]) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and "\n" not in err and "Traceback" not in err


def test_evaluate_does_not_import_torch_or_optuna(files):
    d, _, _ = files
    code = ("import sys; from unclip_tuner.cli import main; "
            f"rc = main(['evaluate', '--gt', {str(d / 'gt.json')!r}, '--pred', {str(d / 'pred.csv')!r}, '--json']); "
            "print('HEAVY', sorted(m for m in ('torch', 'optuna', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
