"""``unclip-tuner ensemble``: average the probability maps of several caches into a new one."""

from __future__ import annotations

import sys

from ..cli import CLIError, progress


def register(sub) -> None:
    p = sub.add_parser(
        "ensemble", help="write the weighted average of several caches' maps as a new cache",
        description="Average the probability maps of two or more caches holding the same images "
                    "(same names, same original sizes) into a new cache, then tune it like any "
                    "other. Weights are divided by their sum; a weight of 0 leaves a cache out "
                    "entirely, so '--weights 1 0' reproduces the first cache bit for bit. Maps "
                    "on another network grid (shape or inverse matrix) are warped into the "
                    "first cache's grid (bilinear) unless --no-align is given.")
    p.add_argument("caches", nargs="+", metavar="CACHE", help="map cache folders (two or more)")
    p.add_argument("--weights", nargs="+", type=float, metavar="W",
                   help="one weight per cache (default: equal weights)")
    p.add_argument("--out", required=True, help="folder of the new cache")
    p.add_argument("--no-align", action="store_true",
                   help="refuse maps on another network grid instead of warping them")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"],
                   help="storage dtype of the new cache (default float32)")
    p.add_argument("--overwrite", action="store_true", help="replace a cache holding other maps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_ensemble)


def _cmd_ensemble(args) -> int:
    from ..cache.ensemble import normalise_weights, write_ensemble
    from ..cache.store import MapCache

    if len(args.caches) < 2:
        raise CLIError("an ensemble needs at least two caches")
    weights = normalise_weights(args.weights, len(args.caches))
    if args.weights:
        total = sum(args.weights)
        if abs(total - 1.0) > 1e-12:
            print(f"weights {' '.join(f'{w:g}' for w in args.weights)} sum to {total:g}; "
                  f"normalised to {' '.join(f'{w:.6g}' for w in weights)}", file=sys.stderr)
    stores = [MapCache.open(c, verify="sample") for c in args.caches]
    show = not args.no_progress and sys.stderr.isatty()
    cache = write_ensemble(stores, weights, args.out, align=not args.no_align, dtype=args.dtype,
                           overwrite=args.overwrite, progress=progress(show, "ensemble"))
    used = ", ".join(f"{c} x {w:.6g}" for c, w in zip(args.caches, weights))
    print(f"wrote {len(cache)} averaged map(s) to {args.out} ({used})")
    return 0
