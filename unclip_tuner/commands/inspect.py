"""``unclip-tuner inspect``: where a parameter set loses, image by image and word by word."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..cli import CLIError, progress

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: Columns of ``per_image.csv`` after the image name.
CSV_COLUMNS = ["rank", "recall", "precision", "hmean", "gt_words", "gt_matched", "gt_missed",
               "gt_split", "det_words", "det_matched", "det_false_positive", "det_merging",
               "det_dont_care", "tp_chars", "gt_chars", "det_chars", "fp_chars"]


def register(sub) -> None:
    p = sub.add_parser(
        "inspect", help="per-image scores, split/merge/miss/false-positive counts and overlays",
        description="Decode every cached map with a parameter set, score it, and write "
                    "per_image.csv (recall, precision, H-Mean, words matched, missed, split, "
                    "merged, false positives) plus overlay PNGs of the worst images: ground "
                    "truth green (missed words filled), detections red (false positives "
                    "filled), on the image when --images is given, else on the probability map.")
    p.add_argument("--cache", required=True, help="map cache folder (with ground truth)")
    p.add_argument("--params", help="parameter file (best.yaml of tune-post, YAML or JSON); "
                                    "default: the cache's recorded params, else the decoder's "
                                    "defaults")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one parameter (repeatable), e.g. --set thresh=0.25")
    p.add_argument("--worst", type=int, default=20, help="overlays of the N lowest H-Means (default 20)")
    p.add_argument("--images", help="folder of the original images to draw on")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--jobs", type=int, default=1, help="threads over images (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_inspect)


# ------------------------------------------------------------------------------------
# Parameters
# ------------------------------------------------------------------------------------
def resolve_params(store, params_file: Optional[str], sets: List[str]):
    """Parameters from the cache's meta (when no file is given), then the file, then
    ``--set`` (later ones win)."""
    from ..postprocess.params import PostProcessParams, params_from_sources

    meta_params = (getattr(store, "meta", None) or {}).get("params")
    try:
        base = None
        if isinstance(meta_params, dict) and not params_file:
            base = PostProcessParams.from_dict(meta_params)
        return params_from_sources(base, params_file, sets)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


# ------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------
def find_image(folder: Path, name: str) -> Optional[Path]:
    """``folder/name``, else a file with the same stem and an image suffix."""
    direct = folder / name
    if direct.is_file():
        return direct
    stem = Path(name).stem
    for suf in IMAGE_SUFFIXES:
        for cand in (folder / f"{stem}{suf}", folder / f"{stem}{suf.upper()}"):
            if cand.is_file():
                return cand
    return None


def inspect_rows(engine, params, names: List[str], show: bool = False):
    """Per-image score, detections and word outcomes, in ``names`` order.

    Returns a list of dicts with keys ``name``, ``score`` (ImageScore), ``det`` (ImageWords)
    and ``outcomes`` (WordOutcomes).
    """
    from ..report.overlay import word_outcomes

    gt = engine.gt

    def one(name: str) -> Dict[str, Any]:
        det = engine.decode(params, name)
        score = engine.score_image(params, name)
        return {"name": name, "score": score, "det": det, "outcomes": word_outcomes(gt[name], det)}

    wrap = progress(show, "inspect")
    it = wrap(names) if wrap is not None else names
    return [one(n) for n in it]


def _row_values(r: Dict[str, Any]) -> Dict[str, Any]:
    s, c = r["score"], r["outcomes"].counts
    return {"recall": s.recall, "precision": s.precision, "hmean": s.hmean,
            "gt_words": c["gt_cared"], "gt_matched": c["gt_matched"], "gt_missed": c["gt_missed"],
            "gt_split": c["num_splitted"], "det_words": c["det_kept"],
            "det_matched": c["det_matched"], "det_false_positive": c["det_false_positive"],
            "det_merging": c["num_merged"], "det_dont_care": c["n_det_dont_care"],
            "tp_chars": c["tp"], "gt_chars": int(s.recall_den), "det_chars": c["det_chars"],
            "fp_chars": c["fp_chars"]}


def write_csv(path: Path, rows: List[Dict[str, Any]], ranks: Dict[str, int]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["image", *CSV_COLUMNS])
        for r in rows:
            v = _row_values(r)
            v["rank"] = ranks[r["name"]]
            w.writerow([r["name"], *[repr(v[k]) if isinstance(v[k], float) else v[k]
                                     for k in CSV_COLUMNS]])


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(name).stem)


def _cmd_inspect(args) -> int:
    import cv2
    import numpy as np

    from ..cache.store import MapCache
    from ..postprocess.engine import FastEngine
    from ..report.overlay import draw_overlay

    if args.worst < 0:
        raise CLIError("--worst must be >= 0")
    if args.jobs < 1:
        raise CLIError("--jobs must be >= 1")
    images_dir = Path(args.images) if args.images else None
    if images_dir is not None and not images_dir.is_dir():
        raise CLIError(f"{args.images}: image folder not found")
    store = MapCache.open(args.cache, verify="sample")
    if store.gt is None:
        raise CLIError(f"{args.cache}: the cache has no ground truth; inspect needs it")
    params = resolve_params(store, args.params, args.set)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    show = not args.no_progress and sys.stderr.isatty()
    with FastEngine(store, metric="cleval", jobs=args.jobs) as engine:
        names = engine.names
        dataset = engine.evaluate(params)
        rows = inspect_rows(engine, params, names, show)
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["score"].hmean, i))
    ranks = {rows[i]["name"]: k + 1 for k, i in enumerate(order)}
    write_csv(out / "per_image.csv", rows, ranks)

    totals = {k: sum(r["outcomes"].counts[k] for r in rows)
              for k in ("gt_cared", "gt_missed", "num_splitted", "num_merged",
                        "det_kept", "det_false_positive")}
    print(f"{len(rows)} images, CLEval H-Mean {dataset.hmean:.4f} "
          f"(R {dataset.recall:.4f}, P {dataset.precision:.4f}) with "
          + ", ".join(f"{k}={v}" for k, v in params.to_dict().items()))
    print(f"GT words {totals['gt_cared']}: missed {totals['gt_missed']}, split "
          f"{totals['num_splitted']}; detections {totals['det_kept']}: false positives "
          f"{totals['det_false_positive']}, merging several words {totals['num_merged']}")

    worst = order[:args.worst]
    gt = store.gt
    if worst:
        print(f"{'rank':>4}  {'H':>7} {'R':>7} {'P':>7} {'miss':>5} {'split':>5} "
              f"{'merge':>5} {'FP':>4}  image")
    for k, i in enumerate(worst, 1):
        r = rows[i]
        v = _row_values(r)
        print(f"{k:>4}  {v['hmean']:7.4f} {v['recall']:7.4f} {v['precision']:7.4f} "
              f"{v['gt_missed']:>5} {v['gt_split']:>5} {v['det_merging']:>5} "
              f"{v['det_false_positive']:>4}  {r['name']}")
        rec = store.get(r["name"])
        background, to_canvas = None, None
        if images_dir is not None:
            path = find_image(images_dir, r["name"])
            if path is not None:
                background = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if background is None:
                print(f"  (no readable image for {r['name']} in {images_dir}: drawn on the map)",
                      file=sys.stderr)
        if background is None:
            background = rec.prob
            to_canvas = np.linalg.inv(rec.inverse_matrix)
        title = (f"#{k} {r['name']}  H {v['hmean']:.4f}  R {v['recall']:.4f}  "
                 f"P {v['precision']:.4f}")
        lines = [f"GT {v['gt_words']}: missed {v['gt_missed']}, split {v['gt_split']}; "
                 f"detections {v['det_words']}: false positives {v['det_false_positive']}, "
                 f"merging {v['det_merging']}"]
        pic = draw_overlay(background, gt[r["name"]], r["det"], r["outcomes"], to_canvas,
                           title, lines)
        cv2.imwrite(str(out / f"worst_{k:03d}_{_safe_name(r['name'])}.png"), pic)
    print(f"wrote {out / 'per_image.csv'} and {len(worst)} overlay(s) to {out}")
    return 0
