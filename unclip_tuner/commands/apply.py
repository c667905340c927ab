"""``unclip-tuner apply``: decode cached maps with chosen parameters into predictions.

Everything written to disk goes through the reference decoder (the plain, readable path
proven identical to the baseline); ``--evaluate`` then scores the written predictions
against the cache's ground truth.
"""

from __future__ import annotations

import json
import sys

from ..cli import CLIError, progress


def register(sub) -> None:
    p = sub.add_parser(
        "apply", help="decode cached maps with given parameters into a UFO JSON or submission CSV",
        description="Decode every cached map with the given post-processing parameters and write "
                    "the detections (image space) as UFO JSON (.json) or a submission CSV (.csv). "
                    "Parameters start from the cache's recorded ones (else the seed's defaults), "
                    "then --params, then each --set.")
    p.add_argument("--cache", required=True, help="map cache directory (from cache-maps)")
    p.add_argument("--params", metavar="YAML", help="parameters file, e.g. best.yaml from tune-post")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override one parameter (repeatable), e.g. --set thresh=0.22")
    p.add_argument("--out", required=True, help="output file: .json (UFO) or .csv (submission)")
    p.add_argument("--template", metavar="CSV",
                   help="sample_submission.csv: every listed image gets a row, in its order")
    p.add_argument("--evaluate", action="store_true", help="score the output against the cached GT")
    p.add_argument("--metric", default="cleval", choices=["cleval", "iou", "cleval-upstream"])
    p.add_argument("--jobs", type=int, default=1, help="threads over images")
    p.add_argument("--json", action="store_true", help="print the evaluation as JSON")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_apply)


def _base_params(meta: dict):
    """The cache's recorded parameters (an error if invalid), else the seed's defaults."""
    from ..postprocess.params import PostProcessParams
    from .tune_post import manifest_params

    recorded = manifest_params(meta)
    return recorded if recorded is not None else PostProcessParams()


def _cmd_apply(args) -> int:
    from pathlib import Path

    from ..cache.store import MapCache
    from ..io import Dataset, read_template, write_dataset
    from ..postprocess.engine import ReferenceEngine
    from ..postprocess.params import params_from_sources

    out = Path(args.out)
    if out.suffix.lower() not in (".json", ".csv"):
        raise CLIError("--out must end in .json (UFO) or .csv (submission)")
    if args.template and out.suffix.lower() != ".csv":
        raise CLIError("--template applies to a .csv output")
    if args.jobs < 1:
        raise CLIError("--jobs must be >= 1")
    cache = MapCache.open(args.cache)
    params = params_from_sources(_base_params(cache.meta), args.params, args.set)
    template = read_template(args.template) if args.template else None
    engine = ReferenceEngine(cache, metric=args.metric, jobs=args.jobs)
    names = cache.names()
    show = not args.no_progress and sys.stderr.isatty()
    wrap = progress(show, "apply")
    it = names if wrap is None else wrap(names)
    with engine:
        preds = Dataset((n, engine.decode(params, n)) for n in it)
    if template is not None:
        unknown = [n for n in preds if n not in set(template)]
        if unknown:
            raise CLIError(f"{len(unknown)} cached image(s) are not in the template, e.g. {unknown[0]!r}")
    # integer image-space coordinates, as the baseline writes them
    for w in preds.values():
        w.polygons = [p.astype(int).astype(float) for p in w.polygons]
    write_dataset(preds, out, template)
    n_det = preds.n_words()
    print(f"wrote {n_det} detections for {len(preds)} images to {out}", file=sys.stderr)
    print(f"parameters: {params.to_dict()}", file=sys.stderr)
    if args.evaluate:
        if cache.gt is None:
            raise CLIError("this cache has no ground truth to evaluate against")
        from ..io import read_dataset
        from ..metrics import evaluate
        from .evaluate import format_score_table

        written = read_dataset(out)
        # template rows for images outside the cache are not scored
        written = Dataset((n, w) for n, w in written.items() if n in cache.gt)
        score = evaluate(cache.gt, written, metric=args.metric, jobs=args.jobs)
        if args.json:
            print(json.dumps(score.as_dict(), indent=2))
        else:
            print(format_score_table(score))
    return 0
