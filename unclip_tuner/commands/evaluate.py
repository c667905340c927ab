"""``unclip-tuner evaluate``: score predictions against ground truth."""

from __future__ import annotations

import json
import sys
from typing import List

from ..cli import CLIError, progress


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="score predictions against ground truth (CLEval, IoU, upstream CLEval)",
        description="Score predictions against ground truth. GT and PRED may be a UFO JSON "
                    "file, a submission CSV, a folder of ICDAR/SROIE .txt files or a .zip of them.")
    p.add_argument("--gt", required=True, help="ground truth (json, csv, folder or zip)")
    p.add_argument("--pred", required=True, help="predictions (json, csv, folder or zip)")
    p.add_argument("--metric", default="cleval", choices=["cleval", "iou", "cleval-upstream"],
                   help="metric profile (default: cleval, the competition's)")
    p.add_argument("--engine", default="fast", choices=["fast", "reference"],
                   help="fast Numba engine (default) or the plain reference implementation")
    p.add_argument("--txt-coords", default="8",
                   help="coordinates per line in .txt files: 8 (quads, default) or 'variable'")
    p.add_argument("--per-image", metavar="CSV", help="write per-image scores to this CSV")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.add_argument("--jobs", type=int, default=1, help="threads over images (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_evaluate)


def coords_arg(value: str):
    if value == "variable":
        return value
    try:
        n = int(value)
    except ValueError:
        raise CLIError(f"--txt-coords must be an even integer or 'variable', not {value!r}") from None
    if n < 2 or n % 2:
        raise CLIError(f"--txt-coords must be an even integer >= 2, not {n}")
    return n


def _write_per_image(path: str, score) -> None:
    import csv

    extra_keys: List[str] = []
    for s in score.per_image:
        for k in s.extra:
            if k not in extra_keys:
                extra_keys.append(k)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["image", "recall", "precision", "hmean", "recall_num", "recall_den",
                    "precision_num", "precision_den", *extra_keys])
        for name, s in zip(score.images, score.per_image):
            w.writerow([name, repr(s.recall), repr(s.precision), repr(s.hmean), s.recall_num,
                        s.recall_den, s.precision_num, s.precision_den,
                        *[s.extra.get(k, "") for k in extra_keys]])


def format_score_table(score) -> str:
    """A small fixed-width table of the official, macro and micro figures."""
    rows = [("", "recall", "precision", "hmean")]
    rows.append((f"{score.metric} ({score.official})", score.recall, score.precision, score.hmean))
    rows.append(("macro (mean of images)", score.macro_recall, score.macro_precision, score.macro_hmean))
    rows.append(("micro (pooled counts)", score.micro_recall, score.micro_precision, score.micro_hmean))
    out = []
    for i, r in enumerate(rows):
        if i == 0:
            out.append(f"{r[0]:<28}{r[1]:>10}{r[2]:>11}{r[3]:>10}")
        else:
            out.append(f"{r[0]:<28}{r[1]:>10.4f}{r[2]:>11.4f}{r[3]:>10.4f}")
    out.append(f"{len(score.images)} images")
    return "\n".join(out)


def _cmd_evaluate(args) -> int:
    from ..io import read_dataset
    from ..metrics import evaluate

    coords = coords_arg(args.txt_coords)
    if args.jobs < 1:
        raise CLIError("--jobs must be >= 1")
    gt = read_dataset(args.gt, coords)
    pred = read_dataset(args.pred, coords)
    show = not args.no_progress and not args.json and sys.stderr.isatty()
    score = evaluate(gt, pred, metric=args.metric, engine=args.engine, jobs=args.jobs,
                     progress=progress(show, "evaluate"))
    if args.per_image:
        _write_per_image(args.per_image, score)
    if args.json:
        print(json.dumps(score.as_dict(), indent=2))
    else:
        print(format_score_table(score))
    return 0
